"""The sweep store: a sweep interrupted and resumed from Python gives the uninterrupted table; a store made
with other settings, another dense model or without the stage a gradual sweep needs is refused."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import rmtlib
from rmtlib import FitConfig
from rmtlib.errors import InputError
from rmtlib.experiments.sweep_store import SweepStore, level_text, sweep_config
from rmtlib.nn.checkpoints import read_checkpoint
from rmtlib.nn.models import fc_net
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.loops import train

TIMINGS = ["prune_s", "finetune_s"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    full = synthetic_classification(n=512, dim=32, classes=4, seed=0, separation=3.0)
    train_set = torch.utils.data.Subset(full, range(384))
    test = torch.utils.data.Subset(full, range(384, 512))
    model = fc_net([32, 64, 4])
    train(model, make_loader(train_set, 64, shuffle=True), 2, lr=3e-3, progress=False)
    return model.eval(), make_loader(train_set, 32, shuffle=True), make_loader(test, 128)


def _count_prunes(monkeypatch: pytest.MonkeyPatch, stop_at: int | None = None) -> list[str]:
    """Count the sweep's prune calls; with ``stop_at``, that call raises KeyboardInterrupt (a user stopping it)."""
    import rmtlib.experiments.sweep

    real, calls = rmtlib.experiments.sweep.prune, []

    def prune(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rmtlib.experiments.sweep, "prune", prune)
    return calls


def _as_stored(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as it reads back from CSV."""
    return pd.read_csv(io.StringIO(table.to_csv(index=False)))


@pytest.mark.parametrize("schedule, stop_at", [("oneshot", 2), ("oneshot", 4), ("gradual", 3)])
def test_a_sweep_interrupted_and_resumed_from_python_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup, schedule: str, stop_at: int
):
    model, train_loader, test = setup
    methods, levels = ["magnitude", "svd"], [0.6, 0.3]  # svd's stages are factorized layers, reloaded from disk
    kwargs = dict(eval_loader=test, finetune_loader=train_loader, finetune_steps=2, schedule=schedule, seed=1)
    whole = rmtlib.sweep(model, methods, levels, **kwargs)
    with monkeypatch.context() as patch:
        _count_prunes(patch, stop_at)
        with pytest.raises(KeyboardInterrupt):
            rmtlib.sweep(model, methods, levels, store=str(tmp_path / "s"), **kwargs)
    store = SweepStore.folder(tmp_path / "s")
    assert len(store.read()) == stop_at  # the dense row and the runs finished before the stop
    with monkeypatch.context() as patch:
        calls = _count_prunes(patch)
        resumed = rmtlib.sweep(model, methods, levels, store=tmp_path / "s", resume=True, **kwargs)
    assert len(calls) == len(methods) * len(levels) - (stop_at - 1)  # only the missing runs
    expected = _as_stored(whole).drop(columns=TIMINGS)  # the finished rows come back from the CSV table
    pd.testing.assert_frame_equal(_as_stored(resumed).drop(columns=TIMINGS), expected)
    pd.testing.assert_frame_equal(store.read().drop(columns=TIMINGS), expected)
    saved = sorted(p.name for p in (tmp_path / "s" / "models").iterdir())
    assert saved == sorted(f"{m}_{level_text(level)}.safetensors" for m in methods for level in levels)
    metadata = read_checkpoint(tmp_path / "s" / "models" / "svd_0.30.safetensors")[1]["metadata"]
    assert metadata["method"] == "svd" and metadata["sparsity_target"] == 0.3 and metadata["schedule"] == schedule


def test_a_store_refuses_other_settings_naming_the_file_and_the_setting(tmp_path: Path, setup):
    model, _, test = setup
    folder = tmp_path / "s"
    base = dict(
        eval_loader=test, prune_options={"fit_config": FitConfig()}, method_options={"glob": {"method": "magnitude"}}
    )
    rmtlib.sweep(model, ["glob"], [0.3], store=folder, **base)
    metadata = read_checkpoint(folder / "models" / "glob_0.30.safetensors")[1]["metadata"]
    assert FitConfig.from_dict(metadata["options"]["fit_config"]) == FitConfig()  # one dict, not a repr
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for change, word in (
        ({"prune_options": {"fit_config": FitConfig(alpha=0.2)}}, "fit_config: table {'alpha': 0.25"),
        ({"seed": 3}, "seed: table 0, this run 3"),
        ({"eval_batches": 1}, "eval_batches"),
        ({"method_options": {"glob": {"method": "magnitude", "scope": "global"}}}, "options of glob"),
        ({"schedule": "gradual"}, "schedule"),
        ({"model_name": "other"}, "model"),
    ):
        with pytest.raises(InputError) as err:
            rmtlib.sweep(model, ["glob"], [0.3, 0.5], store=folder, resume=True, **{**base, **change})
        assert str(folder / "sweep.csv") in str(err.value) and word in str(err.value)
    with pytest.raises(InputError, match="needs the store"):
        rmtlib.sweep(model, ["glob"], [0.3], resume=True, **base)
    with pytest.raises(InputError, match="exists"):  # not resuming: finished results are never replaced
        rmtlib.sweep(model, ["glob"], [0.3], store=folder, **base)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[1].weight.mul_(-1.0)  # another dense model: same parameters, another top-1
    with pytest.raises(InputError, match="dense model"):
        rmtlib.sweep(other, ["glob"], [0.3, 0.5], store=folder, resume=True, **base)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # nothing written
    table = rmtlib.sweep(model, ["glob"], [0.3, 0.5], store=folder, resume=True, **base)  # a level added
    assert list(table.target) == [0.0, 0.3, 0.5] and len(SweepStore.folder(folder).read()) == 3
    SweepStore.folder(folder).clear()
    assert len(rmtlib.sweep(model, ["glob"], [0.5], store=folder, **base)) == 2  # cleared: a new sweep


def test_a_gradual_resume_needs_its_stage_and_a_missing_record_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup
):
    model, _, test = setup
    store = SweepStore.folder(tmp_path / "s", save_models=False)
    kwargs = dict(eval_loader=test, schedule="gradual")
    with monkeypatch.context() as patch:
        _count_prunes(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            rmtlib.sweep(model, ["magnitude"], [0.3, 0.6], store=store, **kwargs)
    with pytest.raises(InputError, match="magnitude_0.30.safetensors"):  # its 0.3 stage was not kept
        rmtlib.sweep(model, ["magnitude"], [0.3, 0.6], store=store, resume=True, **kwargs)
    store.settings_path.write_text("{not json")
    with pytest.raises(InputError, match="not a settings record"):
        rmtlib.sweep(model, ["magnitude"], [0.3], store=store, resume=True, **kwargs)
    store.settings_path.unlink()  # a table from before records existed: checked by its columns, with a warning
    with pytest.warns(UserWarning, match="is missing"):
        table = rmtlib.sweep(model, ["magnitude"], [0.3], store=store, resume=True, **kwargs)
    assert list(table.method) == ["dense", "magnitude"]
    assert json.loads(store.settings_path.read_text())["seed"] == 0  # written again with the table
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="junk.csv is not a table written by rmtlib sweep"):
        rmtlib.sweep(model, ["magnitude"], [0.3], store=SweepStore(tmp_path / "junk.csv"), resume=True, **kwargs)


def test_the_config_records_what_has_no_column_and_the_context_cannot_override_it():
    fit = FitConfig(alpha=0.2)
    config = sweep_config(["rmt"], [0.5], prune_options={"fit_config": fit}, seed=3, context={"batch_size": 64})
    assert config.settings == {
        "fit_config": fit.to_dict(),
        "seed": 3,
        "options": {},
        "finetune_lr": 1e-4,
        "eval_batches": None,
        "batch_size": 64,
    }
    assert sweep_config(["rmt"], [0.5]).settings["fit_config"] == FitConfig().to_dict()  # recorded when not given
    with pytest.raises(InputError, match="prune_options: fit_config must be a FitConfig"):
        sweep_config(["rmt"], [0.5], prune_options={"fit_config": {"alpha": 0.2}})
    assert config.finetune_epochs == 0 and config.finetune_steps is None  # no fine-tuning loader: none ran
    tuned = sweep_config(["rmt"], [0.5], finetune=True, finetune_epochs=3, finetune_steps=5)
    assert (tuned.finetune_epochs, tuned.finetune_steps) == (1, 5)  # steps are one partial epoch
    with pytest.raises(InputError, match="seed"):
        sweep_config(["rmt"], [0.5], context={"seed": 1})
    with pytest.raises(InputError, match="a table, a models folder"):
        SweepStore(None)


def test_a_record_of_the_command_before_the_store_resumes(tmp_path: Path, setup):
    """`rmtlib sweep --calibration DATA:COUNT` recorded --calibration-samples (left out at its default), not
    the COUNT it drew; such a record still resumes a sweep that draws COUNT, and only that."""
    model, _, test = setup
    store = SweepStore(tmp_path / "s.csv", context={"calibration": "synthetic:32"})
    rmtlib.sweep(model, ["magnitude"], [0.3], eval_loader=test, calibration_samples=32, store=store)
    record = json.loads(store.settings_path.read_text())
    assert (record["calibration_samples"], record["calibration_seeds"]) == (32, [0])
    old = {k: v for k, v in record.items() if k not in ("calibration_samples", "calibration_seeds")}
    store.settings_path.write_text(json.dumps(old))
    config = sweep_config(["magnitude"], [0.3, 0.5], calibration_samples=32, context=store.context)
    assert list(store.prepare(config, resume=True).todo) == ["magnitude"]
    with pytest.raises(InputError, match="calibration_samples: table 32, this run 64"):
        store.prepare(sweep_config(["magnitude"], [0.3], calibration_samples=64, context=store.context), resume=True)


def test_a_record_from_before_fit_config_resumes_with_its_loose_keys_or_the_defaults(tmp_path: Path, setup):
    """Records written before the fit settings were one dict held loose alpha, beta and edge_centring (the
    command line) or nothing (a Python sweep with the defaults); both resume, and a change is refused."""
    model, _, test = setup
    store = SweepStore.folder(tmp_path / "s", save_models=False)
    rmtlib.sweep(model, ["magnitude"], [0.3], store=store, eval_loader=test)
    record = json.loads(store.settings_path.read_text())
    assert record["fit_config"] == FitConfig().to_dict()
    del record["fit_config"]
    for old in ({}, {"alpha": 0.25, "beta": 0.8}, {"alpha": 0.25, "beta": 0.8, "edge_centring": "paper"}):
        store.settings_path.write_text(json.dumps({**record, **old}))
        table = rmtlib.sweep(model, ["magnitude"], [0.3], store=store, eval_loader=test, resume=True)
        assert list(table.method) == ["dense", "magnitude"]
    store.settings_path.write_text(json.dumps({**record, "alpha": 0.2}))
    with pytest.raises(InputError, match="fit_config: table {'alpha': 0.2"):
        rmtlib.sweep(model, ["magnitude"], [0.3], store=store, eval_loader=test, resume=True)
