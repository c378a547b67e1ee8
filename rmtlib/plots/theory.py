"""Figures for the theory chapter: MP densities, the Tracy-Widom edge, the BBP transition."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rmtlib.errors import InputError
from rmtlib.experiments.mp_checks import SpikedCase
from rmtlib.experiments.spiked import bbp_singular_value, bbp_threshold
from rmtlib.plots.layout import TEXT_WIDTH_IN
from rmtlib.plots.spectra import plot_esd
from rmtlib.spectral.fit import MPFit
from rmtlib.theory.mp import mp_edges, mp_pdf
from rmtlib.theory.tracy_widom import tw1_cdf, tw1_ppf

__all__ = [
    "plot_mp_densities",
    "plot_mp_check",
    "plot_mp_checks",
    "plot_tw_edge",
    "plot_spiked_esd",
    "plot_spiked_fits",
    "plot_bbp_transition",
]


def plot_mp_densities(ratios: Sequence[float], sigma2: float = 1.0, ax: plt.Axes | None = None) -> plt.Axes:
    """MP(c, sigma2) densities for several ratios c = p / N, edges marked."""
    ax = ax or plt.figure(figsize=(5.5, 3.6)).gca()
    colors = sns.color_palette("viridis", len(ratios))
    x_max = max(mp_edges(c, sigma2)[1] for c in ratios) * 1.05
    grid = np.linspace(1e-4, x_max, 2000)
    for c, color in zip(ratios, colors):
        ax.plot(grid, mp_pdf(grid, c, sigma2), color=color, lw=1.8, label=f"c = {c:g}")
        for edge in mp_edges(c, sigma2):
            ax.axvline(edge, color=color, ls=":", lw=0.9)
    ax.set_ylim(0, min(ax.get_ylim()[1], 2.5 / sigma2))
    ax.set_xlim(0, x_max)
    ax.set_xlabel(r"eigenvalue $\lambda = s^2/N$")
    ax.set_ylabel("MP density")
    ax.set_title(rf"Marchenko-Pastur law, $\sigma^2$ = {sigma2:g} (dotted: edges)", fontsize=10)
    ax.legend(frameon=False, fontsize=9)
    return ax


def plot_mp_check(
    eigenvalues: np.ndarray,
    ratio: float,
    sigma2: float,
    ax: plt.Axes | None = None,
    *,
    title: str | None = None,
    bins: int = 60,
) -> plt.Axes:
    """Histogram of a Gaussian matrix's eigenvalues s^2/N against the exact MP density."""
    ax = ax or plt.figure(figsize=(4, 3)).gca()
    lo, hi = mp_edges(ratio, sigma2)
    ax.hist(eigenvalues, bins=bins, density=True, color="C0", alpha=0.55, label="eigenvalues")
    grid = np.linspace(max(lo * 0.9, 1e-4), hi * 1.05, 800)
    ax.plot(grid, mp_pdf(grid, ratio, sigma2), color="C3", lw=1.6, label="MP density")
    ax.set_xlabel(r"$\lambda = s^2/N$")
    ax.set_ylabel("density")
    ax.set_ylim(0, min(ax.get_ylim()[1], 2.5 / sigma2))
    ax.set_title(title or f"c = {ratio:g}", fontsize=9)
    ax.legend(frameon=False, fontsize=9)
    return ax


def plot_mp_checks(spectra: Sequence[tuple[float, np.ndarray]], ks: Sequence[float], N: int) -> plt.Figure:
    """One :func:`plot_mp_check` panel per ``(ratio, eigenvalues)`` of
    :func:`rmtlib.experiments.mp_checks.mp_law_check`, two per row, each titled with its KS distance."""
    if not len(spectra) or len(spectra) != len(ks):
        raise InputError(f"plot_mp_checks: need one KS distance per spectrum, got {len(ks)} for {len(spectra)}")
    ncols = 2
    nrows = -(-len(spectra) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(TEXT_WIDTH_IN, 2.9 * nrows), squeeze=False)
    for ax, (ratio, eig), distance in zip(axes.flat, spectra, ks):
        plot_mp_check(eig, ratio, 1.0, ax, title=f"{N}x{len(eig)} (c = {ratio:g}), KS = {distance:.3f}")
    for ax in list(axes.flat)[len(spectra) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_tw_edge(
    scaled_top: np.ndarray, betas: Sequence[float] = (0.8, 0.1), ax: plt.Axes | None = None, *, title: str | None = None
) -> plt.Axes:
    """Scaled top noise eigenvalues against the TW1 density, with the fit's edge for each beta."""
    ax = ax or plt.figure(figsize=(TEXT_WIDTH_IN, 4.0)).gca()
    grid = np.linspace(-6.0, 4.0, 400)
    pdf = np.gradient(tw1_cdf(grid), grid)
    ax.hist(
        scaled_top,
        bins=30,
        density=True,
        color="C0",
        alpha=0.55,
        label=f"top eigenvalue, {len(scaled_top)} noise matrices",
    )
    ax.plot(grid, pdf, color="C3", lw=1.8, label="Tracy-Widom (β=1) density")
    for beta, ls in zip(betas, ["--", "-.", ":"]):
        t = float(tw1_ppf(1.0 - beta))
        ax.axvline(t, color="k", ls=ls, lw=1.1, label=rf"edge for $\beta$ = {beta:g} (t = {t:.2f})")
    ax.set_xlabel(r"$(\lambda_{\max}/\sigma^2 - (1+\sqrt{c})^2)\,/\,(N^{-2/3} c^{-1/6} (1+\sqrt{c})^{4/3})$")
    ax.set_ylabel("density")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.45)  # room above the histogram for the legend
    ax.set_title(title or "Fluctuations of the largest noise eigenvalue", fontsize=10)
    ax.legend(frameon=False, fontsize=9, loc="upper left")
    return ax


def plot_bbp_transition(table: pd.DataFrame) -> plt.Figure:
    """Two panels (one above the other) from :func:`rmtlib.experiments.spiked.bbp_detection`: detection rate
    and top singular value against the signal strength."""
    fig, (ax_rate, ax_top) = plt.subplots(2, 1, figsize=(TEXT_WIDTH_IN, 7.8))
    shapes = table[["m", "n"]].drop_duplicates().itertuples(index=False)
    shapes = list(shapes)
    colors = sns.color_palette("deep", len(shapes))
    styles = ["-", "--", ":", "-."]
    betas = sorted(table["beta"].unique(), reverse=True)
    for (m, n), color in zip(shapes, colors):
        sub = table[(table["m"] == m) & (table["n"] == n)]
        for beta, ls in zip(betas, styles):
            cur = sub[sub["beta"] == beta].sort_values("rel_strength")
            ax_rate.errorbar(
                cur["rel_strength"],
                cur["detection_rate"],
                yerr=cur["detection_se"],
                color=color,
                ls=ls,
                marker="o",
                ms=3,
                lw=1.3,
                capsize=2,
                label=rf"{m}x{n}, $\beta$={beta:g}",
            )
        cur = sub[sub["beta"] == betas[0]].sort_values("rel_strength")
        ax_top.errorbar(
            cur["rel_strength"],
            cur["top_over_edge"],
            yerr=cur["top_over_edge_sd"],
            color=color,
            marker="o",
            ms=3,
            lw=0,
            elinewidth=1,
            capsize=2,
            label=f"{m}x{n}, simulated",
        )
        fine = np.linspace(0, cur["rel_strength"].max(), 300)
        theory = bbp_singular_value(fine * bbp_threshold(m, n), m, n) / (np.sqrt(max(m, n)) + np.sqrt(min(m, n)))
        ax_top.plot(fine, theory, color=color, lw=1.2, alpha=0.8)
    for ax in (ax_rate, ax_top):
        ax.axvline(1.0, color="0.3", lw=1.2, ls="--")
        ax.set_xlabel(r"signal strength $\tau\,/\,\sigma (Np)^{1/4}$ (1 = BBP threshold)")
    ax_rate.set_ylabel("fraction of trials with a spike detected")
    ax_rate.set_ylim(-0.03, 1.03)
    ax_rate.set_title("Spike detection by the MP fit (BEMA + TW edge)", fontsize=10)
    ax_rate.legend(frameon=False, fontsize=9, ncol=2)
    ax_top.set_ylabel(r"top singular value / bulk edge $\sigma(\sqrt{N}+\sqrt{p})$")
    ax_top.set_title("Top singular value: simulation (dots) and BBP limit (lines)", fontsize=10)
    ax_top.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def plot_spiked_esd(
    fit: MPFit, predicted_sv: Sequence[float] | None = None, ax: plt.Axes | None = None, *, title: str | None = None
) -> plt.Axes:
    """:func:`rmtlib.plots.spectra.plot_esd` widened to show the spikes: found (triangles) and BBP-predicted (bars)."""
    ax = plot_esd(fit, ax, title=title)
    eig = fit.eigenvalues
    spikes = eig[fit.singular_values > fit.sv_edge]
    top = ax.get_ylim()[1]
    ax.plot(
        spikes, np.full(len(spikes), 0.05 * top), "v", color="C3", ms=7, label=f"found above the edge ({len(spikes)})"
    )
    right = float(eig.max())
    if predicted_sv is not None and len(predicted_sv):
        pred = np.asarray(predicted_sv, dtype=np.float64) ** 2 / fit.N
        ax.plot(pred, np.full(len(pred), 0.16 * top), "|", color="k", ms=14, mew=2, label="BBP prediction")
        right = max(right, float(pred.max()))
    ax.set_xlim(0, max(ax.get_xlim()[1], right * 1.08))
    ax.legend(fontsize=9, frameon=False, loc="upper right")
    return ax


def plot_spiked_fits(cases: Sequence[SpikedCase], beta: float) -> plt.Figure:
    """One :func:`plot_spiked_esd` panel per matrix of :func:`rmtlib.experiments.mp_checks.spiked_fit_check`,
    one above the other, with the fit at level ``beta``."""
    if not len(cases):
        raise InputError("plot_spiked_fits: no matrices to draw")
    fig, axes = plt.subplots(len(cases), 1, figsize=(TEXT_WIDTH_IN, 3.6 * len(cases)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases):
        if beta not in case.fits:
            raise InputError(f"plot_spiked_fits: no fit at beta = {beta:g}; fitted: {sorted(case.fits)}")
        m, n = case.shape
        title = f"{m}x{n}: {len(case.planted)} planted, {case.n_visible} above the threshold; edge for beta = {beta:g}"
        plot_spiked_esd(case.fits[beta], case.predicted_sv, ax, title=title)
    fig.tight_layout()
    return fig
