"""Per-layer spectral analysis of a torch model: one MP fit per weight matrix, as a table."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.runtime import resolve_device
from rmtlib.spectral.fit import MPFit, count_zero_lines, fit_mp
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.spectral.gram import gram_eigenvalues, singular_from_eigenvalues
from rmtlib.spectral.layers import layer_matrices

__all__ = ["analyze", "layer_fits", "fits_table", "COLUMNS"]

COLUMNS = [
    "layer",
    "kind",
    "block",
    "m",
    "n",
    "params",
    "ratio",
    "sigma2",
    "lambda_plus",
    "sv_edge",
    "gamma",
    "mu",
    "n_spikes",
    "status",
    "poor_fit",
]


#: one analysed matrix: (layer, kind, (m, n), its MP fit or None, status)
LayerFit = tuple[str, str, tuple[int, int], MPFit | None, str]


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
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    progress: bool = True,
    host_workers: int | None = None,
) -> list[tuple[str, str, tuple[int, int], MPFit | None, str]]:
    """MP fits of every analysable matrix: a list of (layer, kind, (m, n), fit or None, status).

    Each matrix is copied to ``device`` in float64 and reduced to its p x p Gram matrix there,
    whose eigenvalues come from :func:`rmtlib.spectral.gram.gram_eigenvalues` (CPU threads, and the GPU
    too on CUDA; ``host_workers`` sets the CPU threads). The model is never moved or modified.
    NaN/Inf weights raise :class:`InputError` naming the layer; an all-zero matrix is reported
    with status ``all_zero``.
    """
    if not isinstance(model, nn.Module):  # a state dict passed by mistake was an AttributeError
        raise InputError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
            + (
                " (a state dict? load it into its model first: rmtlib.create_model(name, checkpoint=PATH))"
                if isinstance(model, dict)
                else ""
            )
        )
    check_fit_config(fit_config)  # before the eigenvalues, which can take minutes
    device = resolve_device(device)
    items = list(layer_matrices(model, split_qkv=split_qkv, include=include, exclude=exclude))
    if not items:
        raise InputError(
            f"model {type(model).__name__} has no Linear/Conv layers to analyse (include={include}, exclude={exclude})"
        )
    for item in items:
        if not item.matrix.is_floating_point():
            raise InputError(f"layer {item.name}: weight dtype {item.matrix.dtype} is not floating point")
    eigenvalues = gram_eigenvalues(
        [item.matrix for item in items],
        [item.name for item in items],
        device=device,
        host_workers=host_workers,
        progress=progress,
        desc="eigenvalues",
    )
    shapes = [(int(item.matrix.shape[0]), int(item.matrix.shape[1])) for item in items]
    singular = [singular_from_eigenvalues(values) for values in eigenvalues]
    out = []
    for index, item in enumerate(items):
        sv = singular[index]
        if not np.any(sv > 0):
            out.append((item.name, item.kind, shapes[index], None, "all_zero"))
            continue
        fit = fit_mp(
            sv,
            shape=shapes[index],
            fit_config=fit_config,
            name=item.name,
            zero_lines=count_zero_lines(item.matrix),
        )
        out.append((item.name, item.kind, shapes[index], fit, fit.status))
    return out


def analyze(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    split_qkv: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    progress: bool = True,
    host_workers: int | None = None,
) -> pd.DataFrame:
    """Fit MP to every Linear/Conv weight of ``model``; one row per analysed matrix.

    Columns: layer, kind, block (depth index parsed from the name), m, n, params, ratio,
    sigma2, lambda_plus, sv_edge, gamma, mu, n_spikes, status (``ok``, ``too_small``,
    ``rank_deficient``: zeros reach the fit's central window, ``all_zero``), poor_fit (fitted, but
    mu above :func:`rmtlib.spectral.fit.poor_fit_threshold`); ratio is that of the fitted matrix
    (all-zero rows and columns dropped, see :func:`rmtlib.fit_mp`). Layers that could not be fitted
    have NaN metrics. ``host_workers``: CPU threads for the eigenvalues (default: torch's thread
    count; on a GPU, 0 keeps all the work there).
    ``fit_config``: the MP fit settings (:class:`rmtlib.FitConfig`; default the paper's).
    See :func:`layer_fits`.
    """
    fits = layer_fits(
        model,
        device=device,
        split_qkv=split_qkv,
        include=include,
        exclude=exclude,
        fit_config=fit_config,
        progress=progress,
        host_workers=host_workers,
    )
    return fits_table(fits)


def fits_table(fits: Sequence[LayerFit]) -> pd.DataFrame:
    """The :func:`analyze` table of fits already computed by :func:`layer_fits`, so a caller that
    also needs the fits themselves (their singular values, for plots) computes each spectrum once."""
    rows = []
    nan = float("nan")
    for name, kind, (m, n), fit, status in fits:
        ok = fit is not None and fit.ok
        rows.append(
            {
                "layer": name,
                "kind": kind,
                "block": _block_index(name),
                "m": m,
                "n": n,
                "params": m * n,
                "ratio": fit.ratio if fit is not None else min(m, n) / max(m, n),
                "sigma2": fit.sigma2 if ok else nan,
                "lambda_plus": fit.lambda_plus if ok else nan,
                "sv_edge": fit.sv_edge if ok else nan,
                "gamma": fit.gamma if ok else nan,
                "mu": fit.mu if ok else nan,
                "n_spikes": fit.n_spikes if ok else 0,
                "status": status,
                "poor_fit": bool(ok and fit.poor_fit),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
