"""Chapter 5's tables and per-layer figure: what each cell shows and in which format."""

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
    kl_certified_stylers,
    paper_styler,
    plot_layer_removal,
    verdict_styler,
)


def _cells(styler) -> list[str]:
    """The displayed text of every body cell, row by row (the index cells excluded)."""
    return [
        str(c["display_value"]) for row in styler._translate(False, False)["body"] for c in row if "data" in c["class"]
    ]


def _headers(styler) -> list[str]:
    return [c["display_value"] for c in styler._translate(False, False)["head"][0] if "col_heading" in c["class"]]


def test_verdict_table_signs_the_differences_and_names_its_columns_in_words():
    verdict = pd.DataFrame(
        [dict(level="50%", reference_top1=98.214, best_other="a", best_other_top1=98.3, diff_pp=0.086,
              ci_low_pp=-0.05, ci_high_pp=0.2, p_value=0.01234, winner="tie", methods=5)]
    )  # fmt: skip
    styler = verdict_styler(verdict)
    assert _cells(styler) == ["50%", "98.21", "a", "+0.09", "[-0.05,\u00a0+0.20]", "0.012", "tie"]
    html = styler.to_html()
    assert "methods" not in html and "row_heading" not in html and "padding" in html
    assert _headers(styler) == [
        "level", "reference top-1 (%)", "best other method", "difference (pp)", "95% interval (pp)", "McNemar p",
        "winner",
    ]  # fmt: skip
    with pytest.raises(InputError, match="winner"):
        verdict_styler(verdict.drop(columns="winner"))


def test_measured_tables_show_the_methods_as_a_column_and_a_dash_where_not_run():
    levels = pd.Index(["50%", "2:4"], name="level")
    kl = pd.DataFrame([[0.01234, np.nan]], index=pd.Index(["a"], name="method"), columns=levels)
    certified = pd.DataFrame([[0.9, np.nan]], index=pd.Index(["a"], name="method"), columns=levels)
    kl_table, certified_table = kl_certified_stylers(kl, certified)
    assert _cells(kl_table) == ["a", "0.012", "—"] and _cells(certified_table) == ["a", "90.0%", "—"]
    assert _headers(kl_table) == ["method", "50%", "2:4"] and "row_heading" not in kl_table.to_html()
    diff = pd.DataFrame([[0.5, -1.234], [np.nan, 2.0]], index=pd.Index(["a", "b"], name="method"), columns=levels)
    assert _cells(differences_styler(diff)) == ["a", "+0.50", "-1.23", "b", "—", "+2.00"]


def test_published_table_leaves_the_model_to_the_caption():
    paper = pd.DataFrame(
        {"source": ["re-run", "field"], "model": ["ViT-B/16 augreg2 (dense 85.10-85.11)", "ViT-B/16"],
         "fine_tuning": ["1 epoch", "none"], "method": ["rmt", "wanda"], "level": ["50%", "50%"],
         "top1": [82.571, 81.3], "magnitude_top1": [81.67, np.nan], "diff_pp": [0.9, np.nan]}
    )  # fmt: skip
    styler = paper_styler(paper)
    assert _cells(styler) == [
        "re-run", "1 epoch", "rmt", "50%", "82.57", "81.67", "+0.90",
        "field", "none", "wanda", "50%", "81.30", "—", "—",
    ]  # fmt: skip
    assert _headers(styler)[-3:] == ["top-1 (%)", "magnitude's top-1 (%)", "difference (pp)"]


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
        "magnitude", "50%", "97.12", "81.67", "—", "—", "—",
        "hybrid", "50%", "97.50", "—", "+0.38", "[+0.10,\u00a0+0.60]", "0.00012",
    ]  # fmt: skip
    assert _cells(hybrid_styler(table[["schedule", "top-1 here (%)"]])) == ["magnitude", "97.12", "hybrid", "97.50"]


def test_layer_removal_figure_draws_one_row_of_markers_per_method_in_percent():
    shares = {
        label: pd.DataFrame({"layer": ["patch_embed.proj", "blocks.0.attn.qkv"], "sparsity": values})
        for label, values in {"magnitude_layer": [0.8, 0.8], "magnitude_global": [0.1, 0.9]}.items()
    }
    fig = plot_layer_removal(shares, 0.8)
    ax = fig.axes[0]
    methods = [line for line in ax.get_lines() if not line.get_label().startswith("_")]  # not the slot borders
    assert [line.get_label() for line in methods] == list(shares)
    assert all(line.get_linestyle() == "None" for line in methods)  # layers are categories
    np.testing.assert_allclose(methods[1].get_ydata(), [10.0, 90.0])
    assert ax.get_title() == "weights removed per layer at 80% of the whole model"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["patch_embed.proj", "b0.qkv"]
    plt.close(fig)
    with pytest.raises(InputError, match="no method"):
        plot_layer_removal({}, 0.8)
