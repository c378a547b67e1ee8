import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from rmtlib import FitConfig, analyze
from rmtlib.cli.main import main
from rmtlib.nn.checkpoints import save_checkpoint
from rmtlib.nn.models import create_model


def test_analyze_writes_table_and_figures(tmp_path, capsys):
    out = tmp_path / "sub" / "table.csv"
    plots = tmp_path / "plots"
    code = main(["analyze", "fc:784-256-128-10", "--out", str(out), "--plots", str(plots), "--quiet"])
    assert code == 0
    table = pd.read_csv(out)
    assert list(table["m"]) == [256, 128, 10] and list(table["n"]) == [784, 256, 128]
    assert (plots / "esd_grid.png").stat().st_size > 10_000
    assert (plots / "depth_summary.png").exists()
    assert "3 matrices, 2 fitted" in capsys.readouterr().out


def test_plots_reuse_the_tables_spectra(tmp_path, monkeypatch):
    """``--plots`` draws the fits the table came from: one Gram eigen-decomposition per layer, not two."""
    import rmtlib.spectral.gram as gram_module

    calls = []
    real = gram_module.gram

    def counted(w):
        calls.append(tuple(w.shape))
        return real(w)

    monkeypatch.setattr(gram_module, "gram", counted)
    plots = tmp_path / "plots"
    assert main(["analyze", "fc:784-256-128-10", "--plots", str(plots), "--quiet"]) == 0
    assert sorted(calls) == sorted([(256, 784), (128, 256), (10, 128)])  # each layer's matrix once
    assert (plots / "esd_grid.png").exists() and (plots / "depth_summary.png").exists()


def test_checkpoint_weights_are_the_ones_analysed(tmp_path):
    torch.manual_seed(1)
    model = create_model("fc:100-64-10")
    with torch.no_grad():
        model[1].weight.mul_(5.0)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    out = tmp_path / "t.csv"
    assert main(["analyze", "fc:100-64-10", "--checkpoint", str(path), "--out", str(out), "--quiet"]) == 0
    expected = analyze(model, progress=False)
    assert pd.read_csv(out)["sigma2"].iloc[0] == pytest.approx(expected["sigma2"].iloc[0], rel=1e-9)


def test_missing_checkpoint_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "t.csv"
    code = main(["analyze", "fc:100-64-10", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(out)])
    assert code == 2
    assert "nope.safetensors" in capsys.readouterr().err
    assert not out.exists()


def test_edge_centring_option_reaches_the_fit(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "fc.safetensors"
    save_checkpoint(create_model("fc:784-64-10"), ckpt)
    out = tmp_path / "t.csv"
    assert (
        main(
            [
                "analyze",
                "fc:784-64-10",
                "--checkpoint",
                str(ckpt),
                "--edge-centring",
                "ma",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    want = analyze(
        create_model("fc:784-64-10", checkpoint=ckpt), fit_config=FitConfig(edge_centring="ma"), progress=False
    )
    paper = analyze(create_model("fc:784-64-10", checkpoint=ckpt), progress=False)
    assert np.allclose(table["sv_edge"], want["sv_edge"], rtol=1e-12, equal_nan=True)
    assert not np.allclose(table["sv_edge"], paper["sv_edge"], rtol=1e-6, equal_nan=True)
    assert np.allclose(table["sigma2"], paper["sigma2"], rtol=1e-12, equal_nan=True)


def test_a_random_init_model_gives_the_same_table_each_run(tmp_path, capsys):
    for name in ("a.csv", "b.csv"):
        assert main(["analyze", "fc:784-64-10", "--out", str(tmp_path / name), "--quiet"]) == 0
    assert "randomly initialised (seed 0)" in capsys.readouterr().err
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_min_dim_and_bema_quantile_flags_reach_the_fit(tmp_path, capsys):
    """Every FitConfig setting has a flag: --min-dim leaves the 10-output head unfitted only when above 10,
    --bema-quantile changes sigma^2 as the library does."""
    model = create_model("fc:784-64-10")
    for flags, config in (
        (["--min-dim", "11", "--bema-quantile", "paper"], FitConfig(min_dim=11, bema_quantile="paper")),
        (["--min-dim", "8"], FitConfig(min_dim=8)),
    ):
        out = tmp_path / "t.csv"
        assert main(["analyze", "fc:784-64-10", *flags, "--out", str(out), "--quiet", "--overwrite"]) == 0
        table, want = pd.read_csv(out), analyze(model, fit_config=config, progress=False)
        assert list(table["status"]) == list(want["status"])
        assert np.allclose(table["sigma2"], want["sigma2"], rtol=1e-12, equal_nan=True)
    assert list(pd.read_csv(out)["status"]) == ["ok", "ok"]  # min_dim 8: the 64 x 10 head is fitted
    paper = analyze(model, fit_config=FitConfig(min_dim=11, bema_quantile="paper"), progress=False)
    assert paper["status"].tolist() == ["ok", "too_small"]
    with pytest.raises(SystemExit) as stop:
        main(["analyze", "fc:784-64-10", "--min-dim", "1", "--quiet"])
    assert stop.value.code == 2 and "--min-dim: an integer >= 2" in capsys.readouterr().err
