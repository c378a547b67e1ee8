"""What the method costs: spectral-analysis time against bare SVD and WeightWatcher, and the
inference latency and multiply-adds of pruned models against the dense one.

Timings are medians of repeated calls with the device synchronised around each call; calls of
the things compared are interleaved, so a change of load on a shared machine hits all alike.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.count import count_macs, count_params
from rmtlib.pruning import prune
from rmtlib.runtime import get_device
from rmtlib.spectral.analyze import analyze
from rmtlib.spectral.layers import layer_matrices

__all__ = ["timed", "weightwatcher_available", "analysis_times", "pruned_costs"]


def _sync(device: torch.device | str | None) -> None:
    """Wait for ``device``'s queued work: that GPU's, not only the current one's (cuda:1 is not cuda:0)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def timed(fn: Callable[[], Any], device: torch.device | str | None = None) -> float:
    """Wall seconds of one call of ``fn``, the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, device: Any, warmup: int = 1
) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def weightwatcher_available() -> bool:
    """Whether the optional WeightWatcher package (the ``bench`` extra) imports."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import weightwatcher  # noqa: F401
    except Exception:  # any import failure means it cannot be used here
        return False
    return True


def _weightwatcher_call(model: nn.Module) -> Callable[[], Any]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import weightwatcher as ww  # optional (bench extra): imported only when asked for
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)

    def run() -> Any:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return ww.WeightWatcher(model=model).analyze(mp_fit=True)

    return run


def analysis_times(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    repeats: int = 3,
    weightwatcher: bool = True,
    weightwatcher_repeats: int = 1,
) -> pd.DataFrame:
    """Seconds to analyse every weight matrix of ``model`` three ways.

    Rows (``tool``): ``rmtlib.analyze`` (MP fit per layer: BEMA, TW edge, gamma, mu, spikes),
    ``torch.linalg.svdvals`` (the singular values alone, float32, no fit: the floor any
    spectral method pays) and ``weightwatcher`` (``WeightWatcher.analyze(mp_fit=True)``, CPU; NaN
    with a note when the package is missing or ``weightwatcher=False``). Columns: tool, seconds
    (median), min_seconds, repeats, matrices, relative (seconds / rmtlib's), note.
    """

    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    matrices = [item.matrix.detach().to(dev) for item in layer_matrices(model)]
    if not matrices:
        raise InputError(f"model {type(model).__name__} has no Linear/Conv layers to analyse")

    def run_svdvals() -> None:
        for matrix in matrices:
            torch.linalg.svdvals(matrix)

    times = _interleaved(
        {"rmtlib.analyze": lambda: analyze(model, device=dev, progress=False), "torch.linalg.svdvals": run_svdvals},
        repeats,
        dev,
    )
    rows = [
        {"tool": "rmtlib.analyze", "note": f"float64 Gram eigenvalues + MP fit on {dev.type}"},
        {"tool": "torch.linalg.svdvals", "note": f"float32 singular values only, on {dev.type}"},
    ]
    for row in rows:
        t = times[row["tool"]]
        row.update(seconds=statistics.median(t), min_seconds=min(t), repeats=len(t))
    ww_row = {"tool": "weightwatcher", "seconds": np.nan, "min_seconds": np.nan, "repeats": 0}
    if not weightwatcher:
        ww_row["note"] = "skipped (weightwatcher=False)"
    elif not weightwatcher_available():
        ww_row["note"] = "not installed: pip install 'rmtlib[bench]' (weightwatcher==0.7.7)"
    else:
        cpu_model = model if dev.type == "cpu" else None
        if cpu_model is None:
            ww_row["note"] = "runs on the CPU copy of the model"

            cpu_model = copy.deepcopy(model).cpu()
        run = _weightwatcher_call(cpu_model)
        t = [timed(run) for _ in range(max(1, weightwatcher_repeats))]
        ww_row.update(seconds=statistics.median(t), min_seconds=min(t), repeats=len(t))
        ww_row.setdefault("note", "WeightWatcher 0.7.7 analyze(mp_fit=True), its own SVDs and power-law fits")
    rows.append(ww_row)
    out = pd.DataFrame(rows)
    out["matrices"] = len(matrices)
    out["relative"] = out["seconds"] / float(out.loc[0, "seconds"])
    return out[["tool", "seconds", "min_seconds", "repeats", "matrices", "relative", "note"]]


def pruned_costs(
    model: nn.Module,
    methods: Sequence[str],
    levels: Sequence[float],
    example: torch.Tensor,
    *,
    repeats: int = 7,
    device: str | torch.device | None = None,
    seed: int = 0,
    prune_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Parameters, multiply-adds and inference latency of ``model`` pruned by each method and level.

    ``example`` is the input batch timed (its first sample is used for MACs). Each of ``repeats``
    rounds times, for every pruned model, one dense and one pruned forward pass back to back
    (inference mode); ``latency_ratio`` is the median of these paired ratios, robust to the load of
    a shared machine changing between passes. ``latency_ms`` is a model's fastest pass and
    ``latency_median_ms`` its median. Columns: method, target, sparsity, stored_reduction,
    params_stored, params_nonzero, macs, macs_ratio, latency_ms, latency_median_ms, latency_ratio,
    batch, output_rel_error (relative change of the logits on ``example``), device.
    ``model`` itself is moved to ``device`` and put in eval mode; the pruned models are copies.
    """

    dev = get_device(device)
    model = model.to(dev).eval()
    example = example.to(dev)
    dense_counts = count_params(model)
    dense_macs = count_macs(model, example[:1])
    with torch.inference_mode():
        reference = model(example).float()
    rows = [dict(method="dense", target=0.0, model=model)]
    for method in methods:
        for level in levels:
            pruned = prune(
                model, method, sparsity=float(level), seed=seed, device=dev, fit=False, **dict(prune_options or {})
            ).model
            rows.append(dict(method=method, target=float(level), model=pruned.to(dev).eval()))
    with torch.inference_mode():
        times, ratios = _paired_times([row["model"] for row in rows], example, repeats, dev)
        out = []
        for i, row in enumerate(rows):
            m = row["model"]
            counts = count_params(m)
            macs = count_macs(m, example[:1])
            err = float((m(example).float() - reference).norm() / reference.norm())
            out.append(
                dict(
                    method=row["method"],
                    target=row["target"],
                    sparsity=1.0 - counts["nonzero"] / dense_counts["dense"],
                    stored_reduction=1.0 - counts["stored"] / dense_counts["dense"],
                    params_stored=counts["stored"],
                    params_nonzero=counts["nonzero"],
                    macs=macs,
                    macs_ratio=macs / dense_macs,
                    latency_ms=1e3 * min(times[i]),
                    latency_median_ms=1e3 * statistics.median(times[i]),
                    latency_ratio=statistics.median(ratios[i]),
                    batch=int(example.shape[0]),
                    output_rel_error=err,
                    device=str(dev),
                )
            )
    return pd.DataFrame(out)


def _paired_times(
    models: list[nn.Module], example: torch.Tensor, repeats: int, device: Any
) -> tuple[list[list[float]], list[list[float]]]:
    """Per model, its pass times and the ratios to a dense pass (``models[0]``) timed just before it.

    Each repeat times, for every pruned model, the dense model and then the pruned one back to back,
    so both see the same load; the median of these paired ratios is robust to load changes that a
    ratio of separately taken minima or medians is not.
    """
    dense = models[0]
    for m in models:  # warm-up
        m(example)
    times: list[list[float]] = [[] for _ in models]
    ratios: list[list[float]] = [[1.0]] + [[] for _ in models[1:]]
    for _ in range(repeats):
        for i, m in enumerate(models[1:], start=1):
            t_dense = timed(lambda: dense(example), device)
            t_pruned = timed(lambda: m(example), device)
            times[0].append(t_dense)
            times[i].append(t_pruned)
            ratios[i].append(t_pruned / t_dense)
    if len(models) == 1:
        times[0] = [timed(lambda: dense(example), device) for _ in range(repeats)]
    return times, ratios
