"""`rmtlib schedule`: the hybrid schedule from the command line; bad input exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rmtlib.cli.main import main
from rmtlib.nn.checkpoints import read_checkpoint

SMALL = ["mnist_vit", "--set", "depth=1", "--data", "synthetic", "--batch-size", "32"]


def test_hybrid_schedule_writes_table_and_model(tmp_path: Path, capsys: pytest.CaptureFixture):
    report, out = tmp_path / "levels.csv", tmp_path / "model.safetensors"
    rc = main(
        ["schedule", *SMALL, "--sparsity", "0.3", "--step", "0.1", "--finetune-steps", "1", "--reservoir-steps", "1"]
        + ["--evaluate", "--report", str(report), "--out", str(out)]
    )
    assert rc == 0
    table = pd.read_csv(report)
    assert list(table["action"]) == ["magnitude", "magnitude", "ser"]
    assert table["reached_sparsity"].iloc[-1] == pytest.approx(0.3, abs=1e-4)
    assert table["accuracy"].between(0, 1).all()
    assert "level 0.3000 (ser)" in capsys.readouterr().out
    metadata = read_checkpoint(out)[1]["metadata"]
    assert metadata["method"] == "schedule:hybrid" and metadata["sparsity_target"] == 0.3


@pytest.mark.parametrize(
    "extra, word",
    [(["--sparsity", "0.32"], "step"), (["--sparsity", "0.3", "--strategy", "svd"], "strategy")],
)
def test_bad_schedule_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture, extra, word):
    report = tmp_path / "levels.csv"
    rc = main(["schedule", *SMALL, *extra, "--report", str(report)])
    assert rc == 2
    assert word in capsys.readouterr().err
    assert not report.exists()


def test_prune_with_seb_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    report = tmp_path / "layers.csv"
    rc = main(
        ["prune", "fc:64-48-10", "--method", "seb", "--sparsity", "0.5", "--option", "b=0.5", "--report", str(report)]
    )
    assert rc == 0
    assert "method seb: target sparsity 0.5000, reached 0.5000" in capsys.readouterr().out
    assert len(pd.read_csv(report)) == 2
    assert main(["prune", "fc:64-48-10", "--method", "seb", "--sparsity", "0.5", "--option", "signal=x"]) == 2
    assert "signal" in capsys.readouterr().err


def test_quiet_silences_the_level_lines_and_workers_load_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """`schedule` took --quiet and --workers from the shared groups and ignored both."""
    import rmtlib.experiments.prune_restore

    workers, real = [], rmtlib.experiments.prune_restore.make_loader

    def loader(*args, **kwargs):
        workers.append(kwargs.get("num_workers", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(rmtlib.experiments.prune_restore, "make_loader", loader)
    argv = ["schedule", *SMALL, "--sparsity", "0.3", "--step", "0.1", "--finetune-steps", "1", "--reservoir-steps", "1"]
    assert main([*argv, "--evaluate", "--report", str(tmp_path / "a.csv")]) == 0
    loud, first = capsys.readouterr().out, len(workers)
    assert main([*argv, "--evaluate", "--report", str(tmp_path / "b.csv"), "--quiet", "--workers", "2"]) == 0
    quiet = capsys.readouterr().out
    assert loud.count("level 0.") == 3 and "level 0." not in quiet and "per-level table written" in quiet
    # every loader of the second run (fine-tuning, reservoir, test) loads in 2 processes, of the first in none
    assert first >= 4 and set(workers[:first]) == {0} and set(workers[first:]) == {2} and len(workers) == 2 * first
    a, b = (pd.read_csv(tmp_path / name).drop(columns="seconds") for name in ("a.csv", "b.csv"))
    pd.testing.assert_frame_equal(a, b)  # the same batches, so the same levels and top-1


def test_fit_flags_reach_the_schedule_and_its_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`schedule` fits MP for its SER levels: the fit flags build the FitConfig it is given, recorded with the model."""
    import rmtlib.cli.schedule as command
    from rmtlib.spectral.fit_config import FitConfig

    seen = {}
    real = command.prune_schedule

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "prune_schedule", spy)
    out = tmp_path / "model.safetensors"
    flags = ["--alpha", "0.1", "--edge-centring", "ma", "--min-dim", "8", "--bema-quantile", "paper"]
    rc = main(["schedule", *SMALL, "--sparsity", "0.3", "--step", "0.1", "--finetune-steps", "1", *flags]
              + ["--reservoir-steps", "1", "--out", str(out), "--quiet"])  # fmt: skip
    want = FitConfig(alpha=0.1, edge_centring="ma", min_dim=8, bema_quantile="paper")
    assert rc == 0 and seen["fit_config"] == want
    assert read_checkpoint(out)[1]["metadata"]["fit_config"] == want.to_dict()
