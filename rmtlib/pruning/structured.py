"""Methods that lower layer ranks and factorize layers: ``rmt_lowrank`` and the ``svd`` baseline.

A layer of current nonzero count c (m n for a dense layer) kept at rank k costs
k (m + n) parameters when factorized, which is done only when k (m + n) < c; otherwise the
layer is left untouched (cost c). The methods choose ranks so the whole model meets the budget.
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from rmtlib.errors import InputError, check_number
from rmtlib.nn.lowrank import can_factorize, factorize, factors_from_gram, replace_module
from rmtlib.pruning.common import Budget, Unit
from rmtlib.pruning.registry import PruneContext, register_method

__all__ = ["rmt_lowrank", "svd_prune", "apply_ranks", "current_rank"]


def current_rank(unit: Unit) -> int:
    """Structural rank of the layer: its factor rank if low-rank, else min(m, n)."""
    return int(getattr(unit.module, "rank", min(unit.m, unit.n)))


def _cost(unit: Unit, k: int) -> int:
    """Nonzero weights of the layer kept at rank k (factorized only when that is cheaper)."""
    if not can_factorize(unit.module) or k >= current_rank(unit):
        return unit.nnz
    return min(k * (unit.m + unit.n), unit.nnz)


def _align(k: int, multiple: int, cap: int) -> int:
    """k rounded up to a multiple of ``multiple`` (GEMM-friendly ranks), at most ``cap``."""
    return min(cap, -(-int(k) // multiple) * multiple)


def _check_floor(units: list[Unit], ranks: list[int], budget: Budget, method: str) -> None:
    allowance = budget.unit_allowance
    floor = sum(_cost(u, k) for u, k in zip(units, ranks))
    if allowance is not None and floor > allowance:
        raise InputError(
            f"{method}: even the smallest ranks keep {floor} weights in the pruned layers, over the "
            f"{max(allowance, 0)} the target allows; the highest reachable sparsity is {budget.max_sparsity(floor):.4f}"
        )


def apply_ranks(
    model: nn.Module, units: list[Unit], ranks: list[int], *, device: torch.device | None = None, progress: bool = False
) -> None:
    """Replace each layer whose chosen rank saves weights by its rank-k factorization."""
    for unit, k in tqdm(list(zip(units, ranks)), desc="factorize", disable=not progress, leave=False):
        if can_factorize(unit.module) and k < current_rank(unit) and k * (unit.m + unit.n) < unit.nnz:
            factors = None
            if "gram_eigh" in unit.extra:  # reuse the decomposition made for the MP fit
                eigval, eigvec = unit.extra["gram_eigh"]
                factors = factors_from_gram(unit.matrix.to(eigvec.device), eigval, eigvec, int(k))
            new = factorize(unit.module, int(k), device=device, factors=factors)
            replace_module(model, unit.name, new)
            unit.module = new
            unit.rank_kept = int(k)
        else:
            unit.rank_kept = current_rank(unit)


def check_structured_options(method: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`InputError` for a bad option value of ``rmt_lowrank`` / ``svd`` (``abc``, ``true``,
    1e308), before any change to the model."""
    ranges = {
        "bulk_fraction": dict(minimum=0.0, maximum=1.0),
        "rank_fraction": dict(minimum=0.0, exclusive=True, maximum=1.0),
        "min_rank": dict(minimum=1, integer=True),
        "rank_multiple": dict(minimum=1, integer=True),
    }
    for name, value in options.items():
        if name in ranges and value is not None:
            check_number(f"{method}: {name}", value, **ranges[name])


@register_method(
    "rmt_lowrank",
    kind="structured",
    needs_fit=True,
    stopping_option="bulk_fraction",
    check=check_structured_options,
)
def rmt_lowrank(
    ctx: PruneContext,
    *,
    bulk_fraction: float | None = None,
    min_rank: int = 1,
    rank_multiple: int = 1,
) -> dict[str, Any]:
    """Keep each layer's MP spikes (singular values above its edge s_+) plus some bulk components.

    Without a target: rank = spikes + ceil(bulk_fraction (p - spikes)) (default fraction 0).
    With a target: components are ranked across layers by s_j / s_+ of their layer and added
    greedily (biggest first, each layer starting at ``min_rank``) while the budget allows, so
    spikes go in first and bulk components only as the budget permits. Layers without a
    successful MP fit keep their rank. ``rank_multiple=q`` keeps ranks at multiples of q (blocks
    of q components are added at once), which CPU/GPU matrix kernels run faster.
    """
    model, units, budget, device, progress = ctx.model, ctx.units, ctx.budget, ctx.device, ctx.progress
    if min_rank < 1:
        raise InputError(f"rmt_lowrank: min_rank must be >= 1, got {min_rank}")
    if rank_multiple < 1:
        raise InputError(f"rmt_lowrank: rank_multiple must be >= 1, got {rank_multiple}")
    q = int(rank_multiple)
    fitted = [u.ok and can_factorize(u.module) for u in units]
    if budget.unit_allowance is None:
        f = 0.0 if bulk_fraction is None else float(bulk_fraction)
        if not 0.0 <= f <= 1.0:
            raise InputError(f"rmt_lowrank: bulk_fraction must be in [0, 1], got {bulk_fraction}")
        ranks = []
        for unit, ok in zip(units, fitted):
            if not ok:
                ranks.append(current_rank(unit))
                continue
            spikes = unit.fit.n_spikes
            k = max(min_rank, spikes + math.ceil(f * (current_rank(unit) - spikes)))
            ranks.append(_align(k, q, current_rank(unit)))
        apply_ranks(model, units, ranks, device=device, progress=progress)
        return {"bulk_fraction": f}
    if bulk_fraction is not None:
        raise InputError("rmt_lowrank: give either sparsity= or bulk_fraction=, not both")
    ranks = [_align(min_rank, q, current_rank(u)) if ok else current_rank(u) for u, ok in zip(units, fitted)]
    _check_floor(units, ranks, budget, "rmt_lowrank")
    allowance = budget.unit_allowance
    total = sum(_cost(u, k) for u, k in zip(units, ranks))
    # max-heap of each layer's next component, keyed by s_j / s_+
    heap = []
    for index, (unit, ok) in enumerate(zip(units, fitted)):
        if ok and ranks[index] < current_rank(unit):
            heap.append((-unit.fit.singular_values[ranks[index]] / unit.fit.sv_edge, index))
    heapq.heapify(heap)
    while heap:
        _, index = heapq.heappop(heap)
        unit, k = units[index], ranks[index]
        new = _align(k + 1, q, current_rank(unit))
        step = _cost(unit, new) - _cost(unit, k)
        if total + step > allowance:
            continue  # this layer is closed: its later components cost as much or more
        total += step
        ranks[index] = new
        if new < current_rank(unit):
            heapq.heappush(heap, (-unit.fit.singular_values[new] / unit.fit.sv_edge, index))
    apply_ranks(model, units, ranks, device=device, progress=progress)
    return {"rank_multiple": q}


@register_method("svd", kind="structured", stopping_option="rank_fraction", check=check_structured_options)
def svd_prune(
    ctx: PruneContext,
    *,
    rank_fraction: float | None = None,
    min_rank: int = 1,
    rank_multiple: int = 1,
) -> dict[str, Any]:
    """Truncated SVD with one rank fraction q for all layers: rank_l = max(min_rank, ceil(q p_l)).

    With a target, q is the largest fraction (found by bisection) whose total cost meets the
    budget; layers then get one more component (block of ``rank_multiple``), in order, while the
    budget still allows. ``rank_multiple`` rounds ranks up to multiples, as in :func:`rmt_lowrank`.
    """
    model, units, budget, device, progress = ctx.model, ctx.units, ctx.budget, ctx.device, ctx.progress
    if rank_multiple < 1:
        raise InputError(f"svd: rank_multiple must be >= 1, got {rank_multiple}")

    def ranks_for(q: float) -> list[int]:
        return [
            _align(max(min_rank, math.ceil(q * current_rank(u) - 1e-12)), rank_multiple, current_rank(u)) for u in units
        ]

    if budget.unit_allowance is None:
        if rank_fraction is None or not 0.0 < rank_fraction <= 1.0:
            raise InputError(f"svd: give sparsity= or rank_fraction= in (0, 1], got {rank_fraction}")
        q = float(rank_fraction)
    else:
        if rank_fraction is not None:
            raise InputError("svd: give either sparsity= or rank_fraction=, not both")
        _check_floor(units, ranks_for(0.0), budget, "svd")
        allowance = budget.unit_allowance

        def cost(q: float) -> int:
            return sum(_cost(u, k) for u, k in zip(units, ranks_for(q)))

        lo, hi = 0.0, 1.0
        if cost(hi) <= allowance:
            lo = hi
        for _ in range(60):
            if hi - lo < 1e-9:
                break
            mid = 0.5 * (lo + hi)
            if cost(mid) <= allowance:
                lo = mid
            else:
                hi = mid
        q = lo
    ranks = ranks_for(q)
    if budget.unit_allowance is not None:  # one more component where it still fits (rounding)
        total = sum(_cost(u, k) for u, k in zip(units, ranks))
        for index, unit in enumerate(units):
            new = _align(ranks[index] + 1, rank_multiple, current_rank(unit))
            step = _cost(unit, new) - _cost(unit, ranks[index])
            if ranks[index] < current_rank(unit) and total + step <= budget.unit_allowance:
                ranks[index] = new
                total += step
    apply_ranks(model, units, ranks, device=device, progress=progress)
    return {"rank_fraction": q}
