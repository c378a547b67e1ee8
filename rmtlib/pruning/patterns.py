"""Semi-structured N:M sparsity: in each group of M consecutive input weights of a row, N are kept.

``"2:4"`` is the pattern sparse tensor cores accelerate (NVIDIA Ampere and later). The groups run
along the columns of the unit's matrix (a convolution's unfolded C_in * kernel inputs), so M must
divide the layer's input size.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

from rmtlib.errors import InputError
from rmtlib.pruning.common import Unit

__all__ = ["parse_pattern", "check_pattern", "nm_mask"]

_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(pattern: object, method: str = "pattern") -> tuple[int, int]:
    """``"N:M"`` -> (N, M) with 1 <= N < M; an :class:`InputError` naming ``pattern`` otherwise."""
    match = _PATTERN.match(pattern) if isinstance(pattern, str) else None
    if match is None:
        raise InputError(f"{method}: pattern must be 'N:M' (e.g. '2:4'), got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m:
        raise InputError(f"{method}: pattern {pattern!r} needs 1 <= N < M (N weights kept of each M)")
    return n, m


def check_pattern(units: Sequence[Unit], pattern: str, method: str = "pattern") -> tuple[int, int]:
    """(N, M) of ``pattern``, after checking that M divides every unit's input size (the layer named)."""
    n, m = parse_pattern(pattern, method)
    for unit in units:
        if unit.n % m:
            raise InputError(
                f"{method}: pattern {pattern!r}: layer {unit.name} has {unit.n} inputs, not a multiple of M = {m}"
            )
    return n, m


def nm_mask(keys: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask (True = prune) of the M - N smallest ``keys`` in each group of M consecutive entries of
    each row (ties: lowest index first). ``keys`` is rows x cols with cols a multiple of M."""
    rows, cols = keys.shape
    groups = keys.reshape(rows, cols // m, m)
    order = torch.sort(groups, dim=-1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(m, device=keys.device).expand_as(order))
    return (ranks < m - n).reshape(rows, cols)
