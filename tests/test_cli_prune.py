"""`rmtlib prune`: prunes, saves a reloadable checkpoint; bad input exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from rmtlib import FitConfig
from rmtlib.cli.main import main
from rmtlib.nn.checkpoints import read_checkpoint, save_checkpoint
from rmtlib.nn.count import count_params
from rmtlib.nn.lowrank import LowRankLinear
from rmtlib.nn.models import create_model

TINY_VIT = [
    "vit_tiny_patch16_224",
    "--set",
    "img_size=32",
    "--set",
    "patch_size=8",
    "--set",
    "depth=2",
    "--set",
    "num_classes=10",
]


def test_prune_fc_and_reload(tmp_path: Path, capsys: pytest.CaptureFixture):
    torch.manual_seed(0)
    source = create_model("fc:64-48-10")
    save_checkpoint(source, tmp_path / "in.safetensors")
    out = tmp_path / "out" / "pruned.safetensors"
    rc = main(
        [
            "prune",
            "fc:64-48-10",
            "--checkpoint",
            str(tmp_path / "in.safetensors"),
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--option",
            "scope=global",
            "--out",
            str(out),
            "--report",
            str(tmp_path / "r.csv"),
            "--layers",
            "--quiet",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "reached 0.5000" in text and "MACs per sample" in text and "scope=global" in text
    reloaded = create_model("fc:64-48-10", checkpoint=out)
    counts = count_params(reloaded)
    assert 1 - counts["nonzero"] / counts["dense"] == pytest.approx(0.5, abs=1e-3)
    _, record = read_checkpoint(out)
    meta = record["metadata"]
    assert meta["method"] == "magnitude" and meta["options"] == {"scope": "global"} and meta["sparsity_target"] == 0.5
    assert meta["sparsity_reached"] == 1 - counts["nonzero"] / counts["dense"]  # the summary's, from the counts
    # the weights that survive are the source's own
    kept = reloaded[1].weight != 0
    assert torch.equal(reloaded[1].weight[kept], source[1].weight[kept])
    assert (tmp_path / "r.csv").read_text().startswith("layer,kind,m,n")


def test_prune_vit_lowrank_and_reload(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "vit.safetensors"
    assert main(["prune", *TINY_VIT, "--method", "rmt_lowrank", "--sparsity", "0.5", "--out", str(out), "--quiet"]) == 0
    assert "0.5" in capsys.readouterr().out
    reloaded = create_model("vit_tiny_patch16_224", checkpoint=out, img_size=32, patch_size=8, depth=2, num_classes=10)
    assert isinstance(reloaded.blocks[0].mlp.fc1, LowRankLinear)
    counts = count_params(reloaded)
    assert counts["stored"] == read_checkpoint(out)[1]["metadata"]["params"]["stored"]
    assert 1 - counts["nonzero"] / counts["dense"] >= 0.5
    assert torch.isfinite(reloaded(torch.randn(1, 3, 32, 32))).all()


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse rejects bad values itself, with code 2
        return int(stop.code)


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "magnitude", "--sparsity", "1.0"],
        ["--method", "magnitude", "--sparsity", "-0.2"],
        ["--method", "magnitude", "--sparsity", "half"],
        ["--method", "nope", "--sparsity", "0.5"],
        ["--method", "magnitude", "--sparsity", "0.5", "--exclude", "*"],
        ["--method", "magnitude", "--sparsity", "0.5", "--option", "bogus=1"],
        ["--method", "magnitude", "--sparsity", "0.5", "--checkpoint", "missing.safetensors"],
        ["--method", "magnitude"],
        ["--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "1"],  # fine-tuning needs --data
        ["--method", "magnitude", "--sparsity", "0.5", "--data", "synthetic", "--batch-size", "0"],
        ["--method", "magnitude", "--sparsity", "0.5", "--data", "synthetic", "--train-subset", "0"],
        ["--method", "rmt", "--sparsity", "0.5", "--option", "cycles=2"],
        ["--method", "magnitude", "--sparsity", "0.3", "--option", "seed=1"],  # was a TypeError traceback
        ["--method", "magnitude", "--sparsity", "0.3", "--data", "no/such/folder"],  # was found after pruning
        [
            "--method",
            "magnitude",
            "--sparsity",
            "0.3",
            "--data",
            "synthetic",
            "--finetune-epochs",
            "1",
            "--finetune-lr",
            "nan",
        ],
        ["--method", "rmt", "--sparsity", "0.3", "--option", "rho=-0.1"],  # ran 200 cycles, then a wrong cause
        ["--method", "rmt", "--sparsity", "0.3", "--option", "rho=NaN"],
        ["--method", "rmt_oneshot", "--sparsity", "0.3", "--option", "scale=-1"],
        ["--method", "magnitude", "--sparsity", "0.3", "--pattern", "2:4"],  # a pattern fixes the sparsity
        ["--method", "magnitude", "--pattern", "4:4"],
        ["--method", "svd", "--pattern", "2:4"],
        ["--method", "wanda", "--sparsity", "0.3"],  # no --calibration and no --data to take it from
        ["--method", "wanda", "--sparsity", "0.3", "--calibration", "mnist:0"],
        ["--method", "magnitude", "--sparsity", "0.3", "--option", "pattern=2:4"],  # set by --pattern
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, extra: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.safetensors"
    assert _exit_code(["prune", "fc:16-8-4", *extra, "--out", str(out), "--quiet"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_nan_and_unreadable_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture):
    model = create_model("fc:16-8-4")
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    save_checkpoint(model, tmp_path / "nan.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    out = tmp_path / "out.safetensors"
    for ckpt, message in (
        ("nan.safetensors", "layer 3: weight contains 1 NaN"),
        ("junk.safetensors", "junk.safetensors"),
    ):
        rc = _exit_code(
            [
                "prune",
                "fc:16-8-4",
                "--checkpoint",
                str(tmp_path / ckpt),
                "--method",
                "rmt",
                "--sparsity",
                "0.3",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        assert rc == 2 and message in capsys.readouterr().err
        assert not out.exists()


def test_mnist_vit_without_checkpoint_prunes_the_committed_weights(tmp_path: Path, capsys: pytest.CaptureFixture):
    """As eval and sweep do; the dense top-1 printed beside the pruned one is that of the model pruned."""
    from rmtlib.nn.models import load_mnist_vit

    out = tmp_path / "p.safetensors"
    assert main(["prune", "mnist_vit", "--method", "magnitude", "--sparsity", "0.3", "--out", str(out), "--quiet"]) == 0
    committed = load_mnist_vit()
    pruned = read_checkpoint(out)[0]
    kept = pruned["blocks.0.mlp.fc1.weight"] != 0
    assert torch.equal(pruned["blocks.0.mlp.fc1.weight"][kept], committed.blocks[0].mlp.fc1.weight.detach()[kept])


def test_dense_top1_is_the_unpruned_models(tmp_path: Path, capsys: pytest.CaptureFixture):
    """A random-init model: the dense top-1 is measured on the model before pruning, not on a second random draw."""
    assert (
        main(
            [
                "prune",
                "fc:784-32-10",
                "--method",
                "magnitude",
                "--sparsity",
                "0.0",
                "--data",
                "synthetic",
                "--quiet",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("accuracy on"))
    dense, pruned = (part.split()[-1] for part in line.split(": ", 1)[1].split(", ")[:2])
    assert dense == pruned  # sparsity 0 removes nothing, so the two must agree


def test_outputs_are_checked_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """--out and --report naming one file lost the model; a read-only folder was found only when
    writing, after the pruning, under the name of a temporary file."""
    import os

    monkeypatch.chdir(tmp_path)
    argv = ["prune", "fc:16-8-4", "--method", "magnitude", "--sparsity", "0.5", "--quiet"]
    assert _exit_code([*argv, "--out", "same.csv", "--report", "same.csv"]) == 2
    assert "--out and --report name the same file" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # this machine runs as root, which the mode bits do not stop: stand in for them
    monkeypatch.setattr(
        "rmtlib.cli.args.os.access", lambda path, mode: Path(path).name != "locked" and real_access(path, mode)
    )
    assert _exit_code([*argv, "--out", "locked/p.safetensors"]) == 2
    assert "--out: cannot write into locked" in capsys.readouterr().err
    assert _exit_code([*argv, "--out", "p.safetensors", "--report", "locked/sub/r.csv"]) == 2  # no p.safetensors either
    assert "--report: cannot write into locked" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked"] and not any(locked.iterdir())


def test_bad_data_and_finetune_settings_stop_before_pruning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    import rmtlib.cli.prune

    def no_pruning(*args, **kwargs):
        raise AssertionError("pruned before the settings were checked")

    monkeypatch.setattr(rmtlib.cli.prune, "prune", no_pruning)
    argv = ["prune", "fc:16-8-4", "--method", "magnitude", "--sparsity", "0.3", "--quiet"]
    for extra, message in (
        (["--data", str(tmp_path / "nothing")], "nothing"),
        (["--data", "synthetic", "--finetune-epochs", "1", "--finetune-lr", "nan"], "--finetune-lr"),
    ):
        assert _exit_code([*argv, *extra]) == 2
        assert message in capsys.readouterr().err


def test_edge_centring_flag_reaches_the_report_and_the_checkpoint(tmp_path: Path):
    argv = ["prune", "fc:784-64-10", "--method", "rmt_oneshot", "--sparsity", "0.3", "--quiet"]
    for centring in ("paper", "ma"):
        assert (
            main(
                [
                    *argv,
                    "--edge-centring",
                    centring,
                    "--report",
                    str(tmp_path / f"{centring}.csv"),
                    "--out",
                    str(tmp_path / f"{centring}.safetensors"),
                ]
            )
            == 0
        )
    paper, ma = (pd.read_csv(tmp_path / f"{c}.csv", dtype={"layer": str}).set_index("layer") for c in ("paper", "ma"))
    assert ma.loc["1", "sv_edge"] != pytest.approx(paper.loc["1", "sv_edge"], rel=1e-6)
    recorded = read_checkpoint(tmp_path / "ma.safetensors")[1]["metadata"]["fit_config"]
    assert FitConfig.from_dict(recorded) == FitConfig(edge_centring="ma")


def test_fit_stays_a_method_option(tmp_path: Path):
    """--option fit=false (prune's fit= has no flag) was refused by the check against clashing options."""
    assert (
        main(
            [
                "prune",
                "fc:16-8-4",
                "--method",
                "magnitude",
                "--sparsity",
                "0.3",
                "--option",
                "fit=false",
                "--report",
                str(tmp_path / "r.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    assert pd.read_csv(tmp_path / "r.csv")["gamma"].isna().all()  # no MP fit was made


def test_wanda_and_sparsegpt_on_the_mnist_vit_with_calibration_images(tmp_path: Path, capsys: pytest.CaptureFixture):
    for method in ("wanda", "sparsegpt"):
        out = tmp_path / f"{method}.safetensors"
        args = ["prune", "mnist_vit", "--method", method, "--sparsity", "0.4", "--calibration", "mnist:16"]
        assert main([*args, "--out", str(out), "--quiet"]) == 0
        text = capsys.readouterr().out
        assert "reached 0.4000" in text and "allocation=uniform" in text
        assert read_checkpoint(out)[1]["metadata"]["calibration"] == "mnist:16"


def test_pattern_flag_gives_n_of_m(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "nm.safetensors"
    assert main(["prune", "fc:16-8-4", "--method", "magnitude", "--pattern", "2:4", "--out", str(out), "--quiet"]) == 0
    assert "pattern=2:4" in capsys.readouterr().out
    weights = read_checkpoint(out)[0]
    for name in ("1.weight", "3.weight"):
        w = weights[name]
        assert bool(((w != 0).reshape(w.shape[0], -1, 4).sum(-1) == 2).all())


def test_prune_and_sweep_calibrate_on_the_same_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`rmtlib prune --calibration` drew with torch, `rmtlib sweep` with numpy: one seed, two image sets."""
    import rmtlib.experiments.sweep
    from rmtlib.cli.args import load_calibration

    torch.manual_seed(3)
    ckpt = save_checkpoint(create_model("fc:784-48-10"), tmp_path / "in.safetensors")
    seen, real = [], rmtlib.experiments.sweep.prune

    def keep(*args, **kwargs):
        seen.append(kwargs["calibration"])
        return real(*args, **kwargs)

    monkeypatch.setattr(rmtlib.experiments.sweep, "prune", keep)
    common = ["fc:784-48-10", "--checkpoint", str(ckpt), "--calibration", "synthetic:32", "--seed", "2", "--quiet"]
    prune = ["prune", *common, "--method", "wanda", "--sparsity", "0.5", "--out", str(tmp_path / "p.safetensors")]
    assert main(prune) == 0
    for seed in ("2", "5"):
        sweep = ["sweep", *common, "--data", "synthetic", "--methods", "wanda", "--levels", "0.5"]
        assert main([*sweep, "--calibration-seeds", seed, "--save-dir", str(tmp_path / seed)]) == 0
    model = create_model("fc:784-48-10", checkpoint=ckpt)
    assert torch.equal(seen[0], load_calibration(("synthetic", 32), model, 2))  # the same images for seed 2
    assert not torch.equal(seen[0], seen[1])
    pruned = read_checkpoint(tmp_path / "p.safetensors")[0]
    swept = [read_checkpoint(tmp_path / seed / "wanda_0.50.safetensors")[0] for seed in ("2", "5")]
    assert all(torch.equal(pruned[k], swept[0][k]) for k in pruned)  # and so the same pruned model
    assert not all(torch.equal(pruned[k], swept[1][k]) for k in pruned)  # which another draw changes
