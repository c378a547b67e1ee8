"""Figures: a layer's eigenvalue histogram with its MP fit, a grid over layers, depth summaries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rmtlib.atomic import atomic_path  # noqa: E402
from rmtlib.spectral.fit import MPFit  # noqa: E402
from rmtlib.theory.mp import mp_edges, mp_pdf  # noqa: E402

__all__ = ["plot_esd", "plot_esd_grid", "plot_depth_summary", "save_figure", "auto_bins"]


def auto_bins(count: int, most: int = 80) -> int:
    """Histogram bins for ``count`` eigenvalues: about 2 sqrt(count), 8 to ``most``, so that a small
    layer's histogram has no empty gaps between bars (80 bins for 16 values did)."""
    return int(min(most, max(8, round(2 * math.sqrt(max(count, 1))))))


def plot_esd(fit: MPFit, ax: plt.Axes | None = None, *, title: str | None = None, bins: int | None = None) -> plt.Axes:
    """Histogram of the eigenvalues s^2/N with the fitted MP density and the TW edge marked
    (``bins``: default :func:`auto_bins` of the number of eigenvalues)."""
    ax = ax or plt.figure(figsize=(5, 3.4)).gca()
    eig = fit.eigenvalues
    bins = auto_bins(len(eig)) if bins is None else bins
    if not fit.ok:
        ax.hist(eig, bins=bins, density=True, color="0.6")
        ax.set_title(f"{title or ''} ({fit.status})")
        return ax
    _, upper = mp_edges(fit.ratio, fit.sigma2)
    x_max = max(float(fit.lambda_plus) * 1.6, float(np.quantile(eig, 0.98)) * 1.1)
    bulk = eig[eig <= x_max]
    ax.hist(bulk, bins=bins, density=True, color=sns.color_palette()[0], alpha=0.55, label="eigenvalues $s_i^2/N$")
    grid = np.linspace(0.0, upper * 1.02, 600)
    # the histogram shows only the eigenvalues up to x_max; scale the density to the same mass
    mass = len(bulk) / len(eig)
    ax.plot(
        grid,
        mp_pdf(grid, fit.ratio, fit.sigma2) / mass,
        color="C3",
        lw=1.8,
        label=rf"MP fit, $\sigma^2$={fit.sigma2:.3g}",
    )
    ax.axvline(fit.lambda_plus, color="k", ls="--", lw=1.2, label=rf"edge $\lambda_+$ ({fit.n_spikes} spikes)")
    ax.set_xlim(0, x_max)
    ax.set_xlabel(r"eigenvalue $\lambda = s^2/N$")
    ax.set_ylabel("density")
    ax.set_title(title or f"{fit.m}x{fit.n}, $\\gamma$={fit.gamma:.3f}, $\\mu$={fit.mu:.3f}", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    return ax


def plot_esd_grid(
    fits: Sequence[tuple[str, MPFit]],
    *,
    ncols: int = 4,
    panel: tuple[float, float] = (3.6, 2.6),
    title: str | None = None,
) -> plt.Figure:
    """One :func:`plot_esd` panel per (name, fit), in a grid; ``title`` (e.g. model and checkpoint) on top."""
    nrows = max(1, math.ceil(len(fits) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False, layout="constrained"
    )  # constrained: room for the titles and the figure's title (tight_layout let them overlap)
    for ax, (name, fit) in zip(axes.flat, fits):
        plot_esd(fit, ax, title=name)
        ax.title.set_fontsize(8)
        ax.legend().set_visible(False)
        ax.set_xlabel(r"$\lambda = s^2/N$", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # few ticks: long labels (1e-3 scales) overlapped
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.xaxis.get_offset_text().set_fontsize(7)
    for ax in list(axes.flat)[len(fits) :]:
        ax.set_axis_off()
    fig.supxlabel(r"eigenvalue $s^2/N$ (dashed: Tracy-Widom edge; red: MP fit)")
    if title:
        fig.suptitle(title)
    return fig


def plot_depth_summary(table: pd.DataFrame, *, title: str | None = None) -> plt.Figure:
    """gamma (bulk fraction) and number of spikes against depth, one line per layer role."""
    data = table[table["status"] == "ok"].copy()
    data["role"] = data["layer"].str.replace(r"^.*?\d+\.", "", regex=True)
    data["depth"] = data["block"].fillna(-1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0))
    sns.lineplot(data=data, x="depth", y="gamma", hue="role", marker="o", ax=axes[0])
    sns.lineplot(data=data, x="depth", y="n_spikes", hue="role", marker="o", ax=axes[1], legend=False)
    axes[0].set_ylabel(r"$\gamma$ (fraction of singular values in the MP bulk)")
    axes[1].set_ylabel("spikes above the edge")
    for ax in axes:
        ax.set_xlabel("block (-1: outside the blocks)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))  # spikes are counts
    if axes[0].get_legend() is not None:
        axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG (creating folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a whole figure or none, even when interrupted
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path
