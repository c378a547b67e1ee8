"""Chapter 5's tables and its per-layer figure, drawn from :mod:`rmtlib.experiments.prune_quality` results.

The tables are :func:`rmtlib.plots.layout.book_table` Stylers (the book renders their HTML): headers in
words, fixed decimals per column, differences signed, no bare index (methods are a column), a dash
where nothing was measured.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import pandas as pd
from pandas.io.formats.style import Styler

from rmtlib.errors import InputError
from rmtlib.plots.layout import book_table
from rmtlib.plots.sweep import plot_layer_sparsity

__all__ = [
    "verdict_styler",
    "kl_certified_stylers",
    "paper_styler",
    "differences_styler",
    "hybrid_styler",
    "seed_spread_styler",
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
_SIGNED = "{:+.2f}"


def _levels(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`rmtlib.experiments.prune_quality.pivot_levels` table with its methods as the first column."""
    flat = table.reset_index()
    flat.columns.name = None
    return flat


def verdict_styler(verdict: pd.DataFrame) -> Styler:
    """The per-level verdict (:func:`rmtlib.experiments.prune_quality.verdicts`) in seven columns with headers
    in words: the reference's top-1 to 2 decimals, the best other method's difference from it and the 95%
    interval signed (the interval on one line), p to 2 significant digits."""
    missing = [c for c in _VERDICT_COLUMNS if c not in verdict.columns]
    if missing:
        raise InputError(f"verdict_styler: the verdict table lacks columns {missing}")
    interval = [f"[{lo:+.2f},\u00a0{hi:+.2f}]" for lo, hi in zip(verdict["ci_low_pp"], verdict["ci_high_pp"])]
    shown = pd.DataFrame(
        {
            "level": verdict["level"],
            "reference top-1 (%)": verdict["reference_top1"],
            "best other method": verdict["best_other"],
            "difference (pp)": verdict["diff_pp"],
            "95% interval (pp)": interval,
            "McNemar p": verdict["p_value"],
            "winner": verdict["winner"],
        }
    )
    formats = {"reference top-1 (%)": "{:.2f}", "difference (pp)": _SIGNED}
    return book_table(shown, formats={**formats, "McNemar p": "{:.2g}"})


def kl_certified_stylers(kl: pd.DataFrame, certified: pd.DataFrame) -> tuple[Styler, Styler]:
    """(KL divergence from the dense model in nats, 3 decimals; certified fraction in percent), per method
    (rows) and level (columns) as :func:`rmtlib.experiments.prune_quality.pivot_levels` gives them."""
    return (
        book_table(_levels(kl), precision=3),
        book_table(_levels(certified), formats={str(level): "{:.1%}" for level in certified.columns}),
    )


_PAPER_HEADERS = {
    "source": "source",
    "fine_tuning": "fine-tuning",
    "method": "method",
    "level": "level",
    "top1": "top-1 (%)",
    "magnitude_top1": "magnitude's top-1 (%)",
    "diff_pp": "difference (pp)",
}


def paper_styler(paper: pd.DataFrame) -> Styler:
    """The published differences (:func:`rmtlib.experiments.prune_quality.paper_differences`): top-1 to 2
    decimals, differences signed. The model (ViT-B/16 in every row) is left to the table's caption."""
    shown = paper[[c for c in _PAPER_HEADERS if c in paper.columns]].rename(columns=_PAPER_HEADERS)
    return book_table(shown, formats={"difference (pp)": _SIGNED} if "difference (pp)" in shown else None)


def differences_styler(diff: pd.DataFrame) -> Styler:
    """Measured differences from the reference (pp, signed, 2 decimals) per method and level; a dash where not run."""
    return book_table(_levels(diff), formats={str(level): _SIGNED for level in diff.columns})


def hybrid_styler(table: pd.DataFrame) -> Styler:
    """The fine-tuned schedules (:func:`rmtlib.experiments.hybrid_results.hybrid_table`): top-1 to 2 decimals,
    the difference from the magnitude schedule signed, its interval on one line."""
    formats = {
        "top-1 here (%)": "{:.2f}",
        "authors' top-1 (%)": "{:.2f}",
        "vs magnitude (pp)": _SIGNED,
        "McNemar p": "{:.2g}",
    }
    if "95% interval" in table:  # on one line: "[-0.38, +0.03]" would wrap at its space
        table = table.assign(**{"95% interval": table["95% interval"].str.replace(", ", ",\u00a0")})
    return book_table(table, formats={k: v for k, v in formats.items() if k in table.columns})


_SEED_HEADERS = {
    "method": "method",
    "level": "level",
    "seeds": "draws",
    "top1_tested": "tested draw (%)",
    "top1_min": "lowest (%)",
    "top1_max": "highest (%)",
    "reference_top1": "reference (%)",
    "side": "every draw vs reference",
}


def seed_spread_styler(spread: pd.DataFrame) -> Styler:
    """The calibration draws' spread (:func:`rmtlib.experiments.prune_quality.seed_spread`): top-1 of the tested,
    lowest and highest draw beside the reference's, and on which side of it every draw fell."""
    missing = [c for c in _SEED_HEADERS if c not in spread.columns]
    if missing:
        raise InputError(f"seed_spread_styler: the spread table lacks columns {missing}")
    return book_table(spread[list(_SEED_HEADERS)].rename(columns=_SEED_HEADERS))


def plot_layer_removal(shares: Mapping[str, pd.DataFrame], sparsity: float) -> plt.Figure:
    """Fraction of each layer's weights removed by each method (:func:`rmtlib.experiments.prune_quality.layer_removal`)
    at ``sparsity`` of the whole model, layers in model order."""
    if not shares:
        raise InputError("plot_layer_removal: no method to draw")
    fig, ax = plt.subplots(figsize=(6.9, 3.6))
    plot_layer_sparsity(shares, ax, title=f"weights removed per layer at {sparsity:.0%} of the whole model")
    return fig
