"""Figures of the theorem chapters: spectra during training (T2), loss vs randomness (T1), planted slack.

Chapter 3's tables are here too (``*_view``, ``*_views``): each a :func:`rmtlib.plots.layout.book_table`
with headers in words, the decimals its numbers deserve (L2 strengths as written, losses to the digits
that differ, fractions of samples as percentages) and no bare index.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from pandas.io.formats.style import Styler  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.plots.layout import TEXT_WIDTH_IN, book_table  # noqa: E402
from rmtlib.plots.spectra import plot_esd  # noqa: E402
from rmtlib.spectral.fit import MPFit  # noqa: E402

__all__ = [
    "plot_decay",
    "plot_bulk_vs_control",
    "plot_stationary",
    "plot_loss_paths",
    "plot_theta_paths",
    "plot_noise_paths",
    "plot_planted_slack",
    "plot_planted_theta",
    "plot_singular_values",
    "plot_before_after",
    "METRIC_LABELS",
    "splits_view",
    "accuracy_view",
    "monotonicity_view",
    "certificate_views",
    "slack_views",
    "estimated_split_view",
]

METRIC_LABELS = {
    "sigma2": r"BEMA $\sigma^2$",
    "sv_edge": r"edge $s_+$",
    "gamma": r"bulk fraction $\gamma$",
    "bulk_energy": r"bulk energy $\sum_{s_i \leq s_+} s_i^2$",
    "n_spikes": "spikes above the edge",
    "spike_energy": r"spike energy $\sum_{s_i > s_+} s_i^2$",
}


_PANEL_TITLES = {"bulk_energy": r"bulk energy (below the edge $s_+$)", "spike_energy": "spike energy (above the edge)"}


def _decay_legend(fig: plt.Figure, handles: list, labels: list[str]) -> None:
    """One legend below the panels, a column per group: L2 strengths, widths, data-free twins."""
    blank = plt.Line2D([], [], linestyle="none")
    groups: dict[str, list] = {"L2 strength": [], "width N": [], "penalty only (no data)": []}
    current = "L2 strength"
    for handle, label in zip(handles, labels):
        if label in ("l2 strength", "width N"):  # seaborn's group titles
            current = "L2 strength" if label == "l2 strength" else "width N"
        elif label.endswith(", penalty only (no data)"):
            groups["penalty only (no data)"].append((handle, "L2 = " + label.split(",")[0]))
        else:
            groups[current].append((handle, label))
    columns = [[(blank, title), *entries] for title, entries in groups.items() if entries]
    rows = max(len(column) for column in columns)
    flat = [entry for column in columns for entry in column + [(blank, "")] * (rows - len(column))]
    fig.legend(*zip(*flat), loc="outside lower center", ncol=len(columns), fontsize=9, frameon=False)


def plot_decay(
    spectra: pd.DataFrame,
    layer: str,
    metrics: Sequence[str] = ("sigma2", "sv_edge", "gamma", "bulk_energy"),
    *,
    relative: bool = True,
    title: str | None = None,
) -> plt.Figure:
    """One panel per metric for ``layer``: value per epoch (relative to epoch 0 with ``relative``),
    colour = L2 strength, line style = width; two panels per row at the book's text width, the
    legend below them. Expects the columns of
    ``run_decay_experiment``; with its data-free twins (``control=True``) each L2 strength also gets
    a dotted line of its colour, the same penalty and optimizer without data (the same for every
    width once divided by the value at initialisation, so the narrowest width's twin is drawn)."""
    twins = None
    if "run" in spectra.columns:
        twins = spectra[(spectra["run"] == "data-free") & (spectra["layer"] == layer) & (spectra["status"] == "ok")]
        spectra = spectra[spectra["run"] == "trained"]
    data = spectra[(spectra["layer"] == layer) & (spectra["status"] == "ok")].copy()
    if data.empty:
        raise InputError(f"plot_decay: no fitted rows for layer {layer!r}")
    names = [f"{v:g}" for v in sorted(data["l2"].unique())]
    palette = dict(zip(names, sns.color_palette("viridis", len(names))))
    data["l2 strength"] = data["l2"].map(lambda v: f"{v:g}")
    data["width N"] = data["width"].astype(str)
    rows = -(-len(metrics) // 2)
    fig, grid = plt.subplots(rows, 2, figsize=(TEXT_WIDTH_IN, 2.9 * rows + 1.3), squeeze=False, layout="constrained")
    axes = [list(grid.flat)[: len(metrics)]]
    for ax in list(grid.flat)[len(metrics) :]:
        ax.set_axis_off()
    for ax, metric in zip(axes[0], metrics):
        y = metric
        if relative and metric != "gamma":
            start = data[data["epoch"] == 0].set_index(["width", "l2"])[metric]
            data[f"{metric}_rel"] = (
                data[metric] / start.reindex(pd.MultiIndex.from_frame(data[["width", "l2"]])).to_numpy()
            )
            y = f"{metric}_rel"
        sns.lineplot(
            data=data,
            x="epoch",
            y=y,
            hue="l2 strength",
            hue_order=names,
            palette=palette,
            style="width N",
            marker="o",
            markersize=4,
            ax=ax,
            legend=ax is axes[0][-1],
        )
        if twins is not None and not twins.empty:
            for l2, group in twins.groupby("l2", sort=True):
                twin = group[group["width"] == group["width"].min()].sort_values("epoch")
                values = twin[metric].to_numpy(dtype=float)
                if relative and metric != "gamma":
                    values = values / values[0]
                ax.plot(
                    twin["epoch"],
                    values,
                    ls=":",
                    lw=2.2,
                    color=palette.get(f"{l2:g}", "0.4"),
                    label=f"{l2:g}, penalty only (no data)",
                )
        ax.set_title(_PANEL_TITLES.get(metric, METRIC_LABELS.get(metric, metric)), fontsize=10)
        ax.set_ylabel("relative to initialisation" if y != metric else "value", fontsize=10)
        ax.set_xlabel("epoch (0 = initialisation)")
        if relative and metric == "bulk_energy":
            ax.set_yscale("log")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].get_legend().remove()
    _decay_legend(fig, handles, labels)
    fig.suptitle(title or f"layer {layer}", fontsize=11)
    return fig


def plot_bulk_vs_control(spectra: pd.DataFrame, layer: str, width: int | None = None) -> plt.Figure:
    """Left: bulk energy over its value at initialisation per epoch (log scale), trained (solid) against
    its data-free twin (dashed, same colour: the same penalty and optimizer without data), one colour
    per L2 strength. Right: spike energy (sum of s_i^2 above the edge) per epoch, same styles.
    Expects ``run_decay_experiment(..., control=True)`` spectra; ``width`` defaults to the largest."""
    if "run" not in spectra.columns:
        raise InputError("plot_bulk_vs_control needs spectra from run_decay_experiment(..., control=True)")
    data = spectra[(spectra["layer"] == layer) & (spectra["status"] == "ok")]
    if data.empty:
        raise InputError(f"plot_bulk_vs_control: no fitted rows for layer {layer!r}")
    width = int(data["width"].max()) if width is None else int(width)
    data = data[data["width"] == width]
    if data.empty:
        raise InputError(f"plot_bulk_vs_control: no rows for width {width}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, 4.0), layout="constrained")
    strengths = sorted(data["l2"].unique())
    colors = dict(zip(strengths, sns.color_palette("viridis", len(strengths))))
    for (l2, run), group in data.groupby(["l2", "run"], sort=True):
        group = group.sort_values("epoch")
        style = "-" if run == "trained" else "--"
        label = f"L2 = {l2:g}, " + ("trained on data" if run == "trained" else "penalty only (no data)")
        bulk = group["bulk_energy"].to_numpy() / group["bulk_energy"].iloc[0]
        left.plot(group["epoch"], bulk, style, color=colors[l2], marker="o", ms=3, label=label)
        right.plot(group["epoch"], group["spike_energy"], style, color=colors[l2], marker="o", ms=3, label=label)
    left.set_yscale("log")
    left.set_ylabel("bulk energy / value at init", fontsize=10)
    right.set_ylabel("spike energy (above the edge)", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("epoch (0 = initialisation)")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"layer {layer}, N = {width}", fontsize=11)
    return fig


def plot_stationary(runs: pd.DataFrame, layer: str) -> plt.Figure:
    """From :func:`rmtlib.experiments.randomness.stationary_run` rows (several L2 strengths stacked):
    left, the gradient norm of the regularized loss over its initial value per L-BFGS iteration; right,
    the layer's bulk energy (solid) and spike energy (dashed) on the same iterations, log scales."""
    data = runs[(runs["layer"] == layer) & (runs["status"] == "ok")]
    if data.empty:
        raise InputError(f"plot_stationary: no fitted rows for layer {layer!r}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, 3.8), layout="constrained")
    strengths = sorted(data["l2"].unique())
    colors = dict(zip(strengths, sns.color_palette("viridis", len(strengths))))
    for l2, group in data.groupby("l2", sort=True):
        group = group.sort_values("iteration")
        x = group["iteration"].to_numpy() + 1
        left.loglog(x, group["grad_norm_rel"], "-o", color=colors[l2], ms=3, label=f"L2 = {l2:g}")
        right.loglog(x, group["bulk_energy"], "-o", color=colors[l2], ms=3, label=f"bulk, L2 = {l2:g}")
        right.loglog(
            x,
            group["spike_energy"].where(group["spike_energy"] > 0),
            "--s",
            color=colors[l2],
            ms=3,
            label=f"spikes, L2 = {l2:g}",
        )
    left.set_ylabel(r"gradient norm $\|\nabla L\|$ / value at init", fontsize=10)
    right.set_ylabel(r"energy $\sum s_i^2$ (bulk: below $s_+$)", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("L-BFGS iteration + 1")
    left.legend(fontsize=9, frameon=False)
    right.legend(fontsize=9, frameon=False)
    fig.suptitle(f"layer {layer}: full-batch training towards a stationary point", fontsize=11)
    return fig


def plot_loss_paths(
    paths: pd.DataFrame,
    x: str,
    metrics: Sequence[str] = ("loss", "ce", "accuracy"),
    *,
    hue: str = "target",
    col_labels: dict[str, str] | None = None,
    xlabel: str | None = None,
    title: str | None = None,
) -> plt.Figure:
    """One panel per metric against ``x`` (``theta`` or the noise ``scale``), two per row, one line per
    ``hue`` value; repeated draws at the same x are averaged with a band."""
    rows = -(-len(metrics) // 2)
    fig, grid = plt.subplots(rows, 2, figsize=(9, 4.2 * rows), squeeze=False)
    axes = [list(grid.flat)[: len(metrics)]]
    for ax in list(grid.flat)[len(metrics) :]:
        ax.set_axis_off()
    labels = {
        "loss": "regularized loss CE + $\\lambda\\sum\\|W\\|_F^2$",
        "ce": "cross-entropy",
        "accuracy": "accuracy",
        "reg": "$\\lambda \\sum \\|W\\|_F^2$",
        **(col_labels or {}),
    }
    for ax, metric in zip(axes[0], metrics):
        sns.lineplot(
            data=paths, x=x, y=metric, hue=hue, marker="o", markersize=4, ax=ax, errorbar="sd", legend=ax is axes[0][-1]
        )
        ax.set_ylabel(labels.get(metric, metric), fontsize=10)
        ax.set_xlabel(xlabel or x)
    axes[0][-1].legend(fontsize=9, frameon=False, title=hue, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_theta_paths(paths: pd.DataFrame) -> plt.Figure:
    """Chapter 3's trained networks along ``S + theta R``: regularized loss and cross-entropy on the
    training images (rows of :func:`rmtlib.experiments.trained_splits.theta_paths` with ``data == "train"``),
    one line per (training L2 strength, split target)."""
    train = paths[paths["data"] == "train"]
    if train.empty:
        raise InputError("plot_theta_paths: no rows measured on the training images (data == 'train')")
    curves = train.assign(curve=[f"L2 {l2:g}, {t}" for l2, t in zip(train["l2"], train["target"])])
    return plot_loss_paths(
        curves, "theta", metrics=("loss", "ce"), hue="curve", xlabel=r"$\theta$ (fraction of the bulk kept)",
        title="training loss along S + theta R",
    )  # fmt: skip


def plot_noise_paths(noise: pd.DataFrame) -> plt.Figure:
    """Chapter 3's trained networks after adding fresh noise (:func:`rmtlib.experiments.trained_splits.noise_paths`):
    regularized loss, cross-entropy and accuracy against the added variance, one line per L2 strength."""
    return plot_loss_paths(
        noise.assign(**{"L2 strength": noise["l2"].map(lambda v: f"{v:g}")}), "scale", hue="L2 strength",
        xlabel=r"added noise variance $t$ (units of $\sigma^2$)",
        title="training loss after adding fresh noise to all split layers",
    )  # fmt: skip


def plot_planted_slack(trials: pd.DataFrame, *, control: pd.DataFrame | None = None) -> plt.Figure:
    """Left: the slack per seed and its mean against N, with its two parts (CE part CE(S2) - CE(W2),
    penalty part -2 lambda <S2, R2>; 0 line: the inequality without slack). Right, log-log: mean
    |slack|, mean |CE part|, mean |penalty part| and the removed regularization lambda ||R2||^2 against
    N, with the fitted power law of |slack| and a 1/N guide. ``control`` (e.g. a run with label noise)
    adds its mean slack to the left panel and its mean |slack| to the right one."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.4))
    left.scatter(trials["N"], trials["slack"], s=14, alpha=0.5, color="k", label="slack, one seed")
    grouped = trials.assign(
        abs_slack=trials["slack"].abs(),
        abs_ce=trials["slack_ce"].abs(),
        abs_pen=trials["slack_penalty"].abs(),
    ).groupby("N")
    n = grouped["slack"].mean().index.to_numpy(dtype=float)
    left.plot(n, grouped["slack"].mean().to_numpy(), "k-o", ms=4, label="mean over seeds")
    left.plot(n, grouped["slack_ce"].mean().to_numpy(), "C1--s", ms=4, label="CE part (mean)")
    left.plot(n, grouped["slack_penalty"].mean().to_numpy(), "C2:^", ms=4, label="penalty part (mean)")
    if control is not None:
        left.plot(control.groupby("N")["slack"].mean(), "C4-d", ms=4, label="mean slack, control run (label noise)")
    left.axhline(0.0, color="C3", lw=1, ls="--", label="no slack")
    left.set_xscale("log", base=2)
    left.set_xlabel("width N")
    left.set_ylabel(r"slack = $L(S_2) - L(W_2) + \lambda\|R_2\|_F^2$", fontsize=10)
    left.legend(fontsize=9, frameon=False)
    abs_slack = grouped["abs_slack"].mean().to_numpy()
    right.loglog(n, abs_slack, "k-o", ms=4, base=2, label="mean |slack|")
    right.loglog(n, grouped["abs_ce"].mean().to_numpy(), "C1--s", ms=4, base=2, label="mean |CE part|")
    right.loglog(n, grouped["abs_pen"].mean().to_numpy(), "C2:^", ms=4, base=2, label="mean |penalty part|")
    right.loglog(n, grouped["reg_removed"].mean().to_numpy(), "C0-s", ms=4, base=2, label=r"$\lambda\|R_2\|_F^2$")
    if len(n) > 1 and (abs_slack > 0).all():
        slope, icpt = np.polyfit(np.log(n), np.log(abs_slack), 1)
        right.loglog(n, np.exp(icpt) * n**slope, color="k", lw=0.8, base=2, label=f"fit: $N^{{{slope:.2f}}}$")
    right.loglog(n, abs_slack[0] * n[0] / n, color="0.5", ls=":", base=2, label=r"$\propto 1/N$ (guide)")
    if control is not None:
        right.loglog(
            control.groupby("N")["slack"].apply(lambda v: v.abs().mean()),
            "C4-d",
            ms=4,
            base=2,
            label="mean |slack|, control",
        )
    right.set_xlabel("width N")
    right.set_ylabel("loss units", fontsize=10)
    right.legend(fontsize=9, frameon=False, ncol=2)
    fig.tight_layout()
    return fig


def plot_planted_theta(paths: pd.DataFrame, trials: pd.DataFrame, N: int) -> plt.Figure:
    """Regularized loss along S2 + theta R2 at width N (one line per seed) against the prediction
    L(1) - lambda (1 - theta^2) ||R2||_F^2 (dashed)."""
    sub = paths[paths["N"] == N]
    if sub.empty:
        raise InputError(f"plot_planted_theta: no path rows for N={N}")
    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    for i, (seed, group) in enumerate(sub.groupby("seed")):
        row = trials[(trials["N"] == N) & (trials["seed"] == seed)].iloc[0]
        theta = group["theta"].to_numpy()
        ax.plot(theta, group["loss"], "o-", color=f"C{i % 10}", ms=3, lw=1, label=f"seed {seed}")
        ax.plot(theta, row["loss_W"] - row["reg_removed"] * (1 - theta**2), "--", color=f"C{i % 10}", lw=1)
    ax.set_xlabel(r"$\theta$ in $W_2 = S_2 + \theta R_2$")
    ax.set_ylabel("regularized loss")
    ax.set_title(f"N = {N}; dashed: $L(W_2) - \\lambda(1-\\theta^2)\\|R_2\\|_F^2$", fontsize=9)
    ax.legend(fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def plot_singular_values(
    fits: Sequence[tuple[str, MPFit]], ax: plt.Axes | None = None, *, title: str | None = None
) -> plt.Axes:
    """Singular values in descending order (log scale), one line per (label, fit), each with its
    fitted edge ``s_+`` as a dashed line of the same colour: spikes are the points above it."""
    ax = ax or plt.figure(figsize=(5.5, 3.6)).gca()
    for i, (label, fit) in enumerate(fits):
        sv = fit.singular_values
        ax.semilogy(np.arange(1, len(sv) + 1), sv, color=f"C{i}", lw=1.4, label=f"{label} ({fit.n_spikes} spikes)")
        if fit.ok:
            ax.axhline(fit.sv_edge, color=f"C{i}", ls="--", lw=1)
    ax.set_xlabel("rank i")
    ax.set_ylabel("singular value $s_i$")
    ax.set_title(title or "singular values; dashed: fitted edge $s_+$", fontsize=9)
    ax.legend(fontsize=9, frameon=False)
    return ax


# ---------------------------------------------------------------------------------------------
# chapter 3's tables, as the reader sees them: headers in words, at most eight columns (wider tables
# are split in two), so that a table fits the book's text column


def _view(table: pd.DataFrame, headers: dict[str, str], formats: dict[str, str], **options: Any) -> Styler:
    """``table``'s columns named in ``headers`` (those present), renamed, formatted by their new names."""
    present = {old: new for old, new in headers.items() if old in table.columns}
    if not present:
        raise InputError(f"no column to show: the table has {list(table.columns)}, the view reads {list(headers)}")
    shown = table[list(present)].rename(columns=present)
    return book_table(shown, formats={k: v for k, v in formats.items() if k in shown.columns}, **options)


_L2 = {"L2": "{:g}"}
_SIGNED = "{:+.3g}"


def splits_view(splits: pd.DataFrame) -> Styler:
    """:func:`rmtlib.experiments.trained_splits.split_table`: energies to 0.1, the bulk's share to 3 decimals."""
    headers = {
        "l2": "L2",
        "layer": "layer",
        "shape": "shape",
        "spikes": "spikes",
        "||S||_F^2": "‖S‖²",
        "||R||_F^2": "‖R‖²",
        "bulk share of energy": "bulk share of energy",
        "lambda ||R||_F^2": "λ‖R‖²",
    }
    formats = {**_L2, "‖S‖²": "{:.1f}", "‖R‖²": "{:.1f}", "bulk share of energy": "{:.3f}", "λ‖R‖²": "{:.4f}"}
    return _view(splits.assign(shape=splits["shape"].str.replace(" x ", "×")), headers, formats)


def accuracy_view(table: pd.DataFrame) -> Styler:
    """:func:`rmtlib.experiments.trained_splits.accuracy_table` (index l2, target), accuracies to 4 decimals."""
    flat = table.reset_index()
    headers = {"l2": "L2", "target": "split layer", **{c: c for c in table.columns}}
    return _view(flat, headers, _L2, precision=4)


def monotonicity_view(mono: pd.DataFrame) -> Styler:
    """One :func:`rmtlib.experiments.randomness.monotonicity` table of a loss path (along theta, or under noise):
    per curve and metric, whether it holds, the steps against it and the worst one, the end-to-end change
    and the rank correlation with the path's variable."""
    headers = {
        "l2": "L2",
        "target": "split layer",
        "metric": "metric",
        "holds": "holds",
        "n_violations": "steps against",
        "worst_violation": "worst step against",
        "change": "change",
        "spearman": "Spearman",
    }
    return _view(mono, headers, {**_L2, "worst step against": "{:.3g}", "change": "{:+.3g}", "Spearman": "{:+.2f}"})


_CERT_KEYS = {"l2": "L2", "layer": "layer", "split": "split"}


def certificate_views(certs: pd.DataFrame) -> tuple[Styler, Styler]:
    """Certificate rows (:func:`rmtlib.experiments.trained_splits.certificate_table`) in two tables: the
    bound (``L``, ``B_T(R)``, the penalty removed, whether it holds and guarantees a decrease), then the
    cross-entropies and the per-sample checks, as percentages of the samples."""
    bound = {
        **_CERT_KEYS,
        "lipschitz_rest": "L",
        "bound": "bound",
        "penalty_removed": "penalty removed",
        "holds": "holds",
        "guarantees a decrease": "guarantees a decrease",
    }
    samples = {
        **_CERT_KEYS,
        "ce_A": "CE(A)",
        "ce_S": "CE(S)",
        "certified_lipschitz": "certified by L",
        "certified_observed": "certified by the pruned run",
        "label_changed": "label changed",
    }
    percent = {c: "{:.1%}" for c in ("certified by L", "certified by the pruned run", "label changed")}
    return (
        _view(certs, bound, {**_L2, "L": "{:.1f}", "bound": "{:.1f}", "penalty removed": "{:.4f}"}),
        _view(certs, samples, {**_L2, "CE(A)": "{:.4f}", "CE(S)": "{:.4f}", **percent}),
    )


def slack_views(slack: pd.DataFrame) -> tuple[Styler, Styler]:
    """Per width N (:func:`rmtlib.experiments.planted.slack_summary`) in two tables: the mean slack, its two
    parts, its size and the regularization removed (3 significant digits); then how often the inequality
    held and the CE part was <= 0 (fractions of the seeds) and the mean accuracies."""
    table = slack.reset_index() if slack.index.name == "N" else slack
    sizes = {
        "N": "N",
        "seeds": "seeds",
        "slack_mean": "mean slack",
        "slack_ce_mean": "CE part",
        "slack_penalty_mean": "penalty part",
        "abs_slack_mean": "mean |slack|",
        "reg_removed": "regularization removed",
    }
    counts = {
        "N": "N",
        "holds_fraction": "inequality holds",
        "ce_raised_fraction": "CE part <= 0",
        "acc_S": "accuracy of S2",
        "acc_W": "accuracy of W2",
    }
    signed = {c: _SIGNED for c in ("mean slack", "CE part", "penalty part")}
    return (
        _view(table, sizes, {"N": "{:d}", **signed, "mean |slack|": "{:.3g}", "regularization removed": "{:.3g}"}),
        _view(table, counts, {"N": "{:d}", "inequality holds": "{:.3f}", "CE part <= 0": "{:.3f}",
                              "accuracy of S2": "{:.4f}", "accuracy of W2": "{:.4f}"}),
    )  # fmt: skip


def estimated_split_view(table: pd.DataFrame) -> Styler:
    """:func:`rmtlib.experiments.planted.estimated_split_table` (indexed by N): the fitted against the true split."""
    headers = {
        "N": "N",
        "rank": "planted rank",
        "spikes_found": "spikes found",
        "acc_S": "accuracy of S2",
        "acc_split": "accuracy of fitted S2",
        "slack_true": "slack, true S2",
        "slack_split": "slack, fitted S2",
    }
    formats = {"N": "{:d}", "planted rank": "{:d}", "spikes found": "{:.2f}", "accuracy of S2": "{:.4f}"}
    formats |= {"accuracy of fitted S2": "{:.4f}", "slack, true S2": _SIGNED, "slack, fitted S2": _SIGNED}
    return _view(table.reset_index(), headers, formats)


def plot_before_after(fits: Sequence[tuple[str, MPFit]], layer: str, width: int) -> plt.Figure:
    """Two panels for one layer: left, the eigenvalue histogram of the first ``(label, fit)`` (the
    initialisation) with its MP fit; right, every case's singular values with its edge
    (:func:`plot_singular_values`)."""
    if not fits:
        raise InputError("plot_before_after: no fits to draw")
    fig, (left, right) = plt.subplots(1, 2, figsize=(TEXT_WIDTH_IN, 3.6), layout="constrained")
    plot_esd(fits[0][1], left, title=fits[0][0])
    left.legend(fontsize=9, frameon=True, framealpha=0.9, loc="upper right")  # over the edge line, not under it
    plot_singular_values(fits, right, title="singular values; dashed: edges $s_+$")
    fig.suptitle(f"layer {layer}, N = {width}", fontsize=11)
    return fig
