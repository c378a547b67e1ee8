"""Bad and odd input, as a careful new user would try it: no command destroys a checkpoint, and no bad
input ends in a traceback (exit 2 and a message naming the flag, layer or file, before any work)."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import struct
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rmtlib
import rmtlib.cli.prune as cli_prune
import rmtlib.cli.train as cli_train
from rmtlib.cli.args import DATA, DEVICE, FIT, OUTPUT, check_io
from rmtlib.cli.main import build_parser, main
from rmtlib.errors import CheckpointError, InputError, check_number
from rmtlib.nn.checkpoints import read_record, save_checkpoint
from rmtlib.nn.models import create_model, load_mnist_vit
from rmtlib.plots.spectra import auto_bins, plot_depth_summary, plot_esd_grid
from rmtlib.pruning import prune
from rmtlib.runtime import get_device, resolve_device
from rmtlib.spectral.analyze import analyze
from rmtlib.spectral.fit import POOR_FIT_MU, fit_mp, poor_fit_threshold
from rmtlib.spectral.fit_config import FitConfig

matplotlib.use("Agg")

FC = "fc:784-16-10"  # takes synthetic 28 x 28 images, 10 classes


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_checkpoint(create_model(FC), path, {"model": FC})
    return path


def _run(argv: list[str]) -> int:
    """``main(argv)``; argparse's refusals (SystemExit) become their exit code."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


# ---- 1. data loss: an output that is an input, or an existing checkpoint, is refused before any work ----


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", FC, "--checkpoint", "{ck}", "--data", "synthetic", "--out", "{ck}"],
        ["prune", FC, "--checkpoint", "{ck}", "--method", "magnitude", "--sparsity", "0.5", "--report", "{ck}"],
        ["analyze", FC, "--checkpoint", "{ck}", "--out", "{ck}"],
        ["train", FC, "--checkpoint", "{ck}", "--data", "synthetic", "--epochs", "1", "--card", "{ck}"],
        ["prune", FC, "--checkpoint", "{link}", "--method", "magnitude", "--sparsity", "0.5", "--out", "{ck}"],
        ["train", FC, "--checkpoint", "{ck}", "--data", "synthetic", "--epochs", "1", "--out", "{ck}"],
    ],
)
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    argv: list[str], ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    link = tmp_path / "link.safetensors"
    link.symlink_to(ckpt)  # the same file after resolving links
    before = _digest(ckpt)
    argv = [a.format(ck=ckpt, link=link) for a in argv] + ["--quiet"]
    assert _run(argv + ["--overwrite"]) == 2  # not even --overwrite may destroy an input
    err = capsys.readouterr().err
    assert "which this command reads" in err and str(ckpt) in err
    assert _digest(ckpt) == before


def test_an_existing_checkpoint_is_replaced_only_with_overwrite(ckpt: Path, tmp_path: Path, capsys):
    other = tmp_path / "other.safetensors"
    save_checkpoint(create_model("fc:784-8-10"), other)
    before = _digest(other)
    argv = ["prune", FC, "--checkpoint", str(ckpt), "--method", "magnitude", "--sparsity", "0.5", "--quiet"]
    assert _run(argv + ["--out", str(other)]) == 2
    assert "--overwrite" in capsys.readouterr().err and _digest(other) == before
    assert _run(argv + ["--out", str(other), "--overwrite"]) == 0
    assert _digest(other) != before
    # eval's JSON --out onto a checkpoint: the same rule, whatever the writer
    assert _run(["eval", FC, "--checkpoint", str(ckpt), "--data", "synthetic", "--out", str(other), "--quiet"]) == 2


def test_hard_links_and_the_data_folder_are_inputs_too(ckpt: Path, tmp_path: Path):
    hard = tmp_path / "hard.safetensors"
    os.link(ckpt, hard)  # another name, the same file
    with pytest.raises(InputError, match="which this command reads"):
        check_io([(str(ckpt), "--checkpoint")], [(str(hard), "--out")], overwrite=True)
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(InputError, match="inside the --data folder"):
        check_io([], [(str(images / "table.csv"), "--out")], data=f"imagefolder:{images}")
    check_io([], [(str(tmp_path / "table.csv"), "--out")], data=f"imagefolder:{images}")  # beside it is fine


# ---- 2. late crashes: checked before the work, or the result rescued ----


def test_data_with_more_classes_than_the_head_is_refused_before_pruning(tmp_path: Path, capsys):
    out = tmp_path / "p.safetensors"
    argv = ["prune", "fc:784-16-4", "--method", "magnitude", "--sparsity", "0.5", "--data", "synthetic", "--out"]
    assert _run(argv + [str(out), "--quiet"]) == 2  # was an IndexError after the pruning
    err = capsys.readouterr().err
    assert "10 classes" in err and "4 outputs" in err and not out.exists()


def test_a_head_wider_than_the_data_is_warned_about_naming_both_counts(ckpt: Path, capsys):
    torch.manual_seed(0)
    wide = ckpt.with_name("wide.safetensors")
    save_checkpoint(create_model("fc:784-16-1000"), wide)
    assert _run(["eval", "fc:784-16-1000", "--checkpoint", str(wide), "--data", "synthetic", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "10 classes" in err and "1000 outputs" in err


def test_a_plot_format_matplotlib_cannot_write_is_refused_before_the_sweep(tmp_path: Path, capsys):
    argv = ["sweep", FC, "--data", "synthetic", "--levels", "0.5", "--methods", "magnitude"]
    assert _run(argv + ["--plot", str(tmp_path / "x.txt"), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 2
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()


def test_a_long_out_name_is_written_and_a_too_long_one_refused_up_front(ckpt: Path, tmp_path: Path, capsys):
    base = ["analyze", FC, "--checkpoint", str(ckpt), "--quiet", "--out"]
    long = tmp_path / ("t" * 243 + ".csv")  # 247 characters: its temporary name once exceeded 255 bytes
    assert _run(base + [str(long)]) == 0 and long.is_file()
    assert _run(base + [str(tmp_path / ("t" * 300 + ".csv"))]) == 2
    assert "longer than this file system takes" in capsys.readouterr().err


def test_a_full_disk_at_the_end_keeps_the_result_and_says_where(ckpt: Path, tmp_path: Path, monkeypatch, capsys):
    target = tmp_path / "pruned.safetensors"
    real = cli_prune.save_checkpoint

    def full_disk(model, path, metadata=None):
        if Path(path) == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(model, path, metadata)

    monkeypatch.setattr(cli_prune, "save_checkpoint", full_disk)
    argv = ["prune", FC, "--checkpoint", str(ckpt), "--method", "magnitude", "--sparsity", "0.5", "--quiet"]
    assert _run(argv + ["--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and "saved to" in err
    rescued = Path(err.split("saved to ")[1].split(" instead")[0])
    try:
        pruned = create_model(FC, checkpoint=rescued)
        weights = torch.cat([p.flatten() for n, p in pruned.named_parameters() if n.endswith("weight")])
        assert float((weights == 0).float().mean()) == pytest.approx(0.5, abs=0.01)  # the pruned model, whole
    finally:
        rescued.unlink(missing_ok=True)


# ---- 3. settings checked with one helper ----


@pytest.mark.parametrize(
    "flags", [["--alpha", "0.7"], ["--alpha", "-0.1"], ["--beta", "1e-12"], ["--beta", "1"], ["--alpha", "nan"]]
)
@pytest.mark.parametrize("command", ["analyze", "prune", "sweep"])
def test_fit_settings_out_of_range_are_refused_by_every_command(command: str, flags: list[str], ckpt, capsys):
    extra = {"prune": ["--method", "rmt"], "sweep": ["--data", "synthetic"], "analyze": []}[command]
    assert _run([command, FC, "--checkpoint", str(ckpt), *extra, *flags, "--quiet"]) == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": "0.2"}, "alpha"),
        ({"alpha": 0.5}, "alpha"),
        ({"beta": None}, "beta"),
        ({"beta": 1e-12}, "beta"),
        ({"edge_centring": None}, "edge_centring"),
        ({"shape": (100, "x")}, "shape"),
    ],
)
def test_fit_mp_refuses_bad_settings_with_an_input_error(kwargs: dict, message: str, rng):
    x = rng.standard_normal(100) if "shape" in kwargs else rng.standard_normal((100, 50))
    with pytest.raises(InputError, match=message):
        if "shape" in kwargs:
            fit_mp(x, **kwargs)
        else:
            fit_mp(x, fit_config=FitConfig(**kwargs))


@pytest.mark.parametrize("bad", [{"alpha": 0.3}, None, "paper"])
def test_a_fit_config_that_is_not_one_is_refused_before_any_work(bad, rng):
    model = create_model("fc:40-32-4")
    w = rng.standard_normal((40, 32))
    for call in (
        lambda: fit_mp(w, fit_config=bad),
        lambda: analyze(model, fit_config=bad, progress=False),
        lambda: prune(model, "rmt_oneshot", sparsity=0.3, fit_config=bad),
    ):
        with pytest.raises(InputError, match="must be a FitConfig"):
            call()


def test_alpha_zero_and_just_below_a_half_fit(rng):
    """BEMA's window floor(alpha p) .. floor((1 - alpha) p) is non-empty on all of [0, 0.5)."""
    w = rng.standard_normal((400, 100))
    for alpha in (0.0, 0.25, 0.499):
        assert fit_mp(w, fit_config=FitConfig(alpha=alpha)).sigma2 == pytest.approx(1.0, rel=0.05)


def test_numpy_scalars_of_any_width_are_numbers_and_strings_are_not():
    assert check_number("x", np.float32(0.5), minimum=0) == 0.5
    assert check_number("x", np.int8(3), minimum=0, integer=True) == 3.0
    for bad in ("0.5", True, np.bool_(True), None, float("inf")):
        with pytest.raises(InputError, match="x must be"):
            check_number("x", bad, minimum=0)
    model = create_model("fc:64-32-10")
    summary = prune(model, "magnitude", sparsity=np.float32(0.5)).summary  # float64 passed, float32 was refused
    assert summary.reached_sparsity == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "method, option",
    [
        ("rmt_lowrank", "bulk_fraction=abc"),
        ("rmt_lowrank", "bulk_fraction=2"),
        ("svd", "rank_fraction=abc"),
        ("svd", "rank_fraction=true"),  # was taken as 1.0
        ("rmt", "rho=1e308"),
        ("svd", "min_rank=0.5"),
    ],
)
def test_bad_option_values_are_refused_naming_the_option(method: str, option: str, ckpt, capsys):
    argv = ["prune", FC, "--checkpoint", str(ckpt), "--method", method, "--option", option, "--quiet"]
    assert _run(argv) == 2
    assert option.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", FC, "--method", "random", "--sparsity", "0.5", "--seed=-1"],
        ["prune", FC, "--method", "random", "--sparsity", "0.5", "--seed", str(2**32)],
        ["train", FC, "--data", "synthetic", "--epochs", "1", "--seed", str(10**20)],
        ["train", FC, "--data", "synthetic", "--epochs", "1", "--mp-every", "1", "--mp-T", "0"],
        ["eval", FC, "--data", "synthetic", "--workers", "99999999999"],  # tried to start that many processes
    ],
)
def test_seeds_workers_and_schedules_out_of_range_are_refused(argv: list[str], tmp_path: Path, capsys):
    assert _run(argv + ["--quiet"]) == 2
    assert argv[-1].split("=")[0].lstrip("-") in capsys.readouterr().err or "--" in argv[-2]


# ---- 4. one device rule ----


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "gpu", "cuda:99"])
def test_unavailable_devices_are_refused_by_name(device: str):
    if device in ("mps", "xpu") and torch.device(device).type in {get_device("auto").type}:
        pytest.skip(f"this machine has {device}")
    with pytest.raises(InputError, match=device.split(":")[0]):
        resolve_device(device)


@pytest.mark.parametrize("command", ["analyze", "prune", "sweep", "eval", "train"])
def test_every_command_takes_auto_and_refuses_meta(command: str, ckpt, tmp_path, capsys):
    extra = {
        "prune": ["--method", "magnitude", "--sparsity", "0.3"],
        "sweep": ["--data", "synthetic", "--methods", "magnitude", "--levels", "0.3", "--eval-batches", "1"],
        "eval": ["--data", "synthetic"],
        "train": ["--data", "synthetic", "--epochs", "1", "--train-subset", "128"],
        "analyze": [],
    }[command]
    argv = [command, FC, "--checkpoint", str(ckpt), *extra, "--quiet"]
    assert _run(argv + ["--device", "meta"]) == 2
    assert "meta" in capsys.readouterr().err
    if command in ("analyze", "prune", "sweep"):  # auto was refused by these three
        assert _run(argv + ["--device", "auto"]) == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert sub.get_default("device") == "auto"


# ---- 5. surprises ----


def test_analyze_mnist_vit_without_checkpoint_is_the_committed_model(tmp_path: Path):
    out = tmp_path / "a.csv"
    assert _run(["analyze", "mnist_vit", "--out", str(out), "--quiet"]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    expected = analyze(load_mnist_vit(), progress=False)
    np.testing.assert_allclose(table["sigma2"], expected["sigma2"], rtol=1e-9)


@pytest.mark.parametrize("c", [2.0**-500, 1e-40, 1e40, 1e153, 2.0**510])
def test_fit_is_scale_equivariant_far_from_unit_scale(c: float, rng):
    """sigma^2 scales by c^2, s_+ by c; gamma, mu and the spikes do not move. From 1e153 on the Gram
    matrix of a 200 x 80 matrix overflowed (a LinAlgError), though sigma^2 (1e306) is a float64."""
    w = rng.standard_normal((200, 80))
    ref, fit = fit_mp(w), fit_mp(w * c)
    assert fit.sigma2 == pytest.approx(ref.sigma2 * c * c, rel=1e-9)
    assert fit.sv_edge == pytest.approx(ref.sv_edge * c, rel=1e-9)
    assert (fit.gamma, fit.n_spikes) == (ref.gamma, ref.n_spikes)
    assert fit.mu == pytest.approx(ref.mu, abs=1e-9)


@pytest.mark.parametrize("c", [1e-170, 1e154])
def test_a_scale_whose_sigma2_float64_cannot_hold_is_a_clear_error(c: float, rng):
    with pytest.raises(InputError, match="outside float64's range"):  # was "all-zero matrix" / LinAlgError
        fit_mp(rng.standard_normal((200, 80)) * c)


def test_one_max_float_entry_leaves_the_rest_below_round_off(rng):
    w = rng.standard_normal((200, 80))
    w[0, 0] = np.finfo(np.float64).max  # was a LinAlgError
    assert fit_mp(w).status == "rank_deficient"  # rank one, to float64's precision


def test_poor_fit_flags_cauchy_entries_and_not_gaussian_ones(rng):
    cauchy, gauss = fit_mp(rng.standard_cauchy((192, 768))), fit_mp(rng.standard_normal((192, 768)))
    assert cauchy.ok and cauchy.poor_fit and cauchy.mu > POOR_FIT_MU  # status was "ok", nothing else
    assert gauss.ok and not gauss.poor_fit
    assert not fit_mp(rng.standard_normal((16, 16))).poor_fit  # small noise: the 4 / p allowance
    assert poor_fit_threshold(16) == 0.25 and poor_fit_threshold(768) == POOR_FIT_MU
    model = torch.nn.Sequential(torch.nn.Linear(768, 192))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(rng.standard_cauchy((192, 768))))
    assert analyze(model, progress=False)["poor_fit"].tolist() == [True]


def test_a_nan_bias_is_refused_naming_it_and_nothing_is_written(tmp_path: Path, capsys):
    model = create_model(FC)
    with torch.no_grad():
        model[3].bias[2] = float("nan")
    save_checkpoint(model, tmp_path / "nan.safetensors")
    out = tmp_path / "p.safetensors"
    argv = ["prune", FC, "--checkpoint", str(tmp_path / "nan.safetensors"), "--method", "magnitude"]
    assert _run(argv + ["--sparsity", "0.5", "--out", str(out), "--quiet"]) == 2
    assert "layer 3: bias contains 1 NaN" in capsys.readouterr().err and not out.exists()


def test_analyze_of_a_state_dict_says_what_to_pass():
    with pytest.raises(InputError, match="state dict"):
        rmtlib.analyze(create_model(FC).state_dict())


def _with_header(path: Path, record: str) -> None:
    """Write a one-tensor safetensors file whose rmtlib record is ``record`` (raw JSON text)."""
    header = json.dumps(
        {"__metadata__": {"rmtlib": record}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    )
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0\0\0\0")


@pytest.mark.parametrize("record", ["[1, 2]", '{"metadata": [1]}', '{"lowrank": "x"}', '{"metadata": {"config": 3}}'])
def test_corrupt_metadata_is_a_checkpoint_error_naming_the_file(record: str, tmp_path: Path):
    path = tmp_path / "bad.safetensors"
    _with_header(path, record)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_record(path)


def test_a_recorded_config_that_does_not_build_names_the_file(tmp_path: Path, capsys):
    path = tmp_path / "vit.safetensors"
    save_checkpoint(create_model(FC), path, {"model": "mnist_vit", "config": {"depth": "six"}})
    assert _run(["eval", "mnist_vit", "--checkpoint", str(path), "--data", "synthetic", "--quiet"]) == 2
    assert "vit.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--report"])
def test_an_empty_output_name_is_refused(flag: str, ckpt, capsys):
    argv = ["prune", FC, "--checkpoint", str(ckpt), "--method", "magnitude", "--sparsity", "0.5", flag, "", "--quiet"]
    assert _run(argv) == 2  # wrote nothing and exited 0
    assert "empty" in capsys.readouterr().err


# ---- 6. leftovers ----


def test_a_kill_between_weights_and_card_never_leaves_a_mismatched_pair(tmp_path: Path, monkeypatch):
    out, card = tmp_path / "m.safetensors", tmp_path / "m.json"
    argv = [
        "train",
        FC,
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--train-subset",
        "64",
        "--batch-size",
        "32",
        "--quiet",
    ]
    assert _run(argv + ["--out", str(out), "--card", str(card)]) == 0
    assert json.loads(card.read_text())["sha256"] == _digest(out)

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # what a kill between the two writes amounts to

    monkeypatch.setattr(cli_train, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        main(argv + ["--out", str(out), "--card", str(card), "--seed", "1", "--overwrite"])
    assert out.is_file() and not card.exists()  # new weights, and no card that describes the old ones


# ---- 7. help and figures ----


def test_help_shows_defaults_and_the_sparsity_rule(capsys):
    for command, expected in (("train", "(default: 15)"), ("eval", "(default: 500)")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert expected in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "rmt_lowrank" in capsys.readouterr().out.split("--sparsity SPARSITY")[-1].split("--checkpoint")[0]


def test_argument_groups_are_shared_not_redeclared():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    shared = {"--device": DEVICE, "--alpha": FIT, "--data": DATA, "--overwrite": OUTPUT}
    users = {
        "--device": ["analyze", "prune", "sweep", "train", "eval"],
        "--alpha": ["analyze", "prune", "sweep"],
        "--data": ["prune", "sweep", "train", "eval"],
        "--overwrite": ["analyze", "prune", "sweep", "train", "eval"],
    }
    for flag, parent in shared.items():
        (action,) = [a for a in parent._actions if flag in a.option_strings]
        for command in users[flag]:
            assert action in subs[command]._actions, (flag, command)  # the same object: declared once


def test_esd_grid_is_readable_for_small_layers(rng):
    fits = [(f"layer{i}", fit_mp(rng.standard_normal((16 * (i + 1), 64)))) for i in range(3)]
    fig = plot_esd_grid(fits, title="fc:784-16-10 (m.safetensors)")
    assert fig._suptitle.get_text() == "fc:784-16-10 (m.safetensors)"
    first = fig.axes[0]
    assert first.get_xlabel() and first.get_ylabel()
    assert len(first.patches) == auto_bins(16) < 80  # 80 bins for 16 eigenvalues left gaps
    assert len(first.get_xticks()) <= 6


def test_depth_summary_spike_ticks_are_whole_numbers():
    import pandas as pd

    table = pd.DataFrame(
        {
            "layer": ["blocks.0.fc", "blocks.1.fc", "blocks.2.fc"],
            "block": [0.0, 1.0, 2.0],
            "gamma": [0.9, 0.8, 0.85],
            "n_spikes": [1, 2, 1],
            "status": ["ok"] * 3,
        }
    )
    fig = plot_depth_summary(table, title="t")
    ticks = fig.axes[1].get_yticks()
    assert np.allclose(ticks, np.round(ticks))


# ---- property: no generated bad value is a traceback, or exit 0 with nothing written ----

_BAD_TEXT = st.sampled_from(
    ["", " ", "nan", "inf", "-inf", "-1", "1e308", "-1e-308", "abc", "0x10", "1,2", "true", "null", "[]", "{}", "é"]
)
_NUMBERISH = st.one_of(_BAD_TEXT, st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str))
_FLAGS = {
    "analyze": ["--alpha", "--beta", "--edge-centring", "--device", "--out", "--plots", "--checkpoint"],
    "prune": [
        "--alpha",
        "--beta",
        "--device",
        "--sparsity",
        "--out",
        "--report",
        "--option",
        "--set",
        "--seed",
        "--checkpoint",
        "--batch-size",
        "--finetune-epochs",
        "--data",
    ],
    "eval": ["--device", "--batch-size", "--split", "--out", "--data", "--checkpoint", "--workers"],
    "sweep": ["--levels", "--methods", "--option", "--eval-batches", "--plot", "--out", "--seed", "--finetune-lr"],
    "train": ["--lr", "--batch-size", "--l1", "--mp-T", "--seed", "--card", "--train-subset"],  # not --epochs: time
}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(sorted(_FLAGS)),
    index=st.integers(min_value=0, max_value=20),
    value=st.one_of(_NUMBERISH, st.sampled_from(["rho=abc", "scope=x", "z=-1", "depth=-1", "a", "=1", "cycles=2.5"])),
    data=st.data(),
)
def test_no_bad_flag_value_is_a_traceback_or_a_silent_success(command, index, value, data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prop")
    flag = _FLAGS[command][index % len(_FLAGS[command])]
    model = "fc:16-8-4" if command == "analyze" else FC
    base = {
        "analyze": [model],
        "prune": [model, "--method", data.draw(st.sampled_from(["magnitude", "rmt_oneshot", "svd"]))],
        "eval": [model, "--data", "synthetic"],
        "sweep": [model, "--data", "synthetic", "--methods", "magnitude", "--levels", "0.5", "--eval-batches", "1"],
        "train": [model, "--data", "synthetic", "--epochs", "1", "--train-subset", "64", "--batch-size", "32"],
    }[command]
    suffix = {"prune": "safetensors", "train": "safetensors", "eval": "json"}.get(command, "csv")
    out = folder / f"o.{suffix}"
    argv = [command, *base, "--quiet"]
    if flag != "--out":
        argv += ["--out", str(out)]
    if command == "prune" and flag != "--sparsity":
        argv += ["--sparsity", "0.5"]
    if flag in argv:  # the flag under test replaces the base's value
        argv = argv[: argv.index(flag)] + argv[argv.index(flag) + 2 :]
    if value.startswith("-") and value not in ("-", "--"):
        argv.append(f"{flag}={value}")  # argparse reads a bare -1 as a flag
    else:
        argv += [flag, value]
    cwd = os.getcwd()
    os.chdir(folder)  # a relative output ("abc") lands in the example's own folder
    try:
        rc = _run(argv)  # an exception other than argparse's exit fails the test: a traceback
    finally:
        os.chdir(cwd)
    assert rc in (0, 2)
    if rc == 0:  # accepted: then the output must be there
        written = out if flag != "--out" else folder / value
        assert written.is_file(), argv
