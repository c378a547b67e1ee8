"""Score-based one-shot pruning: a registry of weight scores, each combined with a per-layer allocation
(:mod:`rmtlib.pruning.allocation`) or an N:M pattern (:mod:`rmtlib.pruning.patterns`).

Scores: ``magnitude`` |W_ij|, compared within the layer; ``wanda`` |W_ij| ||X_j||_2 (Sun et al. 2023,
"A Simple and Effective Pruning Approach for Large Language Models"), X_j the layer's input feature j
over every calibration token, compared within each output row (Wanda's own comparison group). Neither
updates the kept weights; SparseGPT (:mod:`rmtlib.pruning.sparsegpt`) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from rmtlib.errors import InputError
from rmtlib.pruning.allocation import check_allocation, layer_counts
from rmtlib.pruning.calibration import LayerStats, check_layer_inputs, layer_statistics
from rmtlib.pruning.common import Unit, cut_smallest_keys, smallest_mask, split_count
from rmtlib.pruning.elementwise import removal_needed
from rmtlib.pruning.patterns import check_pattern, nm_mask, parse_pattern
from rmtlib.pruning.registry import PruneContext, register_method

__all__ = ["SCORES", "Score", "magnitude", "wanda", "check_score_options", "resolve_allocation", "prune_by_keys"]


@dataclass(frozen=True)
class Score:
    """A weight score: ``fn(unit, stats)`` -> keys (higher = keep), the group its keys are compared in
    (``"layer"`` or ``"row"``) and whether it reads calibration statistics."""

    fn: Callable[[Unit, LayerStats | None], torch.Tensor]
    group: str
    needs_calibration: bool


def _magnitude(unit: Unit, _stats: LayerStats | None) -> torch.Tensor:
    return unit.matrix.detach().abs().to(torch.float64 if unit.matrix.dtype == torch.float64 else torch.float32)


def _wanda(unit: Unit, stats: LayerStats | None) -> torch.Tensor:
    assert stats is not None
    norms = stats.sq_norms.sqrt().to(unit.matrix.device)
    return unit.matrix.detach().abs().to(torch.float64) * norms[None, :]


SCORES: dict[str, Score] = {
    "magnitude": Score(_magnitude, "layer", False),
    "wanda": Score(_wanda, "row", True),
}


def resolve_allocation(method: str, allocation: str | None, scope: str | None = None) -> str:
    """The allocation a call asks for; magnitude's older ``scope`` maps onto it (layer -> uniform)."""
    if scope is not None:
        if scope not in ("layer", "global"):
            raise InputError(f"{method}: scope must be 'layer' or 'global', got {scope!r}")
        implied = "uniform" if scope == "layer" else "global"
        if allocation is not None and allocation != implied:
            raise InputError(f"{method}: scope={scope!r} means allocation={implied!r}, not {allocation!r}; give one")
        return implied
    return "uniform" if allocation is None else allocation


def check_score_options(method: str, options: Mapping[str, Any]) -> None:
    """Option values of the score methods (allocation, epsilon, pattern, scope), before any run."""
    allocation = resolve_allocation(method, options.get("allocation"), options.get("scope"))
    check_allocation(method, allocation, options.get("epsilon"), allow_global=method == "magnitude")
    if options.get("pattern") is not None:
        parse_pattern(options["pattern"], method)
        if allocation != "uniform":
            raise InputError(
                f"{method}: a pattern fixes every layer's sparsity; allocation={allocation!r} cannot apply"
            )


def prune_by_keys(unit: Unit, keys: torch.Tensor, k: int, group: str) -> None:
    """Zero the ``k`` lowest-key nonzero weights of the unit, compared over the layer or within each row
    (then ``k`` is split over the rows in proportion to their nonzeros, exactly)."""
    if k <= 0:
        return
    matrix = unit.matrix
    zero = matrix == 0
    keys = torch.where(zero, torch.full_like(keys, -1.0), keys)  # already-zero entries first, at no cost
    if group == "layer":
        mask = smallest_mask(keys.reshape(-1), k + int(zero.sum())).reshape(matrix.shape)
    else:
        nnz_rows = (~zero).sum(1).tolist()
        per_row = torch.tensor(split_count(k, nnz_rows, nnz_rows), device=keys.device) + zero.sum(1)
        order = torch.sort(keys, dim=1, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(keys.shape[1], device=keys.device).expand_as(order))
        mask = ranks < per_row[:, None]
    matrix.masked_fill_(mask.to(matrix.device), 0)


def _global(units: list[Unit], keys: list[torch.Tensor], remove: int) -> float:
    """One threshold over all units' keys: the ``remove`` lowest nonzero weights go; returns the threshold."""
    flat = []
    for unit, key in zip(units, keys):
        key = key.reshape(-1).to(torch.float32).cpu()
        key[unit.matrix.reshape(-1).cpu() == 0] = -1.0
        flat.append(key)
    return cut_smallest_keys(units, flat, remove)[0]


def unit_stats(ctx: PruneContext, method: str, *, gram: bool = False) -> dict[int, LayerStats]:
    """Input statistics of every unit's layer on the calibration inputs (refused without them)."""
    if ctx.calibration is None:
        raise InputError(f"{method}: needs calibration= (model inputs: a DataLoader, a Dataset or a tensor)")
    for unit in ctx.units:
        check_layer_inputs(unit.name, unit.module)
    return layer_statistics(ctx.model, [u.module for u in ctx.units], ctx.calibration, gram=gram)


def score_prune(
    ctx: PruneContext,
    method: str,
    *,
    allocation: str | None,
    pattern: str | None,
    epsilon: float | None,
    scope: str | None = None,
) -> dict[str, Any]:
    """Prune every unit by ``SCORES[method]`` under an allocation or a pattern; all checks before any change."""
    score = SCORES[method]
    units = ctx.units
    check_score_options(method, {"allocation": allocation, "scope": scope, "epsilon": epsilon, "pattern": pattern})
    alloc = resolve_allocation(method, allocation, scope)
    if pattern is None and ctx.budget.unit_allowance is None:
        raise InputError(f"{method}: sparsity= is required (or pattern='N:M')")
    nm = check_pattern(units, pattern, method) if pattern is not None else None
    remove = removal_needed(units, ctx.budget) if nm is None else 0
    stats = unit_stats(ctx, method) if score.needs_calibration else {}
    keys = [score.fn(u, stats.get(id(u.module))) for u in units]
    out: dict[str, Any] = {"allocation": alloc, "score": method}
    if method == "magnitude" and alloc in ("uniform", "global"):
        out["scope"] = "layer" if alloc == "uniform" else "global"
    if nm is not None:
        for unit, key in zip(units, keys):
            unit.matrix.masked_fill_(nm_mask(key, *nm).to(unit.matrix.device), 0)
        out["pattern"] = pattern
    elif alloc == "global":
        out["threshold"] = _global(units, keys, remove)
    else:
        counts = layer_counts(alloc, units, remove, ctx, epsilon=epsilon)
        for unit, key, k in zip(units, keys, counts):
            prune_by_keys(unit, key, k, score.group)
    for unit in units:
        unit.nnz = int(torch.count_nonzero(unit.matrix))
    return out


@register_method("magnitude", stopping_option="pattern", check=check_score_options)
def magnitude(
    ctx: PruneContext,
    *,
    scope: str | None = None,
    allocation: str | None = None,
    pattern: str | None = None,
    epsilon: float | None = None,
) -> dict[str, Any]:
    """Zero the smallest-magnitude weights under a per-layer allocation (``uniform``, the default, is the
    older ``scope="layer"``; ``global`` is ``scope="global"``; ``mp``; ``alpha``) or an N:M ``pattern``."""
    return score_prune(ctx, "magnitude", allocation=allocation, pattern=pattern, epsilon=epsilon, scope=scope)


@register_method("wanda", needs_calibration=True, stopping_option="pattern", check=check_score_options)
def wanda(
    ctx: PruneContext, *, allocation: str | None = None, pattern: str | None = None, epsilon: float | None = None
) -> dict[str, Any]:
    """Wanda: zero the weights of lowest |W_ij| ||X_j||_2 within each output row (calibration inputs X),
    under a per-layer allocation (``uniform``, ``mp``, ``alpha``) or an N:M ``pattern``; no weight update."""
    return score_prune(ctx, "wanda", allocation=allocation, pattern=pattern, epsilon=epsilon)
