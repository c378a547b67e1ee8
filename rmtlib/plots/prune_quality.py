"""Chapter 5's tables and its per-layer figure, drawn from :mod:`rmtlib.experiments.prune_quality` results.

The tables are pandas Stylers (the book renders their HTML): fixed decimals per column, differences
signed, no bare index where the rows have names of their own, a dash where nothing was measured.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from pandas.io.formats.style import Styler

from rmtlib.errors import InputError
from rmtlib.plots.sweep import plot_layer_sparsity

__all__ = [
    "verdict_styler",
    "kl_certified_styler",
    "paper_styler",
    "differences_styler",
    "hybrid_styler",
    "plot_layer_removal",
]

_VERDICT_COLUMNS = [
    "level",
    "reference_top1",
    "best_other",
    "best_other_top1",
    "diff_pp",
    "ci_low_pp",
    "ci_high_pp",
    "p_value",
    "winner",
]
_VERDICT_HEADERS = [
    "level",
    "reference top-1 (%)",
    "best other method",
    "its top-1 (%)",
    "difference (pp)",
    "95% interval: low",
    "high",
    "McNemar p",
    "winner",
]


def verdict_styler(verdict: pd.DataFrame) -> Styler:
    """The per-level verdict (:func:`rmtlib.experiments.prune_quality.verdicts`): top-1 to 2 decimals,
    differences signed, p to 2 significant digits, headers in words."""
    missing = [c for c in _VERDICT_COLUMNS if c not in verdict.columns]
    if missing:
        raise InputError(f"verdict_styler: the verdict table lacks columns {missing}")
    signed = {c: "{:+.2f}" for c in ("diff_pp", "ci_low_pp", "ci_high_pp")}
    formats = {"reference_top1": "{:.2f}", "best_other_top1": "{:.2f}", **signed, "p_value": "{:.2g}"}
    headers = dict(zip(_VERDICT_COLUMNS, _VERDICT_HEADERS))
    return verdict[_VERDICT_COLUMNS].style.format(formats).format_index(headers.get, axis=1).hide(axis="index")


def kl_certified_styler(kl: pd.DataFrame, certified: pd.DataFrame) -> Styler:
    """KL divergence from the dense model and certified fraction, per method and level, side by side (3 decimals)."""
    return pd.concat({"KL to dense (nats)": kl, "certified fraction": certified}, axis=1).style.format("{:.3f}")


def paper_styler(paper: pd.DataFrame) -> Styler:
    """The published differences (:func:`rmtlib.experiments.prune_quality.paper_differences`), 2 decimals."""
    return paper.style.format(precision=2, na_rep="-").hide(axis="index")


def differences_styler(diff: pd.DataFrame) -> Styler:
    """Measured differences from the reference (pp, signed, 2 decimals) per method and level; ``-`` where not run."""
    return diff.style.format("{:+.2f}", na_rep="-")


def hybrid_styler(table: pd.DataFrame) -> Styler:
    """The fine-tuned schedules (:func:`rmtlib.experiments.hybrid_results.hybrid_table`)."""
    formats = {
        "top-1 here (%)": "{:.2f}",
        "authors' top-1 (%)": "{:.2f}",
        "vs magnitude (pp)": "{:+.2f}",
        "McNemar p": "{:.2g}",
    }
    return table.style.format({k: v for k, v in formats.items() if k in table.columns}, na_rep="-").hide(axis="index")


def plot_layer_removal(shares: Mapping[str, pd.DataFrame], sparsity: float) -> plt.Figure:
    """Fraction of each layer's weights removed by each method (:func:`rmtlib.experiments.prune_quality.layer_removal`)
    at ``sparsity`` of the whole model, layers in model order."""
    if not shares:
        raise InputError("plot_layer_removal: no method to draw")
    fig, ax = plt.subplots(figsize=(6.9, 3.6))
    plot_layer_sparsity(shares, ax, title=f"weights removed per layer at {sparsity:.0%} of the whole model")
    return fig
