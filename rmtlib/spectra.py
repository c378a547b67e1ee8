"""Per-layer spectral analysis of a torch model: one MP fit per weight matrix, as a table."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import InputError
from .fit import MIN_DIM, MPFit, fit_mp
from .layers import layer_matrices

__all__ = ["analyze", "layer_fits", "COLUMNS"]

COLUMNS = [
    "layer", "kind", "block", "m", "n", "params", "ratio", "sigma2", "lambda_plus", "sv_edge",
    "gamma", "mu", "n_spikes", "status",
]

_EIG_CHUNK = 16


def _block_index(name: str) -> float:
    """The first integer in a module path (``blocks.3.mlp.fc1`` -> 3), NaN when there is none."""
    match = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return float(match.group(1)) if match else float("nan")


def layer_fits(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    split_qkv: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    alpha: float = 0.25,
    beta: float = 0.8,
    min_dim: int = MIN_DIM,
    progress: bool = True,
) -> list[tuple[str, str, tuple[int, int], MPFit | None, str]]:
    """MP fits of every analysable matrix: a list of (layer, kind, (m, n), fit or None, status).

    Each matrix is copied to ``device`` in float64 and reduced to its p x p Gram matrix there;
    Gram matrices of equal size are diagonalised in batches. The model itself is never moved
    or modified. NaN/Inf weights raise :class:`InputError` naming the layer; an all-zero
    matrix is reported with status ``all_zero``.
    """
    dev = torch.device(device) if device is not None else None
    items = list(layer_matrices(model, split_qkv=split_qkv, include=include, exclude=exclude))
    if not items:
        raise InputError(f"model {type(model).__name__} has no Linear/Conv layers to analyse (include={include}, exclude={exclude})")
    grams: dict[int, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    shapes: list[tuple[int, int]] = []
    with torch.no_grad():
        for index, item in enumerate(tqdm(items, desc="gram", disable=not progress, leave=False)):
            mat = item.matrix
            if not mat.is_floating_point():
                raise InputError(f"layer {item.name}: weight dtype {mat.dtype} is not floating point")
            mat = mat.to(device=dev if dev is not None else mat.device, dtype=torch.float64)
            if not bool(torch.isfinite(mat).all()):
                raise InputError(f"layer {item.name}: weight contains NaN or Inf entries")
            shapes.append(tuple(mat.shape))
            gram = mat @ mat.T if mat.shape[0] <= mat.shape[1] else mat.T @ mat
            grams[gram.shape[0]].append((index, gram))
        singular: dict[int, np.ndarray] = {}
        for group in grams.values():
            for start in range(0, len(group), _EIG_CHUNK):
                chunk = group[start : start + _EIG_CHUNK]
                eig = torch.linalg.eigvalsh(torch.stack([g for _, g in chunk])).cpu().numpy()
                for (index, _), values in zip(chunk, eig):
                    singular[index] = np.sqrt(np.clip(values[::-1], 0.0, None)).copy()
    out = []
    for index, item in enumerate(items):
        sv = singular[index]
        if not np.any(sv > 0):
            out.append((item.name, item.kind, shapes[index], None, "all_zero"))
            continue
        fit = fit_mp(sv, shape=shapes[index], alpha=alpha, beta=beta, name=item.name, min_dim=min_dim)
        out.append((item.name, item.kind, shapes[index], fit, fit.status))
    return out


def analyze(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    split_qkv: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    alpha: float = 0.25,
    beta: float = 0.8,
    min_dim: int = MIN_DIM,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit MP to every Linear/Conv weight of ``model``; one row per analysed matrix.

    Columns: layer, kind, block (depth index parsed from the name), m, n, params, ratio,
    sigma2, lambda_plus, sv_edge, gamma, mu, n_spikes, status (``ok``, ``too_small``,
    ``all_zero``). Layers that could not be fitted have NaN metrics. See :func:`layer_fits`.
    """
    rows = []
    nan = float("nan")
    for name, kind, (m, n), fit, status in layer_fits(
        model, device=device, split_qkv=split_qkv, include=include, exclude=exclude,
        alpha=alpha, beta=beta, min_dim=min_dim, progress=progress,
    ):
        ok = fit is not None and fit.ok
        rows.append({
            "layer": name, "kind": kind, "block": _block_index(name), "m": m, "n": n, "params": m * n,
            "ratio": min(m, n) / max(m, n),
            "sigma2": fit.sigma2 if ok else nan, "lambda_plus": fit.lambda_plus if ok else nan,
            "sv_edge": fit.sv_edge if ok else nan, "gamma": fit.gamma if ok else nan,
            "mu": fit.mu if ok else nan, "n_spikes": fit.n_spikes if ok else 0, "status": status,
        })
    return pd.DataFrame(rows, columns=COLUMNS)
