"""Chapter 5's tables and per-layer figure: what each cell shows and in which format."""

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.plots.prune_quality import (  # noqa: E402
    differences_styler,
    hybrid_styler,
    kl_certified_styler,
    paper_styler,
    plot_layer_removal,
    verdict_styler,
)


def _cells(styler) -> list[str]:
    """The displayed text of every body cell, row by row (the index cells excluded)."""
    return [c["display_value"] for row in styler._translate(False, False)["body"] for c in row if "data" in c["class"]]


def test_verdict_table_signs_the_differences_and_hides_the_index():
    verdict = pd.DataFrame(
        [dict(level="50%", reference_top1=98.214, best_other="a", best_other_top1=98.3, diff_pp=0.086,
              ci_low_pp=-0.05, ci_high_pp=0.2, p_value=0.01234, winner="tie", methods=5)]
    )  # fmt: skip
    styler = verdict_styler(verdict)
    assert _cells(styler) == ["50%", "98.21", "a", "98.30", "+0.09", "-0.05", "+0.20", "0.012", "tie"]
    html = styler.to_html()
    assert "methods" not in html and "row_heading" not in html
    assert re.findall(r"<th [^>]*>([^<]*)</th>", html) == [
        "level", "reference top-1 (%)", "best other method", "its top-1 (%)", "difference (pp)",
        "95% interval: low", "high", "McNemar p", "winner",
    ]  # fmt: skip
    with pytest.raises(InputError, match="winner"):
        verdict_styler(verdict.drop(columns="winner"))


def test_measured_tables_show_three_decimals_signed_differences_and_dashes():
    kl = pd.DataFrame({"50%": [0.01234]}, index=["a"])
    styler = kl_certified_styler(kl, pd.DataFrame({"50%": [0.9]}, index=["a"]))
    assert _cells(styler) == ["0.012", "0.900"]
    assert "KL to dense (nats)" in styler.to_html() and "certified fraction" in styler.to_html()
    diff = pd.DataFrame({"50%": [0.5, np.nan], "70%": [-1.234, 2.0]}, index=["a", "b"])
    assert _cells(differences_styler(diff)) == ["+0.50", "-1.23", "-", "+2.00"]
    paper = pd.DataFrame({"method": ["rmt"], "top1": [84.551], "magnitude_top1": [np.nan]})
    assert _cells(paper_styler(paper)) == ["rmt", "84.55", "-"]


def test_hybrid_table_formats_each_column():
    table = pd.DataFrame(
        {
            "schedule": ["magnitude", "hybrid"],
            "level": ["50%", "50%"],
            "top-1 here (%)": [97.1234, 97.5],
            "authors' top-1 (%)": [81.67, np.nan],
            "vs magnitude (pp)": [np.nan, 0.3766],
            "95% interval": [np.nan, "[+0.10, +0.60]"],
            "McNemar p": [np.nan, 0.000123],
        }
    )
    assert _cells(hybrid_styler(table)) == [
        "magnitude", "50%", "97.12", "81.67", "-", "-", "-",
        "hybrid", "50%", "97.50", "-", "+0.38", "[+0.10, +0.60]", "0.00012",
    ]  # fmt: skip
    assert _cells(hybrid_styler(table[["schedule", "top-1 here (%)"]])) == ["magnitude", "97.12", "hybrid", "97.50"]


def test_layer_removal_figure_draws_one_line_per_method_in_percent():
    shares = {
        label: pd.DataFrame({"layer": ["patch_embed.proj", "blocks.0.attn.qkv"], "sparsity": values})
        for label, values in {"magnitude_layer": [0.8, 0.8], "magnitude_global": [0.1, 0.9]}.items()
    }
    fig = plot_layer_removal(shares, 0.8)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == list(shares)
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [10.0, 90.0])
    assert ax.get_title() == "weights removed per layer at 80% of the whole model"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["patch_embed.proj", "b0.qkv"]
    plt.close(fig)
    with pytest.raises(InputError, match="no method"):
        plot_layer_removal({}, 0.8)
