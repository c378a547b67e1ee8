"""SEB (spectral-edge budgets): b = 0 is global magnitude, layer weights follow the formula, a layer
with a high MP edge is cut harder, the regimes switch where the paper says."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.count import count_params
from rmtlib.pruning import prune
from rmtlib.pruning.seb import SEB_REGIMES, layer_group, seb_regime
from rmtlib.spectral.fit import singular_values
from rmtlib.spectral.heavy_tail import hill_alpha


def _vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10)


def _zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() == 0 for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1}


def _z(values: np.ndarray) -> np.ndarray:
    """Population z-scores over the finite values, 0 elsewhere (as METHOD.md section 7 states)."""
    ok = np.isfinite(values)
    z = np.zeros_like(values)
    z[ok] = (values[ok] - values[ok].mean()) / values[ok].std()
    return z


@pytest.mark.parametrize("sparsity", [0.1, 0.3, 0.5, 0.7])
def test_b_zero_is_global_magnitude(sparsity: float):
    model = _vit()
    seb = prune(model, "seb", sparsity=sparsity, b=0.0).model
    mag = prune(model, "magnitude", sparsity=sparsity, scope="global").model
    a, b = _zeros(seb), _zeros(mag)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("sparsity", [0.3, 0.6])
def test_layer_weights_follow_the_formula(sparsity: float):
    """w_l = max(0.1, 1 + b_g d(s) z_l), z from the report's s_+ (population sd), b by layer group."""
    model = _vit()
    result = prune(model, "seb", sparsity=sparsity)
    pruned = result.model
    edges = result.layers["sv_edge"].to_numpy()
    z = _z(edges)
    regime = seb_regime(sparsity)
    d = max(0.0, 1 - sparsity / regime.s_d)
    b = {"attn": regime.b_attn, "mlp": regime.b_mlp, "other": regime.b_other}
    expect = np.maximum(0.1, 1 + np.array([b[layer_group(n)] for n in result.layers["layer"]]) * d * z)
    got = np.array([result.summary.outputs["seb_weights"][n] for n in result.layers["layer"]])
    np.testing.assert_allclose(got, expect, rtol=1e-4)  # s is the target rounded to a whole count
    if sparsity > 0.55:  # the high regime's groups differ, so the weights are not one line in z
        assert result.summary.outputs["seb_b"] == {"attn": 1.0, "mlp": 2.0, "other": 1.5}
    # every target layer (patch embedding and head too) lost weights, and the count is exact
    assert (result.layers["nonzero_after"] < result.layers["nonzero_before"]).all()
    dense = count_params(model)["dense"]
    assert count_params(pruned)["nonzero"] == int(np.floor((1 - sparsity) * dense + 1e-9))


def test_cut_matches_an_independent_sort():
    """The removed entries are the globally smallest |W| / w_l, recomputed here with numpy."""
    model = _vit()
    result = prune(model, "seb", sparsity=0.45)
    pruned = result.model
    w = result.summary.outputs["seb_weights"]
    mods = dict(model.named_modules())
    scores = np.concatenate(
        [mods[n].weight.detach().reshape(-1).abs().numpy().astype(np.float64) / w[n] for n in result.layers["layer"]]
    )
    removed = int(result.layers["nonzero_before"].sum() - result.layers["nonzero_after"].sum())
    threshold = np.sort(scores)[removed - 1]
    pmods = dict(pruned.named_modules())
    for n in result.layers["layer"]:
        score = mods[n].weight.detach().abs().numpy().astype(np.float64) / w[n]
        zeroed = (pmods[n].weight.detach() == 0).numpy()
        far = np.abs(score - threshold) > 1e-6 * threshold  # float32 keys may order near-ties differently
        assert np.array_equal(zeroed[far], (score < threshold)[far]), n


def _planted() -> nn.Sequential:
    """Five 160 x 160 layers of iid N(0, 1/160) noise; the third has 1.6x the scale, so its MP edge
    s_+ stands far above the others (z = 2, the others -0.5)."""
    torch.manual_seed(1)
    layers = [nn.Linear(160, 160, bias=False) for _ in range(5)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.normal_(0, (1.6 if i == 2 else 1.0) / np.sqrt(160))
    return nn.Sequential(*layers)


def test_high_edge_layer_is_cut_harder():
    model = _planted()
    seb = prune(model, "seb", sparsity=0.3)
    mag = prune(model, "magnitude", sparsity=0.3, scope="global")
    frac = lambda r: 1 - r.layers["nonzero_after"] / r.layers["nonzero_before"]  # noqa: E731
    z = seb.summary.outputs["seb_z"]
    assert z["2"] == pytest.approx(2.0, abs=0.05) and z["0"] == pytest.approx(-0.5, abs=0.05)
    # magnitude spares the large-scale layer; SEB (w = 1 + 1.0 * 0.4 * 2 = 1.8 vs 0.8) cuts it hardest
    assert frac(mag).iloc[2] < frac(mag).drop(2).min()
    assert frac(seb).iloc[2] > frac(seb).drop(2).max()
    # Gaussian weights: layer l loses P(|W| < t w_l) = erf(t w_l / (sigma_l sqrt 2)); solve for the global t
    from scipy.optimize import brentq
    from scipy.special import erf

    w = np.array([seb.summary.outputs["seb_weights"][str(i)] for i in range(5)])
    sigma = np.array([1.6 if i == 2 else 1.0 for i in range(5)]) / np.sqrt(160)
    t = brentq(lambda t: erf(t * w / (sigma * np.sqrt(2))).mean() - 0.3, 0, 1)
    np.testing.assert_allclose(frac(seb).to_numpy(), erf(t * w / (sigma * np.sqrt(2))), atol=0.02)


def test_regimes_switch_at_the_papers_bounds():
    assert [seb_regime(s).signal for s in (0.05, 0.2, 0.2001, 0.4, 0.55, 0.56, 0.9)] == [
        "hill",
        "hill",
        "edge",
        "edge",
        "edge",
        "edge",
        "edge",
    ]
    assert [seb_regime(s).b_mlp for s in (0.1, 0.3, 0.5, 0.6)] == [0.5, 1.0, 1.25, 2.0]
    assert [seb_regime(s).s_d for s in (0.1, 0.3, 0.5, 0.6)] == [0.3, 0.5, 0.7, 0.85]
    assert [layer_group(n) for n in ("blocks.0.attn.qkv", "blocks.3.attn.proj", "blocks.1.mlp.fc2", "head")] == [
        "attn",
        "attn",
        "mlp",
        "other",
    ]
    assert SEB_REGIMES[-1].b_attn == 1.0 and SEB_REGIMES[-1].b_other == 1.5


def test_low_sparsity_uses_hill_alpha():
    """At s = 0.2 (rounded to a whole count) the signal is Hill alpha (k = 20); the head (10 singular
    values, too few for k = 20) gets z = 0 and w = 1."""
    model = _vit()
    result = prune(model, "seb", sparsity=0.2)
    assert result.summary.outputs["seb_signal"] == "hill"
    mods = dict(model.named_modules())
    alphas = np.array(
        [
            hill_alpha(singular_values(mods[n].weight.detach().reshape(mods[n].weight.shape[0], -1)), k=20)
            if min(mods[n].weight.shape[0], mods[n].weight[0].numel()) > 20
            else np.nan
            for n in result.layers["layer"]
        ]
    )
    z = _z(alphas)
    out = result.summary.outputs
    np.testing.assert_allclose([out["seb_z"][n] for n in result.layers["layer"]], z, rtol=1e-6, atol=1e-9)
    assert out["seb_weights"]["head"] == 1.0
    d = 1 - 0.2 / 0.3
    np.testing.assert_allclose(
        [out["seb_weights"][n] for n in result.layers["layer"]], np.maximum(0.1, 1 + 0.5 * d * z), rtol=1e-6
    )


def test_options_override_and_floor():
    model = _planted()
    out = prune(model, "seb", sparsity=0.3, b=10.0, s_d=1.0, floor=0.25).summary.outputs
    z = np.array([out["seb_z"][str(i)] for i in range(5)])
    np.testing.assert_allclose(
        [out["seb_weights"][str(i)] for i in range(5)], np.maximum(0.25, 1 + 10 * 0.7 * z), rtol=1e-12
    )
    assert min(out["seb_weights"].values()) == 0.25  # z = -0.5 gives 1 - 3.5 < 0: the floor holds


@pytest.mark.parametrize(
    "options, word",
    [({"signal": "alpha"}, "signal"), ({"s_d": 0}, "s_d"), ({"floor": 0.0}, "floor"), ({"hill_k": 0}, "hill_k")],
)
def test_bad_options_refused_before_any_change(options: dict, word: str):
    model = _planted()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError, match=word):
        prune(model, "seb", sparsity=0.3, inplace=True, **options)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(InputError, match="sparsity"):
        prune(model, "seb")
