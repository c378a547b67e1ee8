"""Figures of a pruning sweep: top-1 against sparsity, drop from dense per level, spectra before/after,
per-layer sparsity."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rmtlib.errors import InputError
from rmtlib.plots.spectra import plot_esd


def plot_sweep(
    results: pd.DataFrame,
    ax: Any = None,
    *,
    value: str = "top1_pruned",
    x: str = "sparsity",
    hue: str = "method",
    style: str | None = None,
    title: str | None = None,
    dense_line: bool = True,
    dashes: bool = False,
) -> Any:
    """Top-1 (``value``) against parameter reduction (``x``, in %), one curve per ``hue`` (and ``style``).

    Each curve starts at its model's dense top-1 at 0%; with ``dense_line`` the dense top-1 is also
    drawn as a dashed horizontal line. ``dashes``: a line pattern per ``style`` level (else markers only).
    """

    ax = ax or plt.figure(figsize=(6, 4)).gca()
    style = style or hue
    runs = results[results["method"] != "dense"].dropna(subset=[value]).copy()
    dense = results[results["method"] == "dense"]
    starts = []
    for _, group in runs.groupby([hue, style] if style != hue else [hue], sort=False):
        first = group.iloc[0]
        match = dense[dense["model"] == first["model"]] if "model" in dense else dense
        if len(match):
            starts.append({**first.to_dict(), value: float(match["top1_dense"].iloc[0]), x: 0.0})
    data = pd.concat([pd.DataFrame(starts), runs], ignore_index=True) if starts else runs
    data["x"] = 100.0 * data[x].astype(float)
    if len(data):
        sns.lineplot(
            data=data,
            x="x",
            y=value,
            hue=hue,
            style=style,
            markers=True,
            dashes=dashes,
            ax=ax,
            sort=True,
            errorbar=None,
        )
    if dense_line:
        for i, top1 in enumerate(dense["top1_dense"].drop_duplicates()):
            ax.axhline(top1, color="0.45", ls="--", lw=1, label="dense model" if i == 0 else None)
    labels = {
        "sparsity": "parameter reduction (% of the dense model's parameters)",
        "stored_reduction": "stored-parameter reduction (%)",
    }
    ylabels = {
        "top1_pruned": "top-1 (%), no fine-tuning",
        "top1_finetuned": "top-1 (%), after fine-tuning",
        "top1": "top-1 (%) as reported",
    }
    ax.set_xlabel(labels.get(x, x))
    ax.set_ylabel(ylabels.get(value, value))
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_esd_before_after(
    before: Mapping[str, Any], after: Mapping[str, Mapping[str, Any]], *, panel: tuple[float, float] = (3.6, 2.7)
) -> Any:
    """One row per layer: its ESD + MP fit before pruning, then after each method in ``after``."""

    layers = list(before)
    cols = 1 + len(after)
    fig, axes = plt.subplots(len(layers), cols, figsize=(panel[0] * cols, panel[1] * len(layers)), squeeze=False)
    for r, name in enumerate(layers):
        stages = [("dense", before[name])] + [(label, fits.get(name)) for label, fits in after.items()]
        for c, (label, fit) in enumerate(stages):
            ax = axes[r, c]
            if fit is None:
                ax.text(
                    0.5, 0.5, "no MP fit\n(matrix of too low rank)", ha="center", va="center", transform=ax.transAxes
                )
                ax.set_axis_off()
            else:
                plot_esd(fit, ax, title=f"{name}\n{label}")
                ax.title.set_fontsize(8)
                ax.legend(fontsize=6, frameon=False)
                ax.set_ylabel("density" if c == 0 else "")
    fig.tight_layout()
    return fig


def plot_layer_sparsity(tables: Mapping[str, pd.DataFrame], ax: Any = None, *, title: str | None = None) -> Any:
    """Per-layer sparsity (tables from :func:`rmtlib.nn.count.layer_sparsity`), layers in model order:
    where each method put its budget. Layers are categories, so each method is a row of markers (side by
    side within a layer's slot, one marker shape per method), not a line joining unrelated layers."""

    ax = ax or plt.figure(figsize=(9, 3.6)).gca()
    names: list[str] = []
    markers = "os^DvP<X>*"
    width = 0.7  # of a layer's slot shared by the methods
    step = width / max(1, len(tables))
    for i, (label, table) in enumerate(tables.items()):
        names = list(table["layer"])
        x = np.arange(len(table)) - width / 2 + step * (i + 0.5)
        y = 100.0 * table["sparsity"].to_numpy()
        ax.plot(x, y, linestyle="none", marker=markers[i % len(markers)], ms=4, label=label)
    for boundary in np.arange(len(names) - 1) + 0.5:
        ax.axvline(boundary, color="0.9", lw=0.6, zorder=0)
    short = [n.replace("blocks.", "b").replace(".attn", "").replace(".mlp", "") for n in names]
    ax.set_xticks(range(len(names)), short, rotation=90, fontsize=9)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("weights removed (% of the layer)")
    ax.set_ylim(-3, 103)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, frameon=False, loc="lower center", ncol=3)
    return ax


def plot_drop_by_level(
    table: pd.DataFrame,
    *,
    levels: Sequence[str] | None = None,
    ncols: int = 2,
    panel: tuple[float, float] = (3.45, 2.9),
    fontsize: float = 10,
    symlog: bool = True,
) -> plt.Figure:
    """Drop from dense top-1 (pp) per method, with its bootstrap interval, on one axis per level.

    ``table`` holds benchmark rows (:func:`rmtlib.experiments.prune_quality.benchmark_table`: a
    ``level`` column, ``drop_pp``, ``drop_low_pp``/``drop_high_pp``, ``reference``). Within a panel the
    methods are sorted by their drop, the reference is drawn in black and its drop as a dotted line;
    panels share no x scale (a 1-pp and a 50-pp level would hide each other). With ``symlog`` the
    x axis is linear up to 1 pp and logarithmic beyond, so a 0.3-pp gap stays visible beside a
    collapse of 80 pp.
    """
    runs = table[table["method"] != "dense"]
    levels = list(levels) if levels is not None else list(dict.fromkeys(runs["level"]))
    if not levels:
        raise InputError("plot_drop_by_level: no levels to draw")
    nrows = -(-len(levels) // ncols)
    width = min(ncols, len(levels))
    height = max(panel[1], 0.28 * runs.groupby("level").size().max() + 0.9)
    fig, axes = plt.subplots(nrows, width, figsize=(panel[0] * width, height * nrows), squeeze=False)
    for ax, level in zip(axes.flat, levels):
        group = runs[runs["level"] == level].sort_values("drop_pp", ascending=False)
        reference = group["reference"].dropna().iloc[0] if group["reference"].notna().any() else None
        y = np.arange(len(group))
        colors = ["black" if m == reference else "tab:blue" for m in group["method"]]
        ax.hlines(y, group["drop_low_pp"], group["drop_high_pp"], colors=colors, lw=1.6)
        ax.scatter(group["drop_pp"], y, c=colors, s=22, zorder=3)
        if reference is not None and (group["method"] == reference).any():
            ax.axvline(float(group.loc[group["method"] == reference, "drop_pp"].iloc[0]), color="0.3", ls=":", lw=1)
        ax.axvline(0.0, color="0.6", lw=0.8)
        ax.set_yticks(y, list(group["method"]), fontsize=fontsize - 1)
        sparsity = float(group["sparsity"].mean())
        title = level if level.endswith("%") else f"{level} ({100 * sparsity:.1f}% of parameters)"
        ax.set_title(title, fontsize=fontsize)
        if symlog:
            ax.set_xscale("symlog", linthresh=1.0, linscale=0.6)
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
            low, high = float(group["drop_low_pp"].min()), float(group["drop_high_pp"].max())
            ax.set_xlim(min(-0.5, 1.3 * low), max(2.0, 1.6 * high))  # room for the decade tick beyond the data
        ax.set_xlabel("drop from dense top-1 (pp)", fontsize=fontsize - 1)
        ax.tick_params(axis="x", labelsize=fontsize - 1)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(levels) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig
