"""Chapter 6's figures: analysis time per tool, and multiply-adds and latency of pruned models."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from rmtlib.errors import InputError
from rmtlib.plots.layout import book_figure

MARKERS = {"rmt_lowrank": "o", "svd": "s", "magnitude": "^"}


def plot_analysis_times(timing: pd.DataFrame) -> plt.Figure:
    """Seconds to analyse every matrix, one bar per (model, tool) with its value written beside it (log x).

    ``timing``: :func:`rmtlib.experiments.cost.analysis_times` rows with ``model``, ``tool`` and
    ``seconds``; tools that did not run (NaN seconds) are left out.
    """
    data = timing.dropna(subset=["seconds"])
    if data.empty:
        raise InputError("plot_analysis_times: no tool has a measured time (every 'seconds' is NaN)")
    models = list(dict.fromkeys(data["model"]))
    tools = list(dict.fromkeys(data["tool"]))
    fig, ax = book_figure(1, height=max(2.7, 1.2 + 0.45 * len(data)))
    h = 0.8 / len(tools)
    for j, tool in enumerate(tools):
        rows = data[data["tool"] == tool].set_index("model").reindex(models)
        y = np.arange(len(models)) + (j - (len(tools) - 1) / 2) * h
        bars = ax.barh(y, rows["seconds"], height=h * 0.9, color=f"C{j}", label=tool)
        ax.bar_label(bars, labels=[f"{s:.2f} s" if np.isfinite(s) else "" for s in rows["seconds"]], padding=3)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a short range would label every minor tick, overlapping
    ax.set_xlim(data["seconds"].min() / 3, data["seconds"].max() * 8)  # room for the labels
    ax.set_yticks(np.arange(len(models)), models)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("seconds to analyse every weight matrix (log scale; lower is better)")
    fig.legend(loc="outside lower center", ncols=len(tools), frameon=False)
    return fig


def plot_pruned_costs(costs: pd.DataFrame, *, noise: float | None = None) -> plt.Figure:
    """Multiply-adds (left) and latency (right) of each pruned model relative to the dense one.

    ``costs``: :func:`rmtlib.experiments.cost.pruned_costs`. Both panels share the y-range. Methods
    are drawn with their own marker and a small sideways offset, so a method on top of another
    (``rmt_lowrank`` under ``svd``) stays visible; each point's value is written beside it. ``noise``:
    the timing scatter to shade around 1 on the latency panel (e.g. the largest deviation from 1
    of the ``magnitude`` control, which saves no work).
    """
    runs = costs[costs["method"] != "dense"]
    if runs.empty:
        raise InputError("plot_pruned_costs: no pruned model in costs (only 'dense' rows)")
    methods = list(dict.fromkeys(runs["method"]))
    fig, axes = book_figure(2, height=3.4, sharey=True)
    top = max(1.15, float(runs[["macs_ratio", "latency_ratio"]].max().max()) * 1.08)
    offsets = np.linspace(-1.5, 1.5, len(methods)) if len(methods) > 1 else [0.0]
    for ax, column, label in [
        (axes[0], "macs_ratio", "multiply-adds, pruned / dense"),
        (axes[1], "latency_ratio", "latency, pruned / dense"),
    ]:
        ax.axhline(1.0, color="0.4", ls="--", lw=1, label="dense model")
        ax.plot([0, 100], [1, 0], color="0.6", ls=":", lw=1, label="in proportion to parameters")
        if column == "latency_ratio" and noise is not None and np.isfinite(noise):
            ax.axhspan(1 - noise, 1 + noise, color="0.85", zorder=0, label="timing scatter (control)")
        for i, method in enumerate(methods):
            rows = runs[runs["method"] == method].sort_values("sparsity")
            x = 100 * rows["sparsity"].to_numpy() + offsets[i]
            ax.plot(x, rows[column], marker=MARKERS.get(method, "D"), color=f"C{i}", label=method, ms=6)
            for xx, value in zip(x, rows[column]):
                ax.annotate(
                    f"{value:.2f}",
                    (xx, value),
                    xytext=(0, 7 if i % 2 == 0 else -13),
                    textcoords="offset points",
                    ha="center",
                    fontsize=9,
                    color=f"C{i}",
                )
        ax.set_xlim(0, 100)
        ax.set_ylim(0, top)
        ax.set_xlabel("parameter reduction (%)")
        ax.set_ylabel(label)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    return fig
