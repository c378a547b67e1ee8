"""Figure sizes and fonts for the book: at most two panels per row, legible at the text width.

The book's text column is 688 px wide. Figures are drawn at :data:`DPI` and :data:`TEXT_WIDTH_IN`
inches, so the browser shows them at their natural size and a 9-pt label stays 9 pt on screen;
wider or smaller-font figures would be shrunk below legibility. :func:`legibility_problems` checks a
figure against these rules (the book's browser test checks the rendered pages).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rmtlib.errors import InputError

TEXT_WIDTH_PX = 688
"""Width of the book's text column (Jupyter Book 1, sphinx-book-theme, 1280-px window)."""
DPI = 100
"""Inline figure resolution: a :data:`TEXT_WIDTH_IN`-inch figure is displayed unscaled."""
TEXT_WIDTH_IN = TEXT_WIDTH_PX / DPI
MAX_ASPECT = 2.6
"""Widest figure (width / height) the book shows: two panels per row at most."""
MIN_FONT_PT = 9.0

_RC = {
    "figure.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 11,
}


def book_style() -> None:
    """Seaborn's white grid with fonts of at least :data:`MIN_FONT_PT` and the book's figure resolution."""
    sns.set_theme(style="whitegrid", context="notebook", rc=_RC)


def book_figure(ncols: int = 1, *, height: float | None = None, **subplots: Any) -> tuple[plt.Figure, Any]:
    """A figure of the text's width with ``ncols`` (1 or 2) panels side by side, constrained layout.

    ``height`` in inches defaults to the narrowest the aspect rule allows for two panels and a
    4:3-ish panel for one. Extra keywords (``sharey``, ``sharex``) go to :func:`plt.subplots`.
    """
    if ncols not in (1, 2):
        raise InputError(f"book_figure: ncols must be 1 or 2 (at most two panels per row), got {ncols!r}")
    height = float(height if height is not None else (3.0 if ncols == 2 else 3.4))
    if not np.isfinite(height) or TEXT_WIDTH_IN / height > MAX_ASPECT:
        raise InputError(
            f"book_figure: height {height} in makes the figure wider than {MAX_ASPECT}:1 "
            f"(at least {TEXT_WIDTH_IN / MAX_ASPECT:.2f} in)"
        )
    return plt.subplots(1, ncols, figsize=(TEXT_WIDTH_IN, height), layout="constrained", **subplots)


def legibility_problems(fig: plt.Figure) -> list[str]:
    """What breaks the book's figure rules: too wide (as drawn, fonts scaled to the text width) or too small text.

    A figure wider than the text column is shrunk by the browser, so its fonts count at the scale
    they are displayed; text of any visible artist below :data:`MIN_FONT_PT` is reported.
    """
    fig.canvas.draw()
    width, height = fig.get_size_inches()
    problems = []
    if width / height > MAX_ASPECT:
        problems.append(f"aspect {width / height:.2f}:1 > {MAX_ASPECT}:1")
    scale = min(1.0, TEXT_WIDTH_IN * DPI / (width * fig.dpi)) * fig.dpi / DPI
    for text in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text")):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() * scale < MIN_FONT_PT - 1e-6:
            problems.append(f"text {text.get_text()[:30]!r} at {text.get_fontsize() * scale:.1f} pt")
    return problems


def book_table(table: pd.DataFrame, *, precision: int = 2, formats: dict[str, str] | None = None) -> Any:
    """A table as the reader should see it: no bare index, ``precision`` decimals, padded cells, NaN as a dash.

    ``formats`` maps column names to format strings (e.g. ``{"test loss": "{:.3f}"}``).
    """
    missing = sorted(set(formats or {}) - set(table.columns))
    if missing:
        raise InputError(f"book_table: formats name columns not in the table: {missing}")
    styler = table.style.hide(axis="index").format(precision=precision, na_rep="—", thousands=",")
    for column, fmt in (formats or {}).items():
        styler = styler.format(fmt, subset=[column], na_rep="—")
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    # tight enough that seven or eight numeric columns fit the book's 688-px text column (the browser test checks)
    cells = "padding: 0.2em 0.3em; text-align: right; font-size: 0.88em;"
    styler = styler.set_table_styles([{"selector": "th, td", "props": cells}])
    return styler.set_properties(subset=text, **{"text-align": "left"}) if text else styler
