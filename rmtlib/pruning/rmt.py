"""The paper's RMT pruning (METHOD.md section 3): cycles of MP fit, singular-vector
sparsification, gamma/mu-weighted magnitude budgets and a data-free regularization step;
plus the one-shot variant with per-layer thresholds t_l = 1.5 z (1 - mu_l) gamma_l.

The regularization step runs the reference code's schedule by default (5000 + 1000 (i - 1) AdamW
steps in cycle i, computed in closed form by :mod:`rmtlib.pruning.penalty_flow`); ``"light"`` keeps
the earlier few-step variant, under which the cycles amount to per-layer magnitude pruning.
Layers whose MP fit fails (too small, rank-deficient) have no gamma and are left as they are.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from rmtlib.errors import InputError, check_number
from rmtlib.pruning.common import (
    Unit,
    cut_smallest_keys,
    fit_unit,
    fit_units,
    remove_smallest,
    split_count,
)
from rmtlib.pruning.elementwise import removal_needed
from rmtlib.pruning.penalty_flow import GROUPINGS, adamw_penalty_flow, group_norms
from rmtlib.pruning.registry import PruneContext, register_method

__all__ = [
    "rmt_cycles",
    "rmt_oneshot",
    "randomness",
    "sparsify_singular_vectors",
    "regularize_step",
    "regularize_reference",
    "reference_steps",
    "REGULARIZATIONS",
    "REFERENCE_LR",
]

#: the data-free step of a cycle: the reference code's AdamW schedule, a few Adam steps, or none
REGULARIZATIONS = ("reference", "light", "none")
#: the reference code's AdamW rate (cosine-decayed to 0 over each cycle's steps)
REFERENCE_LR = 5e-8
#: torch.optim.AdamW's defaults, which the reference code keeps
REFERENCE_ADAMW = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
#: light variant's defaults (reg_steps, reg_lr)
LIGHT_DEFAULTS = (10, 5e-8)


def reference_steps(cycle: int) -> int:
    """AdamW steps of the reference code's regularization in cycle ``cycle`` (1-based): 5000 + 1000 (i - 1)."""
    return 5000 + 1000 * (int(cycle) - 1)


def randomness(unit: Unit) -> float:
    """(1 - mu) gamma of the unit's current fit: how random the layer looks (0 when not fitted)."""
    if not unit.ok:
        return 0.0
    value = (1.0 - unit.fit.mu) * unit.fit.gamma
    return float(value) if np.isfinite(value) and value > 0 else 0.0


def sparsify_singular_vectors(
    w: torch.Tensor,
    sv_edge: float,
    theta: float,
    *,
    floor: float = 1.0 / 750,
    power: float = 30.0,
    svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """W rebuilt after zeroing entries of u_j, v_j below T_j = theta max(floor, (1 - s_j/s_+)_+^power).

    Components deep in the MP bulk lose most entries; spikes (s_j > s_+) only entries below
    theta * floor. ``w`` is float64; the result keeps the zeros of ``w`` (pruned weights stay pruned).
    """
    u, s, vh = svd if svd is not None else torch.linalg.svd(w, full_matrices=False)
    depth = torch.clamp(1.0 - s / sv_edge, min=0.0) ** power
    t = theta * torch.clamp(depth, min=floor)
    u = torch.where(u.abs() < t[None, :], torch.zeros_like(u), u)
    vh = torch.where(vh.abs() < t[:, None], torch.zeros_like(vh), vh)
    return ((u * s) @ vh) * (w != 0)


def _movement(before: list[torch.Tensor], after: list[torch.Tensor]) -> tuple[float, float]:
    """(mean, max) |after - before| over the weights nonzero before (0, 0 when there are none)."""
    moved = [(a - b)[b != 0].abs() for b, a in zip(before, after)]
    moved = [d for d in moved if d.numel()]
    if not moved:
        return 0.0, 0.0
    flat = torch.cat([d.reshape(-1).to(torch.float64).cpu() for d in moved])
    return float(flat.mean()), float(flat.max())


def regularize_reference(
    units: list[Unit],
    scales: list[float],
    cycle: int,
    *,
    l1: float,
    l2: float,
    group_lasso: float,
    group_by: str = "rows",
    device: torch.device | None = None,
) -> tuple[float, float]:
    """The reference code's data-free step of cycle ``cycle``: :func:`reference_steps` AdamW steps (torch
    defaults) from fresh state at :data:`REFERENCE_LR`, cosine-decayed to 0, on
    ``s_l (l1 |W|_1 + l2 |W|_F^2 + group_lasso sum_g |W_g|_2)`` with zero weights' gradients masked.

    Computed by :func:`rmtlib.pruning.penalty_flow.adamw_penalty_flow` in float64: a float32 loop rounds
    each ~1e-8 step to the weight's float32 spacing (~2e-9 at |w| ~ 0.03), which changed single weights'
    movement by up to 8% in a 5000-step cycle (the mean by under 1%; measured here on a 24 x 32 matrix).
    Layers with scale <= 0 are left alone; zeros stay zero.
    Returns (mean, max) |delta| of the regularized layers' nonzero weights.
    """
    live = [(unit, scale) for unit, scale in zip(units, scales) if scale > 0]
    if not live:
        return 0.0, 0.0
    before = [
        unit.matrix.detach().to(device=device if device is not None else unit.matrix.device, dtype=torch.float64)
        for unit, _ in live
    ]
    after = adamw_penalty_flow(
        before,
        [scale for _, scale in live],
        steps=reference_steps(cycle),
        lr=REFERENCE_LR,
        l1=l1,
        l2=l2,
        group_lasso=group_lasso,
        group_by=group_by,
        **REFERENCE_ADAMW,
    )
    for (unit, _), w0, w in zip(live, before, after):
        unit.matrix.copy_((w * (w0 != 0)).to(device=unit.matrix.device, dtype=unit.matrix.dtype))
    return _movement(before, [unit.matrix.detach().to(w.device, torch.float64) for (unit, _), w in zip(live, after)])


def regularize_step(
    units: list[Unit],
    scales: list[float],
    *,
    steps: int,
    lr: float,
    l1: float,
    l2: float,
    group_lasso: float,
    group_by: str = "rows",
    device: torch.device | None = None,
) -> tuple[float, float]:
    """The light variant: ``steps`` data-free Adam steps (constant rate) on
    l1 |W|_1 + l2 |W|_F^2 + group_lasso sum_g |W_g|_2 per layer (groups: ``group_by``).

    Layer l's learning rate is ``lr * scales[l]`` (the paper's s_l = 1 / (1 + 1e4 mu_l / i));
    zero weights get zero gradient and stay zero. Returns (mean, max) |delta| of the nonzero weights.
    """
    if steps <= 0 or lr <= 0:
        return 0.0, 0.0
    groups, pairs = [], []
    for unit, scale in zip(units, scales):
        if scale <= 0:
            continue
        dev = device if device is not None else unit.matrix.device
        dtype = torch.float64 if unit.matrix.dtype == torch.float64 else torch.float32
        w = unit.matrix.detach().to(device=dev, dtype=dtype).clone().requires_grad_(True)
        groups.append({"params": [w], "lr": lr * scale})
        pairs.append((unit, w, w.detach() != 0))
    if not groups:
        return 0.0, 0.0
    before = [w.detach().clone() for _, w, _ in pairs]
    opt = torch.optim.Adam(groups, lr=lr)
    with torch.enable_grad():
        _adam_steps(opt, pairs, int(steps), l1, l2, group_lasso, group_by)
    with torch.no_grad():
        for unit, w, mask in pairs:
            unit.matrix.copy_((w * mask).to(device=unit.matrix.device, dtype=unit.matrix.dtype))
    return _movement(before, [(w * mask).detach() for _, w, mask in pairs])


def _adam_steps(
    opt: torch.optim.Optimizer, pairs: list, steps: int, l1: float, l2: float, group_lasso: float, group_by: str
) -> None:
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        for _, w, mask in pairs:
            loss = l1 * w.abs().sum() + l2 * w.pow(2).sum() + group_lasso * group_norms(w, group_by).sum()
            loss.backward()
            w.grad.mul_(mask)
        opt.step()


# numeric options of the RMT methods: name -> (minimum, exclusive, whole number); None values are "unset"
_NUMERIC_OPTIONS: dict[str, tuple[float, bool, bool]] = {
    "cycles": (1, False, True),
    "max_cycles": (1, False, True),
    "sv_every": (0, False, True),
    "reg_steps": (0, False, True),
    "rho": (0, True, False),
    "rho_growth": (0, True, False),
    "scale": (0, True, False),
    **{
        name: (0, False, False)
        for name in (
            "exponent",
            "sv_theta",
            "sv_theta_scale",
            "sv_floor",
            "sv_power",
            "reg_lr",
            "l1",
            "l2",
            "group_lasso",
            "mu_scale",
            "z",
        )
    },
}

# rho is the fraction of a layer's weights one cycle removes (rho=1e308 overflowed the budget to a traceback)
_MAXIMUM = {"rho": 1.0}


def check_rmt_options(method: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` for a numeric option of ``rmt`` / ``rmt_oneshot`` out of range (negative,
    NaN, 2.7 cycles), an unknown ``regularization`` / ``reg_groups``, or the light variant's knobs
    (``reg_steps``, ``reg_lr``) given with another variant; used by the methods and by
    :func:`rmtlib.pruning.check_method_options`, so a sweep refuses a bad value before any run."""
    for name, value in options.items():
        if name in _NUMERIC_OPTIONS and value is not None:
            minimum, exclusive, integer = _NUMERIC_OPTIONS[name]
            check_number(
                f"{method}: {name}",
                value,
                minimum=minimum,
                exclusive=exclusive,
                integer=integer,
                maximum=_MAXIMUM.get(name),
            )
    variant = options.get("regularization", "reference")
    if variant not in REGULARIZATIONS:
        raise InputError(f"{method}: regularization must be one of {', '.join(REGULARIZATIONS)}, got {variant!r}")
    groups = options.get("reg_groups", "rows")
    if groups not in GROUPINGS:
        raise InputError(f"{method}: reg_groups must be one of {', '.join(GROUPINGS)}, got {groups!r}")
    knobs = [name for name in ("reg_steps", "reg_lr") if options.get(name) is not None]
    if knobs and variant != "light":
        raise InputError(
            f"{method}: {' and '.join(knobs)} set(s) the light regularization; pass regularization='light' "
            f"with it (regularization={variant!r} is in effect; 'none' skips the step)"
        )


@register_method("rmt", needs_fit=True, stopping_option="cycles", check=check_rmt_options)
def rmt_cycles(
    ctx: PruneContext,
    *,
    cycles: int | None = None,
    max_cycles: int = 200,
    rho: float = 0.06,
    rho_growth: float = 1.02,
    exponent: float = 1.5,
    sv_every: int = 2,
    sv_theta: float | None = None,
    sv_theta_scale: float = 1.125e-5,
    sv_floor: float = 1.0 / 750,
    sv_power: float = 30.0,
    regularization: str = "reference",
    reg_steps: int | None = None,
    reg_lr: float | None = None,
    reg_groups: str = "rows",
    l1: float = 5e-7,
    l2: float = 2e-7,
    group_lasso: float = 1e-6,
    mu_scale: float = 1e4,
) -> dict[str, Any]:
    """Prune in cycles i = 1, 2, ... until the target (or ``cycles`` cycles without a target).

    Cycle i: (1) fit MP to each layer; (2) when i % sv_every == 0, sparsify its singular vectors
    with theta_l = ``sv_theta`` or, by default, the reference code's size-scaled
    ``sv_theta_scale * rho_i * m * n``; (3) remove the B_l = rho_i ((1 - mu_l) gamma_l)^(exponent/i) nnz_l
    smallest weights, rho_i = rho * rho_growth^i (the last cycle's budgets are scaled down so the
    target is met exactly); (4) the data-free regularization step, scaled per layer by
    s_l = 1 / (1 + mu_scale mu_l / i), on l1 |W|_1 + l2 |W|_F^2 + group_lasso sum_g |W_g|_2 (g: the
    layer's ``reg_groups``), gradients of zero weights masked. Returns the per-cycle log: ``removed``
    counts every weight a cycle zeroed (the singular-vector step too), ``reg_steps`` the step count and
    ``reg_mean_delta`` / ``reg_max_delta`` how far the step moved the surviving weights.

    ``regularization``:

    * ``"reference"`` (default): the reference code's schedule, 5000 + 1000 (i - 1) AdamW steps in cycle i
      at lr 5e-8, cosine-decayed to 0 over the cycle (:func:`regularize_reference`, computed in closed
      form). Assumed where METHOD.md does not say: ``torch.optim.AdamW`` defaults (betas (0.9, 0.999),
      eps 1e-8, weight_decay 0.01), a fresh optimizer and schedule each cycle, the penalties on the
      pruned matrices only, group lasso over rows, l2 = 2e-7 and group_lasso = 1e-6. The eps matters:
      a step moves a weight by lr_t g / (|g| + eps), and |g| ~ s_l l1 is ~1e-9 in early cycles
      (mu ~ 0.02: s_1 ~ 0.005), where weights move at ~0.2 lr; later s_l ~ i / (1e4 mu) grows and they
      move at nearly lr, so the ~34 cycles of the paper move each weight by ~1e-2. Weight decay
      (w <- w (1 - lr_t 0.01)) shrinks a weight by under 2e-4 of itself over all of them.
    * ``"light"``: ``reg_steps`` (10) Adam steps at a constant ``reg_lr`` (5e-8) times s_l, which move a
      weight by at most 5e-7: the cycles are then per-layer magnitude pruning with RMT budgets.
    * ``"none"``: no step.

    The singular-vector depth term (1 - s_j/s_+)_+^30 exceeds its 1/750 floor only for s_j < 0.198 s_+,
    and the MP lower edge is s_-/s_+ = (1 - sqrt c)/(1 + sqrt c) > 0.198 for aspect ratio c < 0.448:
    in a ViT's qkv (c = 1/3), fc1 and fc2 (c = 1/4) spikes and bulk get the same threshold theta/750;
    only near-square layers (attn.proj) see the depth term (METHOD.md section 3).
    """
    units, budget, device, progress = ctx.units, ctx.budget, ctx.device, ctx.progress
    fit_config = ctx.fit_config
    target = budget.unit_allowance is not None
    if target == (cycles is not None):
        raise InputError(
            "rmt: give either sparsity= (cycles until the target) or cycles= (a fixed number), not both"
            if target
            else "rmt: give sparsity= or cycles="
        )
    check_rmt_options(
        "rmt",
        dict(
            cycles=cycles,
            max_cycles=max_cycles,
            sv_every=sv_every,
            regularization=regularization,
            reg_steps=reg_steps,
            reg_groups=reg_groups,
            rho=rho,
            rho_growth=rho_growth,
            exponent=exponent,
            sv_theta=sv_theta,
            sv_theta_scale=sv_theta_scale,
            sv_floor=sv_floor,
            sv_power=sv_power,
            reg_lr=reg_lr,
            l1=l1,
            l2=l2,
            group_lasso=group_lasso,
            mu_scale=mu_scale,
        ),
    )
    if target and all(unit.status != "not_fitted" for unit in units):  # an unreachable target, before any change
        prunable = sum(u.nnz for u in units if u.ok)
        if removal_needed(units, budget) > prunable:
            raise InputError(
                f"rmt: the target needs {removal_needed(units, budget)} weights removed but the layers with a "
                f"fitted MP bulk hold only {prunable} nonzeros; the highest reachable sparsity is "
                f"{1 - (budget.nonzero_before - prunable) / budget.dense:.4f}"
            )
    log: list[dict[str, Any]] = []
    first_fits: dict[str, Any] = {}
    fitted = all(unit.status != "not_fitted" for unit in units)  # prune() fits the input layers already
    i = 0
    while True:
        # counted, not booked: the singular-vector step can zero weights too
        need = removal_needed(units, budget) if target else 0
        if target and need <= 0:
            break
        if cycles is not None and i >= int(cycles):
            break
        i += 1
        if i > max_cycles:
            raise InputError(f"rmt: target not reached after {max_cycles} cycles (raise max_cycles=)")
        rho_i = rho * rho_growth**i
        sv_step = sv_every > 0 and i % sv_every == 0
        budgets = []
        nonzero_before = sum(u.nnz for u in units)
        if not sv_step and not (i == 1 and fitted):  # singular values only: batched Gram eigenvalues
            fit_units(units, device=device, fit_config=fit_config)
        for unit in tqdm(units, desc=f"rmt cycle {i}", disable=not progress, leave=False):
            if sv_step:
                dev = device if device is not None else unit.matrix.device
                w = unit.matrix.detach().to(device=dev, dtype=torch.float64)
                svd = torch.linalg.svd(w, full_matrices=False)
                fit_unit(unit, sv=svd[1].cpu().numpy(), fit_config=fit_config)
            first_fits.setdefault(unit.name, (unit.fit, unit.status))
            fit = unit.fit
            if sv_step and fit is not None and fit.ok:
                theta = sv_theta if sv_theta is not None else sv_theta_scale * rho_i * unit.m * unit.n
                new = sparsify_singular_vectors(w, fit.sv_edge, theta, floor=sv_floor, power=sv_power, svd=svd)
                unit.matrix.copy_(new.to(device=unit.matrix.device, dtype=unit.matrix.dtype))
            unit.nnz = int(torch.count_nonzero(unit.matrix))
            r = randomness(unit)
            budgets.append(math.floor(rho_i * r ** (exponent / i) * unit.nnz) if r > 0 else 0)
        if target:
            need = removal_needed(units, budget)  # after this cycle's singular-vector step
            if sum(budgets) > need:
                budgets = split_count(max(need, 0), budgets, budgets)
        if sum(budgets) == 0 and not (target and need <= 0):
            raise InputError(
                "rmt: no layer looks random enough to prune further (gamma = 0 or MP fit failed everywhere); "
                f"stopped at cycle {i}. Try method='magnitude' or exclude the small layers"
            )
        for unit, k in zip(units, budgets):
            remove_smallest(unit.matrix, k)
            unit.nnz = int(torch.count_nonzero(unit.matrix))
        scales = [1.0 / (1.0 + mu_scale * unit.fit.mu / i) if unit.ok else 0.0 for unit in units]
        penalties = dict(l1=l1, l2=l2, group_lasso=group_lasso, group_by=reg_groups, device=device)
        if regularization == "reference":
            steps = reference_steps(i)
            moved = regularize_reference(units, scales, i, **penalties)
        elif regularization == "light":
            steps = LIGHT_DEFAULTS[0] if reg_steps is None else int(reg_steps)
            lr = LIGHT_DEFAULTS[1] if reg_lr is None else float(reg_lr)
            moved = regularize_step(units, scales, steps=steps, lr=lr, **penalties)
        else:
            steps, moved = 0, (0.0, 0.0)
        for unit in units:  # a weight the step brought to exactly 0 counts as removed
            unit.nnz = int(torch.count_nonzero(unit.matrix))
        removed = nonzero_before - sum(u.nnz for u in units)
        nonzero = budget.fixed_nonzero + sum(u.nnz for u in units)
        log.append(
            {
                "cycle": i,
                "rho": rho_i,
                "sv_step": sv_step,
                "reg_steps": steps,
                "reg_mean_delta": moved[0],
                "reg_max_delta": moved[1],
                "removed": removed,
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / budget.dense,
            }
        )
    for unit in units:  # report the fit of the input layers
        if unit.name in first_fits:
            unit.fit, unit.status = first_fits[unit.name]
    return {"cycles": len(log), "cycle_log": log}


@register_method("rmt_oneshot", needs_fit=True, stopping_option="z", check=check_rmt_options)
def rmt_oneshot(ctx: PruneContext, *, z: float | None = None, scale: float = 1.5) -> dict[str, Any]:
    """Zero weights with |w| < t_l = scale z (1 - mu_l) gamma_l in one pass.

    With a sparsity target the globally smallest |w| / (scale (1 - mu_l) gamma_l) go, so the count is
    met exactly; the reported z is the largest of them (float32), so ``z=`` that value removes the same
    weights up to ties at the threshold (the z mode's test is strict).
    Layers with (1 - mu) gamma = 0 are never pruned. No regularization step: METHOD.md's one-shot
    variant (section 3, step 3) has none.
    """
    units, budget = ctx.units, ctx.budget
    check_rmt_options("rmt_oneshot", {"scale": scale, "z": z})
    coeff = [scale * randomness(u) for u in units]
    if budget.unit_allowance is None:
        if z is None:
            raise InputError("rmt_oneshot: give sparsity= or z=")
        for unit, c in zip(units, coeff):
            unit.matrix.masked_fill_(unit.matrix.abs() < z * c, 0)
        return {"z": float(z)}
    remove = removal_needed(units, budget)
    prunable = sum(u.nnz for u, c in zip(units, coeff) if c > 0)
    if remove > prunable:
        raise InputError(
            f"rmt_oneshot: the target needs {remove} weights removed but the layers with a fitted MP bulk hold "
            f"only {prunable} nonzeros; the highest reachable sparsity is "
            f"{1 - (budget.nonzero_before - prunable) / budget.dense:.4f}"
        )
    keys = []
    for unit, c in zip(units, coeff):
        flat = unit.matrix.reshape(-1).detach()
        key = flat.abs().to(torch.float32) / c if c > 0 else torch.full_like(flat, float("inf"), dtype=torch.float32)
        key[flat == 0] = -1.0
        keys.append(key.to(units[0].matrix.device))
    z_value, _ = cut_smallest_keys(units, keys, remove)
    return {"z": z_value, "scale": scale}
