"""SparseGPT (Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
One-Shot", ICML 2023): row-wise optimal-brain-surgeon pruning with a weight update.

For a layer with inputs X (tokens x features) the loss of a change dW is ||dW X^T||_F^2 =
sum_rows dw H dw^T with H = X^T X (+ a damping of ``damp`` times its mean diagonal). Columns are
visited left to right; removing weight (r, j) moves the row's later columns by the OBS update
-w_rj / [L]_jj * L[j, j:], with L the upper Cholesky factor of H^-1 (the inverse Hessian of the
columns not yet visited), so each removal is compensated by the weights that remain free. The mask
is chosen per block of 128 columns from w^2 / [L]_jj^2, after the earlier blocks' updates.

The model is processed sequentially: each layer's inputs come from the model whose earlier layers
are already pruned and updated (layers in forward order, inputs re-captured before each).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from rmtlib.errors import InputError, check_number
from rmtlib.pruning.allocation import check_allocation, layer_counts
from rmtlib.pruning.calibration import check_layer_inputs, forward_order, layer_statistics
from rmtlib.pruning.common import smallest_mask, split_count
from rmtlib.pruning.elementwise import removal_needed
from rmtlib.pruning.patterns import check_pattern, nm_mask, parse_pattern
from rmtlib.pruning.registry import PruneContext, register_method

__all__ = ["sparsegpt", "sparsegpt_solve", "check_sparsegpt_options", "BLOCKSIZE", "DAMP"]

BLOCKSIZE = 128
DAMP = 0.01


def _inverse_cholesky(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp mean(diag H) I)^-1; a feature never seen (H_jj = 0) gets H_jj = 1."""
    h = hessian.clone()
    diag = torch.diagonal(h)
    dead = diag == 0
    diag[dead] = 1.0
    diag += damp * float(diag.mean())
    try:
        inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(inv, upper=True)
    except RuntimeError:  # torch.linalg.LinAlgError is a RuntimeError
        raise InputError(f"sparsegpt: the damped Hessian is not positive definite (damp={damp}); raise damp=") from None


def sparsegpt_solve(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    remove: int,
    *,
    blocksize: int = BLOCKSIZE,
    damp: float = DAMP,
    nm: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The pruned and updated copy of ``weight`` (rows x cols): ``remove`` more of its nonzeros zeroed
    (or, with ``nm`` = (N, M), M - N of each group of M consecutive entries of a row), the rest updated
    to compensate on inputs with Gram matrix ``hessian`` = X^T X (cols x cols). Zeros stay zero.
    Computed in float64 on the weight's device."""
    w = weight.detach().to(torch.float64).clone()
    rows, cols = w.shape
    zero = w == 0
    hinv = _inverse_cholesky(hessian.detach().to(device=w.device, dtype=torch.float64), damp)
    starts = list(range(0, cols, blocksize))
    if nm is None:
        block_nnz = [int((~zero[:, i : i + blocksize]).sum()) for i in starts]
        block_remove = split_count(int(remove), block_nnz, block_nnz)
    for b, i1 in enumerate(starts):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        h1 = hinv[i1:i2, i1:i2]
        d = torch.diagonal(h1)
        zero1 = zero[:, i1:i2]
        err = torch.zeros_like(w1)
        if nm is None:
            keys = torch.where(zero1, torch.full_like(w1, -1.0), w1**2 / d[None, :] ** 2)
            mask = smallest_mask(keys.reshape(-1), block_remove[b] + int(zero1.sum())).reshape(w1.shape)
        else:
            mask = zero1.clone()
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                group = slice(i, i + nm[1])
                keys = torch.where(
                    zero1[:, group], torch.full_like(w1[:, group], -1.0), w1[:, group] ** 2 / d[group] ** 2
                )
                mask[:, group] |= nm_mask(keys, *nm)
            col = w1[:, i]
            q = torch.where(mask[:, i], torch.zeros_like(col), col)
            e = (col - q) / d[i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            w1[:, i] = q  # exactly: the update above leaves col - e d = q up to rounding
            err[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return w


def check_sparsegpt_options(method: str, options: Mapping[str, Any]) -> None:
    """Option values of ``sparsegpt`` (allocation, epsilon, pattern, blocksize, damp), before any run."""
    allocation = options.get("allocation") or "uniform"
    check_allocation(method, allocation, options.get("epsilon"), allow_global=False)
    blocksize = options.get("blocksize", BLOCKSIZE)
    check_number(f"{method}: blocksize", blocksize, minimum=1, integer=True)
    check_number(f"{method}: damp", options.get("damp", DAMP), minimum=0.0)
    if options.get("pattern") is not None:
        n, m = parse_pattern(options["pattern"], method)
        if allocation != "uniform":
            raise InputError(
                f"{method}: a pattern fixes every layer's sparsity; allocation={allocation!r} cannot apply"
            )
        if int(blocksize) % m:
            raise InputError(f"{method}: blocksize {blocksize} must be a multiple of the pattern's M = {m}")


@register_method("sparsegpt", needs_calibration=True, stopping_option="pattern", check=check_sparsegpt_options)
def sparsegpt(
    ctx: PruneContext,
    *,
    allocation: str | None = None,
    pattern: str | None = None,
    epsilon: float | None = None,
    blocksize: int = BLOCKSIZE,
    damp: float = DAMP,
) -> dict[str, Any]:
    """SparseGPT: OBS pruning with weight updates, layer by layer in forward order on calibration
    inputs, under a per-layer allocation (``uniform``, ``mp``, ``alpha``) or an N:M ``pattern``."""
    units, budget = ctx.units, ctx.budget
    options = dict(allocation=allocation, pattern=pattern, epsilon=epsilon, blocksize=blocksize, damp=damp)
    check_sparsegpt_options("sparsegpt", options)
    alloc = allocation or "uniform"
    if pattern is None and budget.unit_allowance is None:
        raise InputError("sparsegpt: sparsity= is required (or pattern='N:M')")
    if ctx.calibration is None:
        raise InputError("sparsegpt: needs calibration= (model inputs: a DataLoader, a Dataset or a tensor)")
    for unit in units:
        check_layer_inputs(unit.name, unit.module)
    nm = check_pattern(units, pattern, "sparsegpt") if pattern is not None else None
    counts = (
        [0] * len(units)
        if nm is not None
        else layer_counts(alloc, units, removal_needed(units, budget), ctx, epsilon=epsilon)
    )
    by_module: dict[int, list[int]] = {}
    for index, unit in enumerate(units):
        by_module.setdefault(id(unit.module), []).append(index)
    order, calls = forward_order(ctx.model, [u.module for u in units], ctx.calibration)
    for module in order:
        stats = layer_statistics(
            ctx.model, [module], ctx.calibration, gram=True, device=ctx.device, stop_after=calls[id(module)] or None
        ).get(id(module))
        for index in by_module[id(module)]:
            unit = units[index]
            hessian = stats.gram if stats is not None else torch.zeros(unit.n, unit.n, dtype=torch.float64)
            dev = ctx.device if ctx.device is not None else unit.matrix.device
            new = sparsegpt_solve(
                unit.matrix.to(dev), hessian, counts[index], blocksize=int(blocksize), damp=float(damp), nm=nm
            )
            unit.matrix.copy_(new.to(device=unit.matrix.device, dtype=unit.matrix.dtype))
            unit.nnz = int(torch.count_nonzero(unit.matrix))
            weight = unit.extra.get("write_back")
            if weight is not None:  # a unit pruned on a copy: the next layer's inputs must see it
                weight.copy_(unit.matrix.reshape(weight.shape))
    out: dict[str, Any] = {"allocation": alloc, "score": "sparsegpt", "blocksize": int(blocksize), "damp": float(damp)}
    if pattern is not None:
        out["pattern"] = pattern
    return out
