import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from rmtlib import InputError, analyze, fit_mp
from rmtlib.spectral.analyze import COLUMNS, fits_table, layer_fits


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(4, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 10)
    )


def test_table_matches_independent_fits():
    model = _net()
    table = analyze(model, progress=False)
    assert list(table.columns) == COLUMNS
    assert list(table["layer"]) == ["0", "3", "5"]
    assert list(zip(table["m"], table["n"])) == [(32, 36), (200, 64), (10, 200)]
    assert list(table["params"]) == [32 * 36, 200 * 64, 10 * 200]
    conv = fit_mp(model[0].weight.detach().reshape(32, -1).numpy().astype(np.float64))
    assert table.loc[0, "sigma2"] == pytest.approx(conv.sigma2, rel=1e-9)
    assert table.loc[0, "gamma"] == conv.gamma and table.loc[0, "n_spikes"] == conv.n_spikes
    # a 10-row head is too small for a meaningful MP fit: reported, not fitted
    assert table.loc[2, "status"] == "too_small" and np.isnan(table.loc[2, "sigma2"])


def test_the_table_of_given_fits_is_analyzes_table_and_reads_those_fits():
    model = _net()
    fits = layer_fits(model, progress=False)
    table = fits_table(fits)
    pd.testing.assert_frame_equal(table, analyze(model, progress=False))
    for (name, _, _, fit, status), row in zip(fits, table.itertuples()):
        assert (row.layer, row.status) == (name, status)
        if status == "ok":  # the numbers are the fits' own, not a recomputation
            assert row.sigma2 == fit.sigma2 and row.sv_edge == fit.sv_edge


def test_default_init_is_random_by_mp():
    # torch's default Linear init is uniform(-1/sqrt(n), 1/sqrt(n)): variance 1/(3n)
    model = _net()
    row = analyze(model, progress=False).set_index("layer").loc["3"]
    assert row["sigma2"] == pytest.approx(1 / (3 * 64), rel=0.05)
    assert row["gamma"] > 0.95


def test_model_is_not_modified():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=10
    )
    model = model.to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = analyze(model, split_qkv=True, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert "blocks.1.attn.qkv.v" in set(table["layer"])
    assert (table["status"] == "ok").sum() == 1 + 2 * (
        3 + 3
    )  # patch_embed + per block q,k,v,proj,fc1,fc2; head too small


def test_nan_weight_is_reported_with_the_layer_name():
    model = _net()
    with torch.no_grad():
        model[3].weight[5, 7] = float("nan")
    with pytest.raises(InputError, match="layer 3"):
        analyze(model, progress=False)


def test_all_zero_layer_is_a_status():
    model = _net()
    with torch.no_grad():
        model[3].weight.zero_()
    table = analyze(model, progress=False).set_index("layer")
    assert table.loc["3", "status"] == "all_zero"
    assert table.loc["0", "status"] == "ok"


def test_pruned_input_features_give_a_status_not_a_lost_table():
    """54 of 64 input columns pruned: the fit drops the zero columns, and the 200 x 10 rest is too small
    to fit (a status, NaN metrics); the other layers are fitted."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 200), nn.ReLU(), nn.Linear(200, 100))
    with torch.no_grad():
        net[0].weight[:, 10:] = 0.0
    table = analyze(net, progress=False).set_index("layer")
    assert table.loc["0", "status"] == "too_small" and np.isnan(table.loc["0", "sigma2"])
    assert table.loc["2", "status"] == "ok" and table.loc["2", "n_spikes"] <= 2


def test_no_layers_is_an_error():
    with pytest.raises(InputError, match="no Linear/Conv"):
        analyze(nn.Sequential(nn.ReLU()), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_gives_the_same_table():
    model = _net()
    cpu = analyze(model, progress=False)
    gpu = analyze(model, device="cuda", progress=False)
    np.testing.assert_allclose(cpu["sigma2"], gpu["sigma2"], rtol=1e-9)
