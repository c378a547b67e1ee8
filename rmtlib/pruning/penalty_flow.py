"""Data-free AdamW on a penalty-only loss, computed fast: the regularization step of the RMT cycles.

The loss ``sum_l s_l (l1 |W_l|_1 + l2 |W_l|_F^2 + gl sum_g |W_g|_2)`` (g: the rows, columns or whole
layer) has no data term, so each weight's gradient depends on the weight itself and, through the group
lasso, on its group's norm. Both change little in a cycle (under ~1e-3 against weights of ~1e-2), so
the gradient g of a weight that does not reach zero varies slowly. For a constant g Adam's
bias-corrected moments are exactly m_hat = g and v_hat = g^2, and a step moves the weight by
lr_t g / (|g| + eps). :func:`adamw_penalty_flow` takes g linear in the step count over each block of
steps (through its values at the block's start and a predicted midpoint), sums Adam's moments (EMAs of
g and g^2) over the block in closed form, and moves the weights by the block's summed rate times the
midpoint's m_hat / (sqrt(v_hat) + eps). The few weights small enough to reach zero in the call, where
sign(w) flips and Adam's moments lag behind, follow the literal per-step recurrence. The result equals
:func:`adamw_penalty_loop`, the literal ``torch.optim.AdamW`` loop, to ~1e-5 of the movement
(``tests/test_penalty_flow.py``), at ~20 elementwise passes per block instead of thousands of steps.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from rmtlib.errors import InputError

__all__ = [
    "GROUPINGS",
    "cosine_lrs",
    "group_norms",
    "penalty_grad",
    "adamw_penalty_flow",
    "adamw_penalty_loop",
]

#: how the group lasso groups a layer's weights: its rows (output units), columns (inputs) or all of it
GROUPINGS = ("rows", "columns", "layer")


def cosine_lrs(lr: float, steps: int) -> np.ndarray:
    """lr_t = lr (1 + cos(pi t / steps)) / 2 for t = 0 .. steps - 1: the rates ``CosineAnnealingLR(T_max=steps)``
    (eta_min 0, stepped after each optimizer step) gives the steps of one cycle."""
    t = np.arange(int(steps), dtype=np.float64)
    return lr * 0.5 * (1.0 + np.cos(np.pi * t / steps))


def group_norms(w: torch.Tensor, group_by: str) -> torch.Tensor:
    """The 2-norm of each weight's group, broadcastable against ``w`` (rows: m x 1, columns: 1 x n, layer: 1 x 1)."""
    if group_by == "rows":
        return torch.linalg.vector_norm(w, dim=1, keepdim=True)
    if group_by == "columns":
        return torch.linalg.vector_norm(w, dim=0, keepdim=True)
    if group_by == "layer":
        return torch.linalg.vector_norm(w).reshape(1, 1)
    raise InputError(f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}")


def _safe_inverse(norms: torch.Tensor) -> torch.Tensor:
    """1 / norm, and 0 for an all-zero group (its subgradient 0, as a masked gradient leaves it)."""
    return torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, torch.ones_like(norms)), torch.zeros_like(norms))


def penalty_grad(
    w: torch.Tensor, mask: torch.Tensor, scale: float, l1: float, l2: float, group_lasso: float, group_by: str
) -> torch.Tensor:
    """Masked gradient of ``scale (l1 |W|_1 + l2 |W|_F^2 + group_lasso sum_g |W_g|_2)`` (sign(0) = 0, as torch)."""
    inv = _safe_inverse(group_norms(w, group_by))
    return scale * (l1 * torch.sign(w) + (2.0 * l2 + group_lasso * inv) * w) * mask


def _check(matrices: Sequence[torch.Tensor], scales: Sequence[float], steps: int, group_by: str) -> None:
    if len(matrices) != len(scales):
        raise InputError(f"got {len(matrices)} matrices but {len(scales)} scales")
    if group_by not in GROUPINGS:
        raise InputError(f"group_by must be one of {', '.join(GROUPINGS)}, got {group_by!r}")
    if int(steps) < 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    for index, w in enumerate(matrices):
        if w.ndim != 2:
            raise InputError(f"matrix {index} must be 2-D, got shape {tuple(w.shape)}")


def adamw_penalty_flow(
    matrices: Sequence[torch.Tensor],
    scales: Sequence[float],
    *,
    steps: int,
    lr: float,
    l1: float,
    l2: float,
    group_lasso: float,
    group_by: str = "rows",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    blocks: int = 8,
) -> list[torch.Tensor]:
    """The weights (float64) after ``steps`` AdamW steps from fresh optimizer state on the masked penalty loss,
    with cosine-decayed rates :func:`cosine_lrs`; matrix l's penalty is scaled by ``scales[l]`` (<= 0: left as is).

    Equal to :func:`adamw_penalty_loop` up to the curvature of each weight's gradient within a block
    (``blocks`` blocks per call): 2e-6 to 2e-5 of the movement measured over 2000-3000-step cycles.
    """
    _check(matrices, scales, steps, group_by)
    steps = int(steps)
    out = [w.detach().to(torch.float64).clone() for w in matrices]
    active = [i for i, s in enumerate(scales) if s > 0]
    if steps == 0 or lr <= 0 or not active:
        return out
    beta1, beta2 = betas
    lrs = cosine_lrs(lr, steps)
    decay = 1.0 - lrs * weight_decay
    total = float(lrs.sum())
    edges = np.unique(np.linspace(0, steps, min(int(blocks), steps) + 1).round().astype(int))
    masks = {i: out[i] != 0 for i in active}

    def linear_coef(i: int, w: torch.Tensor) -> torch.Tensor:
        """Per group: the gradient's part proportional to w, scale (2 l2 + group_lasso / |W_g|)."""
        return float(scales[i]) * (2.0 * l2 + group_lasso * _safe_inverse(group_norms(w, group_by)))

    def grad(i: int, w: torch.Tensor) -> torch.Tensor:
        # a zero weight has sign 0 and stays 0 (its moments stay 0), so the mask needs no multiply here
        return torch.sign(w).mul_(float(scales[i]) * l1).addcmul_(linear_coef(i, w), w)

    # weights that may reach zero in this call (Adam moves a weight by at most ~lr_t per step, less
    # when |g| < eps): they follow the literal per-step recurrence; the rest the quasi-static rule
    risk: dict[int, torch.Tensor] = {}
    for i in active:
        g = grad(i, out[i]).abs_()
        risk[i] = masks[i] & (out[i].abs() <= 2.0 * total * g / (g + eps))
    n_risk = sum(int(r.sum()) for r in risk.values())
    if n_risk:
        dev = out[active[0]].device
        m_state = torch.zeros(n_risk, dtype=torch.float64, device=dev)
        v_state = torch.zeros(n_risk, dtype=torch.float64, device=dev)
        a_coef = torch.cat([torch.full((int(risk[i].sum()),), scales[i] * l1, dtype=torch.float64) for i in active])
        a_coef = a_coef.to(dev)

    # Adam's raw moment estimates of the quasi-static weights, carried from block to block
    m_raw = {i: torch.zeros_like(out[i]) for i in active}
    v_raw = {i: torch.zeros_like(out[i]) for i in active}
    for start, stop in zip(edges[:-1], edges[1:]):
        # update k (1-based) uses the gradient at the weights after k - 1 steps and the rate lrs[k - 1];
        # the block's updates start + 1 .. stop, its midpoint after update ``middle``
        middle = (start + stop + 1) // 2
        first, second = middle - start, stop - middle
        s_half, d_half = float(lrs[start:middle].sum()), float(np.prod(decay[start:middle]))
        s_full, d_full = float(lrs[start:stop].sum()), float(np.prod(decay[start:stop]))
        unbias = (1.0 - beta1**middle, 1.0 - beta2**middle)
        mids = {}
        for i in active:
            w, m0, v0 = out[i], m_raw[i], v_raw[i]
            g0 = grad(i, w)
            g0_sq = g0 * g0
            # predictor: the moments at the midpoint with g held at g0, and the weights there
            m_h, v_h = _ema(m0, beta1, first, g0), _ema(v0, beta2, first, g0_sq)
            half = _adam_move(w, d_half, s_half, m_h, v_h, unbias, eps)
            mids[i] = half
            g_mid = grad(i, half)
            g_mid_sq = g_mid * g_mid
            # corrector: g (and g^2) linear in the step count through g0 and g_mid; the step over the
            # block uses the moments at its midpoint (midpoint rule), and the moments run on to its end
            slope, slope_sq = (g_mid - g0).div_(first), (g_mid_sq - g0_sq).div_(first)
            m_h, v_h = _ema(m0, beta1, first, g0, slope), _ema(v0, beta2, first, g0_sq, slope_sq)
            new = _adam_move(w, d_full, s_full, m_h, v_h, unbias, eps)
            m_raw[i] = _ema(m_h, beta1, second, g_mid, slope)
            v_raw[i] = _ema(v_h, beta2, second, g_mid_sq, slope_sq)
            out[i] = torch.where(risk[i], w, new) if n_risk else new
        if n_risk:
            # per-entry gradient a sign(w) + c w, with the group norm of the block's midpoint
            c_coef = torch.cat([linear_coef(i, mids[i]).expand_as(out[i])[risk[i]] for i in active])
            x = torch.cat([out[i][risk[i]] for i in active])
            for t in range(int(start), int(stop)):
                lr_t = float(lrs[t])
                g = a_coef * torch.sign(x) + c_coef * x
                x.mul_(1.0 - lr_t * weight_decay)
                m_state.lerp_(g, 1.0 - beta1)
                v_state.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                bias1, bias2 = 1.0 - beta1 ** (t + 1), 1.0 - beta2 ** (t + 1)
                denom = (v_state.sqrt() / math.sqrt(bias2)).add_(eps)
                x.addcdiv_(m_state, denom, value=-lr_t / bias1)
            offset = 0
            for i in active:
                count = int(risk[i].sum())
                out[i][risk[i]] = x[offset : offset + count]
                offset += count
    return out


def adamw_penalty_loop(
    matrices: Sequence[torch.Tensor],
    scales: Sequence[float],
    *,
    steps: int,
    lr: float,
    l1: float,
    l2: float,
    group_lasso: float,
    group_by: str = "rows",
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> list[torch.Tensor]:
    """The literal loop :func:`adamw_penalty_flow` computes fast: ``torch.optim.AdamW`` with
    ``CosineAnnealingLR``, the penalty loss summed over the layers, gradients of zero weights masked
    (float64; O(steps) autograd passes, for checks on small models)."""
    _check(matrices, scales, steps, group_by)
    params = [w.detach().to(torch.float64).clone().requires_grad_(True) for w in matrices]
    masks = [p.detach() != 0 for p in params]
    live = [(p, mask, float(s)) for p, mask, s in zip(params, masks, scales) if s > 0]
    if int(steps) > 0 and lr > 0 and live:
        opt = torch.optim.AdamW([p for p, _, _ in live], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps))
        with torch.enable_grad():
            for _ in range(int(steps)):
                opt.zero_grad(set_to_none=False)
                loss = sum(
                    s * (l1 * p.abs().sum() + l2 * p.pow(2).sum() + group_lasso * _group_sum(p, group_by))
                    for p, _, s in live
                )
                loss.backward()
                for p, mask, _ in live:
                    p.grad.mul_(mask)
                opt.step()
                sched.step()
    return [p.detach() for p in params]


def _ema(
    state: torch.Tensor, beta: float, steps: int, first: torch.Tensor, slope: torch.Tensor | None = None
) -> torch.Tensor:
    """Adam's raw moment after ``steps`` updates ``x <- beta x + (1 - beta) y_j``, j = 1 .. steps, of a
    signal linear in j: y_j = first + slope (j - 1) (closed form of the geometric sums)."""
    if steps <= 0:
        return state
    tail = beta**steps
    out = (state * tail).add_(first, alpha=1.0 - tail)
    if slope is not None:
        # sum_{i < steps} (1 - beta) beta^i i: how far the weighted mean lags the latest value, in steps
        lag = beta * (1.0 - steps * beta ** (steps - 1) + (steps - 1) * tail) / (1.0 - beta)
        out.add_(slope, alpha=(1.0 - tail) * (steps - 1) - lag)
    return out


def _adam_move(
    w: torch.Tensor,
    decay: float,
    rate: float,
    m: torch.Tensor,
    v: torch.Tensor,
    unbias: tuple[float, float],
    eps: float,
) -> torch.Tensor:
    """w decay - rate m_hat / (sqrt(v_hat) + eps), with m_hat = m / unbias[0], v_hat = v / unbias[1]."""
    denom = v.sqrt().mul_(1.0 / math.sqrt(unbias[1])).add_(eps)
    return torch.div(m, denom).mul_(-rate / unbias[0]).add_(w, alpha=decay)


def _group_sum(w: torch.Tensor, group_by: str) -> torch.Tensor:
    return group_norms(w, group_by).sum()
