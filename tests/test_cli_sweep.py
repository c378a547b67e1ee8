"""`rmtlib sweep`: the same table as `rmtlib.experiments.sweep.sweep`, its files, and bad input rejected up front."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from rmtlib import FitConfig
from rmtlib.cli.main import main
from rmtlib.cli.sweep import level_summary, level_text, method_options
from rmtlib.errors import InputError
from rmtlib.experiments.sweep import STATS_COLUMNS, SWEEP_COLUMNS, sweep
from rmtlib.experiments.sweep_store import RESUME_TOP1_TOLERANCE
from rmtlib.nn.checkpoints import read_checkpoint, save_checkpoint
from rmtlib.nn.count import count_params
from rmtlib.nn.models import create_model
from rmtlib.train.data import load_dataset, make_loader

MODEL = "fc:784-48-10"
TIMINGS = ["prune_s", "finetune_s"]


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "in.safetensors"
    save_checkpoint(create_model(MODEL), path)
    return path


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse rejects bad values itself, with code 2
        return int(stop.code)


@pytest.mark.parametrize("schedule", ["oneshot", "gradual"])
def test_cli_table_equals_library_sweep(tmp_path: Path, schedule: str, capsys: pytest.CaptureFixture):
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "res" / "sweep.csv"
    rc = main(
        [
            "sweep",
            MODEL,
            "--checkpoint",
            str(ckpt),
            "--data",
            "synthetic",
            "--methods",
            "magnitude,svd,glob",
            "--option",
            "glob.method=magnitude",
            "--option",
            "glob.scope=global",
            "--levels",
            "0.6,0.3",
            "--schedule",
            schedule,
            "--finetune-steps",
            "2",
            "--batch-size",
            "32",
            "--seed",
            "5",
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "res" / "sweep.png"),
            "--quiet",
        ]
    )
    assert rc == 0
    got = pd.read_csv(out)
    assert list(got.columns) == SWEEP_COLUMNS

    model = create_model(MODEL, checkpoint=ckpt).eval()
    eval_loader = make_loader(load_dataset("synthetic", "test"), 500)
    train_loader = make_loader(load_dataset("synthetic", "train"), 32, shuffle=True, seed=5)
    want = sweep(
        model,
        ["magnitude", "svd", "glob"],
        [0.6, 0.3],
        eval_loader=eval_loader,
        finetune_loader=train_loader,
        finetune_steps=2,
        method_options={"glob": {"method": "magnitude", "scope": "global"}},
        prune_options={"include": None, "exclude": None, "fit_config": FitConfig()},
        schedule=schedule,
        device="cpu",
        seed=5,
        model_name=MODEL,
        dataset="synthetic",
    )
    want = pd.read_csv(_roundtrip(want, tmp_path / "want.csv"))
    pd.testing.assert_frame_equal(got.drop(columns=TIMINGS), want.drop(columns=TIMINGS))
    assert set(got["schedule"]) == {schedule} and (tmp_path / "res" / "sweep.png").stat().st_size > 0
    text = capsys.readouterr().out
    dense = got[got["method"] == "dense"].iloc[0]
    assert f"dense top-1 {dense['top1_dense']:.2f}%" in text and "glob" in text


def _roundtrip(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def test_save_dir_holds_each_pruned_model(tmp_path: Path):
    ckpt = _checkpoint(tmp_path)
    rc = main(
        [
            "sweep",
            MODEL,
            "--checkpoint",
            str(ckpt),
            "--data",
            "synthetic",
            "--methods",
            "glob",
            "--option",
            "glob.method=magnitude",
            "--option",
            "glob.scope=global",
            "--levels",
            "0.3,0.5",
            "--schedule",
            "gradual",
            "--save-dir",
            str(tmp_path / "models"),
            "--out",
            str(tmp_path / "s.csv"),
            "--quiet",
        ]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "s.csv").set_index("target")
    for level in (0.3, 0.5):
        path = tmp_path / "models" / f"glob_{level:.2f}.safetensors"
        reloaded = create_model(MODEL, checkpoint=path)
        counts = count_params(reloaded)
        assert counts["nonzero"] == table.loc[level, "params_nonzero"]
        meta = read_checkpoint(path)[1]["metadata"]
        assert meta["sparsity_target"] == level and meta["schedule"] == "gradual"
        assert meta["sparsity_reached"] == pytest.approx(table.loc[level, "sparsity"], abs=1e-12)
        # the file says how it was made: the variant's label, its method and options
        assert (meta["label"], meta["method"], meta["options"]) == ("glob", "magnitude", {"scope": "global"})
    # gradual: the 50% model keeps zero every weight the 30% model had pruned
    first = create_model(MODEL, checkpoint=tmp_path / "models" / "glob_0.30.safetensors")
    second = create_model(MODEL, checkpoint=tmp_path / "models" / "glob_0.50.safetensors")
    assert torch.all(second[1].weight[first[1].weight == 0] == 0)


def test_interrupted_sweep_keeps_its_finished_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import rmtlib.experiments.sweep
    import rmtlib.pruning

    real = rmtlib.pruning.prune
    calls = []

    def failing_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops a long sweep
        return real(*args, **kwargs)

    monkeypatch.setattr(rmtlib.experiments.sweep, "prune", failing_third)  # where the sweep looks it up
    out = tmp_path / "s.csv"
    with pytest.raises(KeyboardInterrupt):
        main(
            [
                "sweep",
                MODEL,
                "--data",
                "synthetic",
                "--methods",
                "magnitude,svd",
                "--levels",
                "0.3,0.5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
    table = pd.read_csv(out)
    assert list(table["method"]) == ["dense", "magnitude", "magnitude"] and list(table["target"]) == [0.0, 0.3, 0.5]
    # no temporary left behind; the settings record sits beside the table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.csv.settings.json"]


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the ``call``-th pruning of the next sweep raise KeyboardInterrupt (a user stopping it)."""
    import rmtlib.experiments.sweep
    import rmtlib.pruning

    real, calls = rmtlib.pruning.prune, []

    def prune(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rmtlib.experiments.sweep, "prune", prune)


@pytest.mark.parametrize("schedule, stop_at", [("oneshot", 3), ("oneshot", 5), ("gradual", 2), ("gradual", 5)])
def test_resumed_sweep_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str, stop_at: int
):
    ckpt = _checkpoint(tmp_path)

    def argv(out: str, folder: str) -> list[str]:
        return [
            "sweep",
            MODEL,
            "--checkpoint",
            str(ckpt),
            "--data",
            "synthetic",
            "--methods",
            "magnitude,svd",
            "--levels",
            "0.6,0.3,0.45",
            "--schedule",
            schedule,
            "--finetune-steps",
            "2",
            "--batch-size",
            "32",
            "--out",
            str(tmp_path / out),
            "--save-dir",
            str(tmp_path / folder),
            "--quiet",
        ]

    assert main(argv("whole.csv", "whole")) == 0
    with monkeypatch.context() as patch:
        _interrupt_at(patch, stop_at)
        with pytest.raises(KeyboardInterrupt):
            main(argv("part.csv", "part"))
    assert len(pd.read_csv(tmp_path / "part.csv")) == stop_at  # dense row + the runs finished before the stop
    assert main([*argv("part.csv", "part"), "--resume"]) == 0
    whole, resumed = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "part.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMINGS), whole.drop(columns=TIMINGS))
    # the saved models agree too (the svd stages are factorized layers rebuilt from their checkpoints)
    for path in (tmp_path / "whole").iterdir():
        a = create_model(MODEL, checkpoint=path).state_dict()
        b = create_model(MODEL, checkpoint=tmp_path / "part" / path.name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_sweep(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "s.csv"
    base = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "magnitude",
        "--levels",
        "0.3,0.5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(base) == 0
    before = out.read_text()
    for extra, message in (
        (["--schedule", "gradual"], "schedule"),
        (["--finetune-steps", "2"], "finetune_epochs"),
        (["--data", "mnist"], "dataset"),
    ):
        assert _exit_code([*base, "--resume", *extra]) == 2
        assert message in capsys.readouterr().err and out.read_text() == before
    (tmp_path / "g.csv").write_text(before.replace("oneshot", "gradual").replace("magnitude,0.3,", "magnitude,0.9,"))
    gradual = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "magnitude",
        "--levels",
        "0.3,0.5",
        "--quiet",
        "--schedule",
        "gradual",
        "--resume",
    ]
    assert _exit_code([*gradual, "--out", str(tmp_path / "g.csv")]) == 2  # 0.5 done but not 0.3
    assert "cannot restart" in capsys.readouterr().err
    (tmp_path / "g.csv").write_text(before.replace("oneshot", "gradual").replace("magnitude,0.5,", "magnitude,0.9,"))
    assert _exit_code([*gradual, "--out", str(tmp_path / "g.csv")]) == 2  # 0.3 done, its model not saved
    assert "magnitude_0.30.safetensors" in capsys.readouterr().err
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    assert _exit_code([*base[:-3], "--out", str(tmp_path / "junk.csv"), "--resume", "--quiet"]) == 2
    assert "not a table written by rmtlib sweep" in capsys.readouterr().err


def test_resume_refuses_other_settings_that_the_table_has_no_column_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """--alpha, --option, --set, --seed or the fine-tuning learning rate change the rows but not the dense
    model, so neither the table's columns nor its dense row can tell; a resume with other ones used to
    append rows made another way. The record beside the table refuses them."""
    out = tmp_path / "s.csv"
    argv = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "rmt,magnitude",
        "--levels",
        "0.3,0.5",
        "--finetune-steps",
        "1",
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--quiet",
    ]
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            main(argv)
    before, record = out.read_text(), (tmp_path / "s.csv.settings.json").read_text()
    for extra, key in (
        (["--alpha", "0.2"], "fit_config"),
        (["--edge-centring", "ma"], "fit_config"),
        (["--option", "rmt.exponent=1.0"], "options of rmt"),
        (["--set", "activation=tanh"], "model_kwargs"),
        (["--finetune-lr", "1e-3"], "finetune_lr"),
        (["--seed", "1"], "seed"),
        (["--exclude", "layers.0"], "exclude"),
    ):
        assert _exit_code([*argv, *extra, "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"{key}:" in err and "other settings" in err
        assert out.read_text() == before and (tmp_path / "s.csv.settings.json").read_text() == record
    (tmp_path / "s.csv.settings.json").write_text("{not json")
    assert _exit_code([*argv, "--resume"]) == 2
    assert "not a settings record" in capsys.readouterr().err and out.read_text() == before
    (tmp_path / "s.csv.settings.json").unlink()  # a table from before the record existed: resumed, with a note
    assert main([*argv, "--resume"]) == 0
    assert "is missing" in capsys.readouterr().err and len(pd.read_csv(out)) == 5
    assert (tmp_path / "s.csv.settings.json").read_text() == record  # written again, as the first run wrote it
    # a record from before fit_config held the loose alpha and beta (and no edge_centring): read as one config
    legacy = json.loads(record)
    assert FitConfig.from_dict(legacy["fit_config"]) == FitConfig()
    config = legacy.pop("fit_config")
    (tmp_path / "s.csv.settings.json").write_text(json.dumps({**legacy, "alpha": config["alpha"], "beta": 0.8}))
    table = out.read_text()
    assert _exit_code([*argv, "--alpha", "0.2", "--resume"]) == 2
    assert "fit_config:" in capsys.readouterr().err and out.read_text() == table
    assert main([*argv, "--resume"]) == 0
    assert out.read_text() == table


def test_loader_workers_do_not_change_the_numbers(tmp_path: Path):
    ckpt = _checkpoint(tmp_path)
    tables = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}.csv"
        assert (
            main(
                [
                    "sweep",
                    MODEL,
                    "--checkpoint",
                    str(ckpt),
                    "--data",
                    "synthetic",
                    "--methods",
                    "magnitude",
                    "--levels",
                    "0.5",
                    "--finetune-steps",
                    "3",
                    "--batch-size",
                    "32",
                    "--workers",
                    workers,
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        tables.append(pd.read_csv(out).drop(columns=TIMINGS))
    pd.testing.assert_frame_equal(*tables)


def test_same_seed_same_table_for_a_random_init_model(tmp_path: Path):
    tables = []
    for name in ("a.csv", "b.csv"):
        torch.manual_seed(len(name) + len(tables))  # a different global state each time: the CLI must seed itself
        assert (
            main(
                [
                    "sweep",
                    "fc:784-32-10",
                    "--data",
                    "synthetic",
                    "--methods",
                    "random",
                    "--levels",
                    "0.4",
                    "--seed",
                    "2",
                    "--out",
                    str(tmp_path / name),
                    "--quiet",
                ]
            )
            == 0
        )
        tables.append(pd.read_csv(tmp_path / name).drop(columns=TIMINGS))
    pd.testing.assert_frame_equal(*tables)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--levels", "0.3,1.0"], "--levels"),
        (["--levels", "0.3,half"], "--levels"),
        (["--levels", ","], "--levels"),
        (["--methods", "rmt,nope"], "nope"),
        (["--methods", "rmt,rmt"], "each label once"),
        (["--methods", "rmt", "--option", "cycles=6"], "LABEL.KEY=VALUE"),
        (["--methods", "rmt", "--option", "magnitude.scope=global"], "'magnitude' is not one of --methods"),
        (["--methods", "glob", "--option", "glob.method=nope"], "glob"),
        (["--methods", "magnitude,svd", "--option", "svd.cycles=2"], "svd: unknown option(s) cycles"),
        (["--schedule", "sideways"], "--schedule"),
        (["--finetune-steps", "0"], "--finetune-steps"),
        (["--eval-batches", "-1"], "--eval-batches"),
        (["--workers", "-1"], "--workers"),
        (["--checkpoint", "missing.safetensors"], "missing.safetensors"),
        (["--data", "no/such/folder"], "no/such/folder"),
        (["--plot", "folder"], "--plot"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, extra: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    argv = ["sweep", "fc:784-16-10", "--data", "synthetic", "--levels", "0.5", "--out", "out.csv", "--quiet"]
    assert _exit_code([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"] and not any((tmp_path / "folder").iterdir())


def test_out_under_a_file_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "file").write_text("keep")
    argv = ["sweep", "fc:784-16-10", "--data", "synthetic", "--out", str(tmp_path / "file" / "x.csv"), "--quiet"]
    assert _exit_code(argv) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file").read_text() == "keep"


def test_method_options_groups_by_label_and_parses_values():
    got = method_options(
        ["rmt.cycles=6", "glob.method=magnitude", "glob.scope=global", "rmt.reg-steps=0"], ["rmt", "glob"]
    )
    assert got == {"rmt": {"cycles": 6, "reg_steps": 0}, "glob": {"method": "magnitude", "scope": "global"}}
    with pytest.raises(InputError, match="LABEL.KEY=VALUE"):
        method_options(["rmt.cycles"], ["rmt"])


def test_level_summary_lists_every_run():
    rows = [
        dict(
            method="dense",
            target=0.0,
            sparsity=0.0,
            top1_dense=97.5,
            params_dense=1000,
            top1_pruned=97.5,
            top1_finetuned=float("nan"),
        )
    ]
    rows += [
        dict(
            method=m,
            target=t,
            sparsity=t + 0.001,
            top1_dense=97.5,
            params_dense=1000,
            top1_pruned=90 + t,
            top1_finetuned=95 + t,
        )
        for m in ("rmt", "magnitude")
        for t in (0.3, 0.5)
    ]
    text = level_summary(pd.DataFrame(rows))
    assert "dense top-1 97.50%  (1,000 parameters)" in text
    assert "90.30 -> 95.30 (0.30)" in text and "90.50 -> 95.50 (0.50)" in text
    assert text.splitlines()[-1].strip().startswith("magnitude")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sweep_matches_the_cpu_counts(tmp_path: Path):
    ckpt = _checkpoint(tmp_path)
    tables = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        assert (
            main(
                [
                    "sweep",
                    MODEL,
                    "--checkpoint",
                    str(ckpt),
                    "--data",
                    "synthetic",
                    "--methods",
                    "magnitude,svd",
                    "--levels",
                    "0.3,0.5",
                    "--schedule",
                    "gradual",
                    "--finetune-steps",
                    "2",
                    "--device",
                    device,
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        tables[device] = pd.read_csv(out)
    cpu, gpu = tables["cpu"], tables["cuda"]
    # the same weights are removed on either device; accuracies agree up to float rounding
    assert list(gpu["params_nonzero"]) == list(cpu["params_nonzero"])
    assert list(gpu["params_stored"]) == list(cpu["params_stored"])
    assert (gpu["top1_pruned"] - cpu["top1_pruned"]).abs().max() <= 1.0


def test_save_dir_keeps_levels_that_share_two_decimals(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Files were named with two decimals, so the 0.125 model overwrote the 0.12 one (and a gradual
    --resume would restart from the wrong stage)."""
    ckpt = _checkpoint(tmp_path)
    assert (
        main(
            [
                "sweep",
                MODEL,
                "--checkpoint",
                str(ckpt),
                "--data",
                "synthetic",
                "--methods",
                "magnitude",
                "--levels",
                "0.12,0.125",
                "--save-dir",
                str(tmp_path / "models"),
                "--out",
                str(tmp_path / "s.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "s.csv").set_index("target")
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == ["magnitude_0.12.safetensors", "magnitude_0.125.safetensors"]
    for level in (0.12, 0.125):
        path = tmp_path / "models" / f"magnitude_{level_text(level)}.safetensors"
        assert read_checkpoint(path)[1]["metadata"]["sparsity_target"] == level
        assert count_params(create_model(MODEL, checkpoint=path))["nonzero"] == table.loc[level, "params_nonzero"]
    header = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("method")][0]
    assert header.split() == ["method", "0.12", "0.125"]
    assert _exit_code(["sweep", MODEL, "--data", "synthetic", "--levels", "0.3,0.30", "--quiet"]) == 2
    assert "each level once" in capsys.readouterr().err


def test_saved_models_keep_the_architecture_of_the_checkpoint(tmp_path: Path):
    """A --checkpoint that records its architecture (here a tanh net, as `rmtlib prune --set` writes it)
    is built with it; the pruned files used to record only this run's --set (nothing), so they came
    back as ReLU nets with other outputs."""
    from rmtlib.nn.models import fc_net

    torch.manual_seed(1)
    source = fc_net([784, 48, 10], activation="tanh")
    ckpt = save_checkpoint(
        source, tmp_path / "tanh.safetensors", {"model": MODEL, "model_kwargs": {"activation": "tanh"}}
    )
    assert (
        main(
            [
                "sweep",
                MODEL,
                "--checkpoint",
                str(ckpt),
                "--data",
                "synthetic",
                "--methods",
                "magnitude",
                "--levels",
                "0.5",
                "--save-dir",
                str(tmp_path / "models"),
                "--quiet",
            ]
        )
        == 0
    )
    path = tmp_path / "models" / "magnitude_0.50.safetensors"
    expected = fc_net([784, 48, 10], activation="tanh")  # the saved weights in the recorded architecture
    expected.load_state_dict(read_checkpoint(path)[0])
    x = torch.randn(5, 784)
    assert torch.equal(create_model(MODEL, checkpoint=path)(x), expected(x))
    assert read_checkpoint(path)[1]["metadata"]["model_kwargs"] == {"activation": "tanh"}


def test_resume_refuses_another_dense_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """The table does not record --checkpoint (nor --eval-split, --eval-batches); a resume with another one
    used to append its rows under the first model's dense top-1, silently mixing two models' results."""
    from rmtlib.train.loops import evaluate

    first = _checkpoint(tmp_path)
    torch.manual_seed(4)
    second = save_checkpoint(create_model(MODEL), tmp_path / "other.safetensors")
    out = tmp_path / "s.csv"
    argv = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "magnitude",
        "--levels",
        "0.3,0.5",
        "--out",
        str(out),
        "--quiet",
    ]
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            main([*argv, "--checkpoint", str(first)])
    before = out.read_text()
    dense = pd.read_csv(out).iloc[0]
    other = create_model(MODEL, checkpoint=second).eval()  # its top-1 differs from the table's dense row
    other_top1 = 100 * evaluate(other, make_loader(load_dataset("synthetic", "test"), 500))["accuracy"]
    assert abs(other_top1 - dense["top1_dense"]) > RESUME_TOP1_TOLERANCE
    for extra, message in (
        (["--checkpoint", str(second)], "dense model"),
        (["--checkpoint", str(first), "--eval-batches", "1", "--eval-batch-size", "16"], "eval_batches:"),
    ):
        assert _exit_code([*argv, *extra, "--resume"]) == 2
        assert message in capsys.readouterr().err and out.read_text() == before
    (tmp_path / "s.csv.settings.json").unlink()  # without the settings record, the dense row still tells
    assert (
        _exit_code([*argv, "--checkpoint", str(first), "--eval-batches", "1", "--eval-batch-size", "16", "--resume"])
        == 2
    )
    assert "dense model" in capsys.readouterr().err and out.read_text() == before
    assert main([*argv, "--checkpoint", str(first), "--resume"]) == 0  # the same settings resume
    assert len(pd.read_csv(out)) == 3


def test_an_existing_table_is_kept_unless_resumed_or_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Running the same command twice (forgetting --resume) used to replace hours of results."""
    out = tmp_path / "s.csv"
    argv = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "magnitude",
        "--levels",
        "0.3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    before = out.read_text()
    assert _exit_code(argv) == 2
    assert "pass --resume" in capsys.readouterr().err and out.read_text() == before
    assert _exit_code([*argv, "--resume", "--overwrite"]) == 2
    assert main([*argv, "--overwrite", "--levels", "0.5"]) == 0
    assert list(pd.read_csv(out)["target"]) == [0.0, 0.5]


def test_resume_may_add_a_label_with_options_and_bad_option_values_stop_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "s.csv"
    base = ["sweep", MODEL, "--data", "synthetic", "--levels", "0.3", "--out", str(out), "--quiet"]
    # a bad value of a later method used to fail after the earlier methods had run (and been recorded)
    assert _exit_code([*base, "--methods", "magnitude,rmt", "--option", "rmt.rho=-1"]) == 2
    assert "rho must be a finite number > 0" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--methods", "magnitude"]) == 0
    more = [
        *base,
        "--methods",
        "magnitude,glob",
        "--option",
        "glob.method=magnitude",
        "--option",
        "glob.scope=global",
        "--resume",
    ]
    assert main(more) == 0  # the new label's options are not "other settings"
    assert list(pd.read_csv(out)["method"]) == ["dense", "magnitude", "glob"]
    record = json.loads((tmp_path / "s.csv.settings.json").read_text())
    assert record["options"] == {"glob": {"method": "magnitude", "scope": "global"}}
    assert _exit_code([*base, "--methods", "magnitude,glob", "--option", "glob.method=magnitude", "--resume"]) == 2
    assert "options of glob" in capsys.readouterr().err


def test_overwrite_removes_the_old_table_and_record_before_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Interrupted between its settings and its first row, --overwrite left the new record beside the
    old rows, and a resume then accepted them."""
    out = tmp_path / "s.csv"
    base = [
        "sweep",
        MODEL,
        "--data",
        "synthetic",
        "--methods",
        "magnitude",
        "--levels",
        "0.3",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(base) == 0
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            main([*base, "--alpha", "0.2", "--overwrite"])
    assert not out.exists() or list(pd.read_csv(out)["method"]) == ["dense"]
    if (tmp_path / "s.csv.settings.json").exists():
        assert json.loads((tmp_path / "s.csv.settings.json").read_text())["fit_config"]["alpha"] == 0.2


def test_overwrite_without_out_is_harmless():
    """--overwrite with no --out used to fail on Path(None) after the whole set-up."""
    assert (
        main(
            [
                "sweep",
                MODEL,
                "--data",
                "synthetic",
                "--methods",
                "magnitude",
                "--levels",
                "0.3",
                "--overwrite",
                "--quiet",
            ]
        )
        == 0
    )


def test_data_methods_take_calibration_images(tmp_path: Path):
    """wanda/sparsegpt rows equal the library's prune on the same seeded calibration images."""
    from rmtlib.pruning import prune
    from rmtlib.pruning.calibration import draw_calibration
    from rmtlib.train.loops import evaluate

    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "cal.csv"
    argv = ["sweep", MODEL, "--checkpoint", str(ckpt), "--data", "synthetic", "--methods", "wanda,sparsegpt"]
    assert main([*argv, "--levels", "0.5", "--calibration", "synthetic:32", "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out).set_index("method")
    model = create_model(MODEL, checkpoint=ckpt).eval()
    inputs = draw_calibration(load_dataset("synthetic", "train"), 32, 0)
    loader = make_loader(load_dataset("synthetic", "test"), 500)
    for method in ("wanda", "sparsegpt"):
        pruned = prune(model, method, sparsity=0.5, calibration=inputs).model
        assert table.loc[method, "top1_pruned"] == pytest.approx(100 * evaluate(pruned, loader)["accuracy"])
        assert table.loc[method, "sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert json.loads((tmp_path / "cal.csv.settings.json").read_text())["calibration"] == "synthetic:32"


@pytest.mark.parametrize("stop_at", [2, 4])
def test_resumed_sweep_with_a_reference_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int, capsys: pytest.CaptureFixture
):
    ckpt = _checkpoint(tmp_path)

    def argv(out: str, reference: str = "glob") -> list[str]:
        return [
            "sweep", MODEL, "--checkpoint", str(ckpt), "--data", "synthetic", "--methods", "magnitude,random,glob",
            "--option", "glob.method=magnitude", "--option", "glob.scope=global", "--reference", reference,
            "--levels", "0.3,0.6", "--n-boot", "200", "--out", str(tmp_path / out),
        ]  # fmt: skip

    assert main(argv("whole.csv")) == 0
    whole = pd.read_csv(tmp_path / "whole.csv")
    assert list(whole["method"]) == ["dense", "glob", "glob", "magnitude", "magnitude", "random", "random"]
    assert whole[whole.method.isin(["magnitude", "random"])]["p_value"].between(0, 1).all()
    assert "top-1 minus glob's, pp" in capsys.readouterr().out
    with monkeypatch.context() as patch:
        _interrupt_at(patch, stop_at)  # 2: within the reference's levels; 4: after magnitude's first level
        with pytest.raises(KeyboardInterrupt):
            main(argv("part.csv"))
    assert main([*argv("part.csv"), "--resume"]) == 0
    resumed = pd.read_csv(tmp_path / "part.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns=TIMINGS), whole.drop(columns=TIMINGS))
    # another reference is other settings; an unknown one is refused up front
    assert _exit_code([*argv("part.csv", "magnitude"), "--resume"]) == 2
    assert "reference: table 'glob', this run 'magnitude'" in capsys.readouterr().err
    assert _exit_code(argv("x.csv", "nope")) == 2
    assert not (tmp_path / "x.csv").exists()


def test_a_table_from_before_the_statistics_resumes_with_them_empty(tmp_path: Path):
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "old.csv"
    args = ["sweep", MODEL, "--checkpoint", str(ckpt), "--data", "synthetic", "--methods", "magnitude,svd",
            "--levels", "0.3", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    table = pd.read_csv(out)
    old_columns = [c for c in SWEEP_COLUMNS if c not in STATS_COLUMNS]
    table[table.method != "svd"][old_columns].to_csv(out, index=False)  # as an older rmtlib wrote it, svd missing
    assert main([*args, "--resume"]) == 0
    resumed = pd.read_csv(out)
    assert list(resumed.columns) == SWEEP_COLUMNS and list(resumed.method) == ["dense", "magnitude", "svd"]
    assert resumed.loc[1, STATS_COLUMNS].isna().all() and resumed.loc[2, "ce"] == pytest.approx(table.loc[2, "ce"])
    assert _exit_code([*args, "--reference", "magnitude", "--resume"]) == 2  # no predictions to pair with


def test_level_summary_shows_the_comparison():
    rows = [dict(method="dense", target=0.0, sparsity=0.0, top1_dense=97.5, params_dense=10, top1_pruned=97.5,
                 top1_finetuned=float("nan"), reference="glob", p_value=float("nan"))]  # fmt: skip
    rows += [dict(method="glob", target=0.5, sparsity=0.5, top1_dense=97.5, params_dense=10, top1_pruned=96.0,
                  top1_finetuned=float("nan"), reference="glob", p_value=float("nan"))]  # fmt: skip
    rows += [dict(method="rmt", target=0.5, sparsity=0.5, top1_dense=97.5, params_dense=10, top1_pruned=95.0,
                  top1_finetuned=float("nan"), reference="glob", diff_pp=-1.0, ci_low_pp=-1.5, ci_high_pp=-0.5,
                  p_value=0.0123)]  # fmt: skip
    text = level_summary(pd.DataFrame(rows))
    assert "top-1 minus glob's" in text and "-1.00 [-1.50, -0.50] (0.012)" in text.splitlines()[-1]


@pytest.fixture
def calibrated_probe():
    """A data-dependent method for one test: random pruning seeded by its calibration inputs."""
    from rmtlib.pruning import METHODS, register_method
    from rmtlib.pruning.elementwise import layerwise_counts, removal_needed

    @register_method("_cli_probe", requires_sparsity=True, needs_calibration=True)
    def probe(ctx, *, calibration=None):
        inputs = ctx.calibration if ctx.calibration is not None else calibration
        gen = torch.Generator().manual_seed(int(1e6 * float(inputs.abs().sum())) % 2**31)
        for unit, k in zip(ctx.units, layerwise_counts(ctx.units, removal_needed(ctx.units, ctx.budget))):
            idx = torch.randperm(unit.matrix.numel(), generator=gen)[:k]
            unit.matrix.view(-1)[idx] = 0
        return {"inputs": int(inputs.shape[0])}

    yield "_cli_probe"
    METHODS.pop("_cli_probe")


def test_calibration_seeds_are_drawn_from_the_training_split(tmp_path: Path, calibrated_probe: str):
    out = tmp_path / "c.csv"
    argv = ["sweep", MODEL, "--data", "synthetic", "--methods", f"{calibrated_probe},magnitude", "--levels", "0.5",
            "--calibration-seeds", "3,4,5", "--calibration-samples", "16", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    row = pd.read_csv(out).set_index("method").loc[calibrated_probe]
    assert row.calibration_seeds == 3 and row.top1_seed_min <= row.top1_pruned <= row.top1_seed_max
    assert json.loads((tmp_path / "c.csv.settings.json").read_text())["calibration_seeds"] == [3, 4, 5]
    for bad in ("3,3", "a,b", ""):
        assert _exit_code([*argv[:-7], "--calibration-seeds", bad, "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()
