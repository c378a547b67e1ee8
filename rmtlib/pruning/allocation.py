"""Per-layer budgets: how many weights each layer loses, chosen apart from the score that picks them.

``uniform``: the same fraction of each layer. ``global``: one score threshold over all layers (the
score methods apply it; only magnitude, whose scores compare across layers). ``mp``: the paper's
budgets, a layer's removed fraction proportional to its randomness (1 - mu_l) gamma_l (METHOD.md
section 3, the B_l of a cycle with its exponent at 1). ``alpha``: AlphaPruning (Lu et al., NeurIPS
2024), removed fraction linear in the layer's Hill alpha. Every allocation is normalised so that the
counts sum exactly to the whole-model removal (:func:`rmtlib.pruning.elementwise.removal_needed`).

Differences from AlphaPruning's code, by choice: its alpha is WeightWatcher-style PL_Alpha_Hill with a
fitted tail start (xmin), ours :func:`rmtlib.spectral.heavy_tail.hill_alpha` with the top k = 20
eigenvalues (as the authors' 2026 SEB does); its LLM runs average alpha over each transformer block,
ours keeps one alpha per layer; its ratios are rescaled by one factor, ours split exactly (largest
remainders, capped at each layer's nonzeros, the excess passed on to the other layers).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rmtlib.errors import InputError, check_number
from rmtlib.pruning.common import Unit, fit_units, gram_singular_values, split_count
from rmtlib.pruning.registry import PruneContext
from rmtlib.pruning.rmt import randomness
from rmtlib.spectral.heavy_tail import hill_alpha

__all__ = ["ALLOCATIONS", "ALPHA_EPSILON", "HILL_K", "check_allocation", "layer_counts", "alpha_ratios", "hill_alphas"]

ALLOCATIONS = ("uniform", "global", "mp", "alpha")
#: AlphaPruning's default spread: ratios in [s (1 - eps), s (1 + eps)] before rescaling (its code's
#: ``ww_sparsity(..., s1=0.8, s2=1.2)`` default; its README uses 0.2-0.3 for LLaMA-7B at 70%)
ALPHA_EPSILON = 0.2
#: eigenvalues in the Hill estimate's tail (METHOD.md section 7's k = 20)
HILL_K = 20


def check_allocation(method: str, allocation: object, epsilon: object, *, allow_global: bool) -> None:
    """:class:`InputError` naming ``allocation`` / ``epsilon`` for a value the method cannot use."""
    if allocation not in ALLOCATIONS:
        raise InputError(f"{method}: allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if allocation == "global" and not allow_global:
        raise InputError(
            f"{method}: allocation='global' needs scores comparable across layers (magnitude); use uniform, mp or alpha"
        )
    if epsilon is not None:
        if allocation != "alpha":
            raise InputError(f"{method}: epsilon= is the spread of allocation='alpha', not of {allocation!r}")
        check_number(f"{method}: epsilon", epsilon, minimum=0.0)
        if float(epsilon) >= 1.0:
            raise InputError(f"{method}: epsilon must be in [0, 1), got {epsilon!r}")


def hill_alphas(units: Sequence[Unit], ctx: PruneContext, k: int = HILL_K) -> list[float]:
    """Hill alpha of each unit's matrix (NaN where it has fewer than k + 1 positive singular values)."""
    out = []
    for unit in units:
        sv = unit.fit.singular_values if unit.fit is not None else gram_singular_values(unit.matrix, ctx.device)
        try:
            out.append(hill_alpha(sv, k=k))
        except InputError:
            out.append(float("nan"))
    return out


def alpha_ratios(alphas: Sequence[float], target: float, epsilon: float = ALPHA_EPSILON) -> np.ndarray:
    """AlphaPruning's map: ratio_l = c [(1 - eps) + 2 eps (a_l - a_min) / (a_max - a_min)], with c such
    that sum ratio_l n_l = target sum n_l (done by the caller's exact split). Larger alpha (a lighter
    tail: a more random layer) -> more pruning. A NaN alpha (a layer too small) takes the mean of the
    others; equal alphas give the uniform ratio."""
    a = np.asarray(alphas, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.full(a.shape, float(target))
    a = np.where(finite, a, a[finite].mean())
    spread = a.max() - a.min()
    if spread <= 0:
        return np.full(a.shape, float(target))
    return float(target) * ((1.0 - epsilon) + 2.0 * epsilon * (a - a.min()) / spread)


def layer_counts(
    allocation: str, units: Sequence[Unit], remove: int, ctx: PruneContext, *, epsilon: float | None = None
) -> list[int]:
    """Weights to remove from each unit (summing exactly to ``remove``, each at most its nonzeros)."""
    nnz = np.array([u.nnz for u in units], dtype=np.float64)
    if allocation == "uniform":
        weights = nnz
    elif allocation == "mp":
        if any(u.status == "not_fitted" for u in units):  # prune(..., fit=False)
            fit_units(list(units), device=ctx.device, fit_config=ctx.fit_config)
        weights = np.array([randomness(u) for u in units]) * nnz
        if remove > int(nnz[weights > 0].sum()):
            raise InputError(
                f"allocation 'mp': the target needs {remove} weights removed but the layers with a fitted MP bulk "
                f"hold only {int(nnz[weights > 0].sum())} nonzeros"
            )
    elif allocation == "alpha":
        target = remove / nnz.sum() if nnz.sum() > 0 else 0.0
        eps = ALPHA_EPSILON if epsilon is None else float(epsilon)
        weights = alpha_ratios(hill_alphas(units, ctx), target, eps) * nnz
    else:
        raise InputError(f"allocation {allocation!r} has no per-layer counts (one of uniform, mp, alpha)")
    counts = split_count(remove, weights.tolist(), [u.nnz for u in units])
    if sum(counts) < remove:  # some layers hit their cap and the rest had no weight: fill by nonzeros
        more = split_count(remove - sum(counts), nnz.tolist(), [u.nnz - c for u, c in zip(units, counts)])
        counts = [c + d for c, d in zip(counts, more)]
    return counts
