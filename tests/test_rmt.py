"""rmt cycles with the reference code's regularization; the singular-vector threshold's floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.pruning import prune
from rmtlib.pruning.penalty_flow import cosine_lrs
from rmtlib.pruning.rmt import REFERENCE_LR, reference_steps, sparsify_singular_vectors
from rmtlib.spectral.fit import fit_mp


def _fc() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 10))


def _order_gaps(model: nn.Module, pruned: nn.Module) -> list[float]:
    """Per pruned layer: smallest kept minus largest removed |w| of the input (>= 0: exactly the smallest went)."""
    gaps = []
    for index in (0, 2):
        w0, kept = model[index].weight.detach().abs(), pruned[index].weight.detach() != 0
        gaps.append(float(w0[kept].min() - w0[~kept].max()))
    return gaps


def test_reference_schedule_steps():
    assert [reference_steps(i) for i in (1, 2, 3, 34)] == [5000, 6000, 7000, 38000]
    assert sum(reference_steps(i) for i in range(1, 35)) == 731_000  # the ~34 cycles of the paper's ViT-L
    # at full Adam steps (|g| >> eps) a weight moves sum_t lr_t over them: ~1.8e-2, a ViT weight's scale
    total = sum(cosine_lrs(REFERENCE_LR, reference_steps(i)).sum() for i in range(1, 35))
    assert total == pytest.approx(0.5 * 731_000 * REFERENCE_LR, rel=1e-4)


def test_reference_regularization_moves_weights_as_adam_does():
    """Each cycle's log holds its AdamW step count and movement: at most sum_t lr_t (Adam's steps are at
    most lr_t), at least a fifth of it (|g| ~ s_l l1 is no smaller than eps / 5 here), growing with i."""
    model = _fc()
    result = prune(model, "rmt", sparsity=0.5)
    assert result.summary.reached_sparsity == pytest.approx(0.5, abs=1.0 / result.summary.params_dense)
    log = result.summary.outputs["cycle_log"]
    assert [c["reg_steps"] for c in log] == [reference_steps(c["cycle"]) for c in log]
    for cycle in log:
        bound = float(cosine_lrs(REFERENCE_LR, cycle["reg_steps"]).sum())
        assert 0.2 * bound < cycle["reg_mean_delta"] <= cycle["reg_max_delta"] <= bound * (1 + 1e-6)
    means = [c["reg_mean_delta"] for c in log]
    assert means == sorted(means)
    light = prune(model, "rmt", sparsity=0.5, regularization="light")
    assert max(c["reg_max_delta"] for c in light.summary.outputs["cycle_log"]) <= 10 * 5e-8
    none = prune(model, "rmt", sparsity=0.5, regularization="none")
    assert all(c["reg_steps"] == 0 and c["reg_max_delta"] == 0 for c in none.summary.outputs["cycle_log"])


def test_reference_regularization_is_no_longer_per_layer_magnitude_pruning():
    """Light: every layer loses exactly its smallest input weights. Reference: rows of different norms
    shrink at different rates (group lasso, Adam's eps), so the removal order is no longer the input's."""
    model = _fc()
    light = prune(model, "rmt", sparsity=0.5, regularization="light").model
    assert min(_order_gaps(model, light)) >= 0
    reference = prune(model, "rmt", sparsity=0.5).model
    assert min(_order_gaps(model, reference)) < 0


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(reg_steps=5), "reg_steps set"),
        (dict(regularization="none", reg_lr=1e-6), "reg_lr set"),
        (dict(regularization="heavy"), "regularization must be one of"),
        (dict(reg_groups="diagonal"), "reg_groups must be one of"),
        (dict(regularization="light", reg_steps=-1), "reg_steps"),
    ],
)
def test_bad_regularization_options(options, match):
    model = _fc()
    with pytest.raises(InputError, match=match):
        prune(model, "rmt", sparsity=0.5, **options)
    assert all(torch.count_nonzero(p) == p.numel() for p in model.parameters() if p.ndim == 2)


def test_depth_term_floor_edge():
    """(1 - x)^30 > 1/750 iff x < 1 - 750^(-1/30) = 0.198; the MP lower edge s_-/s_+ = (1 - sqrt c)/(1 + sqrt c)
    is above that for c < 0.448 (METHOD.md section 3)."""
    x_star = 1 - 750 ** (-1 / 30)
    assert x_star == pytest.approx(0.198, abs=5e-4)
    root = (1 - x_star) / (1 + x_star)
    assert root**2 == pytest.approx(0.448, abs=5e-4)
    for c in (1 / 4, 1 / 3, 0.44):  # fc1 / fc2, qkv, near the limit
        assert (1 - np.sqrt(c)) / (1 + np.sqrt(c)) > x_star
    assert (1 - np.sqrt(0.46)) / (1 + np.sqrt(0.46)) < x_star


@pytest.mark.parametrize(
    "shape, floor_only", [((576, 192), True), ((768, 192), True), ((192, 768), True), ((192, 192), False)]
)
def test_spikes_and_bulk_share_the_floor_threshold_unless_near_square(shape, floor_only):
    """On noise plus spikes of a ViT layer's shape (qkv, fc1, fc2; attn.proj), the fitted edge's thresholds
    T_j = theta max(1/750, (1 - s_j/s_+)_+^30) are all theta/750 except for the square layer, and the
    sparsification equals one with the floor alone."""
    rng = np.random.default_rng(3)
    m, n = shape
    w = rng.standard_normal((m, n)) / np.sqrt(max(m, n))
    u, _ = np.linalg.qr(rng.standard_normal((m, 4)))
    v, _ = np.linalg.qr(rng.standard_normal((n, 4)))
    w += (u * np.array([8.0, 6.0, 4.0, 3.0])) @ v.T
    fit = fit_mp(torch.from_numpy(w))
    s = np.linalg.svd(w, compute_uv=False)
    assert (s > fit.sv_edge).sum() >= 3  # the spikes are there
    theta = 0.05
    t = theta * np.maximum(1 / 750, np.clip(1 - s / fit.sv_edge, 0, None) ** 30)
    assert np.all(t == theta / 750) == floor_only
    full = sparsify_singular_vectors(torch.from_numpy(w), fit.sv_edge, theta)
    floor = sparsify_singular_vectors(torch.from_numpy(w), fit.sv_edge, theta, power=1e9)  # depth term -> 0
    assert torch.equal(full, floor) == floor_only
