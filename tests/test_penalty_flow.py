"""rmtlib.pruning.penalty_flow: the closed-form AdamW flow equals the literal torch.optim.AdamW loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rmtlib.errors import InputError
from rmtlib.pruning.penalty_flow import adamw_penalty_flow, adamw_penalty_loop, cosine_lrs, penalty_grad

PENALTY = dict(lr=5e-8, l1=5e-7, l2=2e-7)


def _layers() -> list[torch.Tensor]:
    """Two small layers at a ViT's weight scale, with weights small enough to cross zero, and pruned zeros."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(12, 20, generator=gen, dtype=torch.float64) * 0.02
    b = torch.randn(16, 8, generator=gen, dtype=torch.float64) * 0.02
    a[0, :5] = torch.tensor([3e-5, -6e-5, 1e-4, -2e-4, 5e-6], dtype=torch.float64)
    b[1, :3] = torch.tensor([2e-6, -4e-6, 1e-5], dtype=torch.float64)
    a[2, 3] = b[4, 4] = 0.0
    return [a, b]


def test_cosine_rates_are_those_of_cosine_annealing():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=5e-8)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200)
    seen = []
    for _ in range(200):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(cosine_lrs(5e-8, 200), seen, rtol=1e-9, atol=1e-22)


def test_one_step_from_fresh_state_is_lr_g_over_abs_g_plus_eps():
    """Adam's bias-corrected first step is exactly lr g / (|g| + eps) after the decoupled decay."""
    w = _layers()
    grads = [penalty_grad(x, x != 0, s, 5e-7, 2e-7, 1e-6, "rows") for x, s in zip(w, (1.0, 0.004))]
    out = adamw_penalty_flow(w, [1.0, 0.004], steps=1, group_lasso=1e-6, **PENALTY)
    for x, g, y in zip(w, grads, out):
        expected = x * (1 - 5e-8 * 0.01) - 5e-8 * g / (g.abs() + 1e-8)
        torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-20)  # to rounding
    assert (grads[1][grads[1] != 0].abs() < 1e-8).all()  # that layer's gradients are below eps


def _compare(group_by: str, group_lasso: float, cycles: list[tuple[int, list[float]]]) -> tuple[float, float, list]:
    """Max |flow - loop| and the loop's max movement over cycles (fresh optimizer each), pruning in between."""
    fast = slow = _layers()
    start = [w.clone() for w in slow]
    worst = 0.0
    for index, (steps, scales) in enumerate(cycles):
        cfg = dict(steps=steps, group_lasso=group_lasso, group_by=group_by, **PENALTY)
        slow = adamw_penalty_loop(slow, scales, **cfg)
        fast = adamw_penalty_flow(fast, scales, **cfg)
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(slow, fast)))
        if index == 0:  # a pruning step between cycles: its zeros stay zero
            for a, b in zip(slow, fast):
                cut = b.abs() < b[b != 0].abs().kthvalue(5).values
                a[cut], b[cut] = 0.0, 0.0
    for a, b in zip(slow, fast):
        assert torch.equal(a == 0, b == 0)
    moved = max(float((a - b).abs().max()) for a, b in zip(slow, start))
    return worst, moved, slow


def test_flow_matches_the_literal_adamw_loop_over_cycles():
    """Three cycles of a rising step count with cosine decay, strong row coupling (group lasso 1e-5 makes
    it ~15% of the gradient), one layer's gradients below Adam's eps, weights that cross zero."""
    cycles = [(2000, [1.0, 0.004]), (2500, [1.0, 0.01]), (3000, [0.5, 0.02])]
    worst, moved, final = _compare("rows", 1e-5, cycles)
    print(f"max |flow - loop| = {worst:.3e}, max movement {moved:.3e}, ratio {worst / moved:.2e}")
    assert worst < 1e-4 * moved  # measured 1e-6 to 2e-5 of the movement
    start = _layers()
    crossed = sum(int(((a * b) < 0).sum()) for a, b in zip(start, final))
    assert crossed > 0  # the literal-recurrence path for weights that reach zero ran
    steps, scales = cycles[0]  # one cycle with and without the group lasso
    coupled, uncoupled = (
        adamw_penalty_flow(_layers(), scales, steps=steps, group_lasso=gl, **PENALTY) for gl in (1e-5, 0.0)
    )
    coupling = max(float((a - b).abs().max()) for a, b in zip(coupled, uncoupled))
    assert coupling > 100 * worst  # the group-lasso coupling is resolved, not negligible


@pytest.mark.parametrize("group_by", ["columns", "layer"])
def test_flow_matches_the_loop_for_other_groupings(group_by: str):
    worst, moved, _ = _compare(group_by, 1e-5, [(1500, [1.0, 0.004]), (1500, [0.3, 0.05])])
    assert worst < 1e-4 * moved


def test_scale_zero_and_zero_steps_leave_weights_alone():
    w = _layers()
    out = adamw_penalty_flow(w, [0.0, 1.0], steps=100, group_lasso=1e-6, **PENALTY)
    assert torch.equal(out[0], w[0]) and not torch.equal(out[1], w[1])
    assert all(
        torch.equal(a, b) for a, b in zip(adamw_penalty_flow(w, [1.0, 1.0], steps=0, group_lasso=0, **PENALTY), w)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scales=[1.0]), "2 matrices but 1 scales"),
        (dict(group_by="diagonal"), "group_by must be one of"),
        (dict(steps=-1), "steps must be >= 0"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(scales=[1.0, 1.0], steps=10, group_lasso=1e-6, **PENALTY)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        adamw_penalty_flow(_layers(), **args)
