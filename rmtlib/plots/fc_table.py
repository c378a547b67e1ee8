"""Chapter 4's figure: the five trainings of the paper's FC table, the paper's beside ours."""

from __future__ import annotations

import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rmtlib.errors import InputError
from rmtlib.plots.layout import book_figure

PAPER_COLOR, MEASURED_COLOR = "C1", "C0"


def plot_fc_comparison(
    per_row: pd.DataFrame,
    paper: pd.DataFrame,
    order: Sequence[str],
    *,
    baseline: str,
    measured_label: str = "measured here",
    paper_label: str = "paper",
) -> plt.Figure:
    """Test accuracy of each training (left, full 0-100% axis) and its gain over ``baseline`` (right).

    ``per_row``: :func:`rmtlib.experiments.fc_table.summarize_seeds` (index: row names) with
    ``test_accuracy_mean``/``_sd`` and ``test_gain_mean``/``_ci95``; ``paper``: the paper's table
    indexed by row with ``test_accuracy``. Left: bars (ours with one sd over seeds). Right: the
    paper's gain (points) and ours (mean of the paired per-seed gains, 95% interval), one above the
    other so neither hides the other, values written beside them. Rows share the y-axis.
    """
    missing = [r for r in order if r not in per_row.index and r not in paper.index]
    if missing:
        raise InputError(f"plot_fc_comparison: rows {missing} are in neither per_row nor paper")
    fig, (left, right) = book_figure(2, height=3.8, sharey=True, width_ratios=[1.15, 1.0])
    y = np.arange(len(order))
    ours = per_row.reindex(order)
    theirs = paper.reindex(order)
    h = 0.38
    left.barh(y - h / 2, theirs["test_accuracy"], height=h, color=PAPER_COLOR, label=paper_label)
    sd = ours.get("test_accuracy_sd", pd.Series(np.nan, index=order)).fillna(0.0)
    left.barh(
        y + h / 2, ours["test_accuracy_mean"], height=h, xerr=sd, color=MEASURED_COLOR, label=measured_label, capsize=2
    )
    for yy, value in zip(y - h / 2, theirs["test_accuracy"]):
        if np.isfinite(value):
            left.text(value - 1.5, yy, f"{value:.1f}", va="center", ha="right", color="white", fontsize=9)
    for yy, value in zip(y + h / 2, ours["test_accuracy_mean"]):
        if np.isfinite(value):
            left.text(value - 1.5, yy, f"{value:.1f}", va="center", ha="right", color="white", fontsize=9)
    left.set_xlim(0, 100)
    left.set_xlabel("test accuracy (%)")
    left.set_yticks(y, [textwrap.fill(r, 16) for r in order])
    left.invert_yaxis()
    left.grid(axis="y", visible=False)

    paper_gain = theirs["test_accuracy"] - theirs.loc[baseline, "test_accuracy"]
    our_gain = ours.get("test_gain_mean", pd.Series(np.nan, index=order))
    half = ours.get("test_gain_ci95", pd.Series(np.nan, index=order)).fillna(0.0)
    others = [i for i, r in enumerate(order) if r != baseline]
    right.axvline(0, color="0.4", lw=1)
    right.plot(paper_gain.iloc[others].to_numpy(float), y[others] - 0.15, "D", color=PAPER_COLOR, label=paper_label)
    right.errorbar(
        our_gain.iloc[others].to_numpy(float),
        y[others] + 0.15,
        xerr=half.iloc[others].to_numpy(float),
        fmt="o",
        color=MEASURED_COLOR,
        capsize=3,
        label=measured_label,
    )
    for i in others:
        if np.isfinite(paper_gain.iloc[i]):
            right.annotate(
                f"{paper_gain.iloc[i]:+.1f}",
                (paper_gain.iloc[i], y[i] - 0.15),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color=PAPER_COLOR,
            )
        if np.isfinite(our_gain.iloc[i]):
            right.annotate(
                f"{our_gain.iloc[i]:+.2f}",
                (our_gain.iloc[i] + half.iloc[i], y[i] + 0.15),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                color=MEASURED_COLOR,
            )
    if baseline in order:
        right.text(0.5, order.index(baseline), " the baseline", va="center", fontsize=9, color="0.3")
    top = np.nanmax(np.r_[paper_gain.to_numpy(dtype=float), (our_gain + half).to_numpy(dtype=float), 1.0])
    low = np.nanmin(np.r_[(our_gain - half).to_numpy(dtype=float), 0.0])
    right.set_xlim(min(low * 1.2, -1.0), top * 1.25 + 1.0)
    right.set_xlabel("gain over plain SGD (pp)")
    right.grid(axis="y", visible=False)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=1, frameon=False)
    return fig
