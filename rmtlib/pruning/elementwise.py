"""Element-wise budget helpers and the random baseline (magnitude and other scores: :mod:`rmtlib.pruning.scores`)."""

from __future__ import annotations

from typing import Any

import torch

from rmtlib.errors import InputError
from rmtlib.pruning.common import Budget, Unit, split_count
from rmtlib.pruning.registry import PruneContext, register_method

__all__ = ["removal_needed", "random_prune", "layerwise_counts"]


def removal_needed(units: list[Unit], budget: Budget) -> int:
    """Nonzero weights the element-wise methods must remove to meet the target (0 if met)."""
    allowance = budget.unit_allowance
    assert allowance is not None
    if allowance < 0:
        raise InputError(
            f"sparsity target needs at most {budget.target_nonzero} nonzero parameters, but "
            f"{budget.fixed_nonzero} sit outside the pruned layers (biases, norms, tokens, excluded layers); "
            f"the highest reachable sparsity is {budget.max_sparsity():.4f}"
        )
    return max(0, sum(u.nnz for u in units) - allowance)


def layerwise_counts(units: list[Unit], remove: int) -> list[int]:
    """The same fraction of each layer's nonzeros (rounded so the counts sum to ``remove``)."""
    return split_count(remove, [u.nnz for u in units], [u.nnz for u in units])


@register_method("random", requires_sparsity=True)
def random_prune(ctx: PruneContext) -> dict[str, Any]:
    """Zero uniformly random nonzero weights, the same fraction per layer (seeded by the run's seed)."""
    units, budget, seed = ctx.units, ctx.budget, ctx.seed
    remove = removal_needed(units, budget)
    gen = torch.Generator().manual_seed(int(seed))
    for unit, k in zip(units, layerwise_counts(units, remove)):
        if k <= 0:
            continue
        flat = unit.matrix.reshape(-1)
        idx = torch.nonzero(flat != 0).flatten().cpu()
        chosen = idx[torch.randperm(idx.numel(), generator=gen)[:k]]
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        mask[chosen] = True
        unit.matrix.masked_fill_(mask.reshape(unit.matrix.shape).to(unit.matrix.device), 0)
    return {"seed": int(seed)}
