"""Per-layer allocations: exact whole-model counts; mp follows (1 - mu) gamma; alpha follows the Hill alpha."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.pruning import prune
from rmtlib.pruning.allocation import alpha_ratios, hill_alphas, layer_counts
from rmtlib.pruning.common import Budget, elementwise_units, fit_units
from rmtlib.pruning.registry import PruneContext
from rmtlib.pruning.rmt import randomness


def _planted() -> nn.Sequential:
    """Layer 0: Gaussian noise (MP bulk, light tail: a large alpha); layer 1: power-law singular values
    (a heavy tail: a small alpha); layer 2: noise plus a few spikes (in between)."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 300), nn.Linear(300, 300), nn.Linear(300, 200))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(300, 200, generator=gen) / 20)
        q1, _ = torch.linalg.qr(torch.randn(300, 300, generator=gen))
        q2, _ = torch.linalg.qr(torch.randn(300, 300, generator=gen))
        s = torch.arange(1, 301, dtype=torch.float32) ** -0.6
        model[1].weight.copy_(q1 @ torch.diag(s) @ q2.T)
        spikes = sum(
            5.0 * torch.outer(torch.randn(200, generator=gen), torch.randn(300, generator=gen)) / 300 for _ in range(3)
        )
        model[2].weight.copy_(torch.randn(200, 300, generator=gen) / 20 + spikes)
    return model


def _ctx(model: nn.Module) -> PruneContext:
    units = elementwise_units(model, None, None)
    fit_units(units)
    return PruneContext(model=model, units=units, budget=Budget(0, 0, 0, None))


def test_alpha_ratios_are_linear_in_alpha_between_the_spread():
    assert np.allclose(alpha_ratios([1.0, 2.0, 3.0], 0.5, 0.2), [0.4, 0.5, 0.6])
    assert np.allclose(alpha_ratios([2.0, float("nan"), 4.0], 0.5, 0.1), [0.45, 0.5, 0.55])
    assert np.allclose(alpha_ratios([3.0, 3.0], 0.7), [0.7, 0.7])


@pytest.mark.parametrize("allocation", ["uniform", "mp", "alpha"])
@pytest.mark.parametrize("remove", [0, 1, 12345, 90001, 179999])
def test_counts_sum_exactly_to_the_target(allocation: str, remove: int):
    ctx = _ctx(_planted())
    counts = layer_counts(allocation, ctx.units, remove, ctx)
    assert sum(counts) == remove
    assert all(0 <= c <= u.nnz for c, u in zip(counts, ctx.units))


def test_alpha_prunes_the_layer_with_the_larger_planted_alpha_more():
    ctx = _ctx(_planted())
    alphas = hill_alphas(ctx.units, ctx)
    assert alphas[0] > alphas[2] > alphas[1]  # noise > noise + spikes > power law
    counts = layer_counts("alpha", ctx.units, 90000, ctx, epsilon=0.2)
    frac = [c / u.nnz for c, u in zip(counts, ctx.units)]
    assert frac[0] > frac[2] > frac[1]
    # the extremes sit at (1 + eps) / (1 - eps) of each other, the middle one linearly between
    assert frac[0] / frac[1] == pytest.approx(1.2 / 0.8, rel=1e-4)
    t = (alphas[2] - alphas[1]) / (alphas[0] - alphas[1])
    assert frac[2] / frac[1] == pytest.approx((0.8 + 0.4 * t) / 0.8, rel=1e-4)


def test_mp_shares_follow_the_layers_randomness():
    ctx = _ctx(_planted())
    r = np.array([randomness(u) for u in ctx.units])
    nnz = np.array([u.nnz for u in ctx.units])
    counts = np.array(layer_counts("mp", ctx.units, 60000, ctx))
    expected = 60000 * r * nnz / (r * nnz).sum()
    assert np.all(np.abs(counts - expected) <= 1)
    assert r[0] > r[1]  # the noise layer looks more random than the power-law one, and loses more


@pytest.mark.parametrize("allocation", ["uniform", "global", "mp", "alpha"])
@pytest.mark.parametrize("sparsity", [0.3, 0.62])
def test_magnitude_meets_the_whole_model_target_exactly(allocation: str, sparsity: float):
    model = _planted()
    dense = sum(p.numel() for p in model.parameters())
    result = prune(model, "magnitude", sparsity=sparsity, allocation=allocation)
    pruned = result.model
    nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    assert nonzero == int(np.floor((1 - sparsity) * dense + 1e-9))
    assert result.summary.outputs["allocation"] == allocation


def test_allocations_work_with_the_data_methods():
    model = _planted()
    x = torch.randn(64, 200)
    dense = sum(p.numel() for p in model.parameters())
    for method in ("wanda", "sparsegpt"):
        for allocation in ("mp", "alpha"):
            pruned = prune(model, method, sparsity=0.5, allocation=allocation, calibration=x).model
            nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
            assert nonzero == int(np.floor(0.5 * dense + 1e-9))


def test_scope_maps_onto_allocation():
    model = _planted()
    ra = prune(model, "magnitude", sparsity=0.4, scope="global")
    rb = prune(model, "magnitude", sparsity=0.4, allocation="global")
    assert all(torch.equal(p, q) for p, q in zip(ra.model.parameters(), rb.model.parameters()))
    a, b = ra.summary.outputs, rb.summary.outputs
    assert a["scope"] == "global" and b["threshold"] == a["threshold"]
    with pytest.raises(InputError, match="scope='layer' means allocation='uniform'"):
        prune(model, "magnitude", sparsity=0.4, scope="layer", allocation="global")
    with pytest.raises(InputError, match="allocation must be one of"):
        prune(model, "magnitude", sparsity=0.4, allocation="owl")
