"""The book's figure rules (rmtlib.plots.layout) and chapter 4/6 figures (plots.fc_table, plots.cost)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.experiments.fc_table import FC_ROWS, PAPER_FC_TABLE  # noqa: E402
from rmtlib.plots.cost import plot_analysis_times, plot_pruned_costs  # noqa: E402
from rmtlib.plots.fc_table import plot_fc_comparison  # noqa: E402
from rmtlib.plots.layout import (  # noqa: E402
    MAX_ASPECT,
    TEXT_WIDTH_IN,
    book_figure,
    book_style,
    book_table,
    legibility_problems,
)

ORDER = [r.name for r in FC_ROWS]


@pytest.fixture(autouse=True)
def _style():
    book_style()
    yield
    plt.close("all")


def test_book_figure_refuses_three_panels_or_a_too_wide_figure():
    fig, axes = book_figure(2, height=3.0)
    assert len(axes) == 2 and fig.get_size_inches()[0] == pytest.approx(TEXT_WIDTH_IN)
    with pytest.raises(InputError, match="at most two panels per row"):
        book_figure(3)
    with pytest.raises(InputError, match=f"wider than {MAX_ASPECT}:1"):
        book_figure(2, height=2.0)


def test_legibility_problems_finds_small_text_and_wide_figures():
    fig, ax = book_figure(1)
    ax.set_xlabel("readable")
    assert legibility_problems(fig) == []
    ax.set_ylabel("tiny", fontsize=7)
    assert legibility_problems(fig) == ["text 'tiny' at 7.0 pt"]
    wide = plt.figure(figsize=(14, 4), dpi=100)  # 1400 px shown at 688: fonts scaled by 0.49
    wide.gca().set_xlabel("shrunk", fontsize=12)
    problems = legibility_problems(wide)
    assert problems[0] == "aspect 3.50:1 > 2.6:1" and "text 'shrunk' at 5.9 pt" in problems


def _per_row(gains):
    test = 97.0 + np.asarray(gains)
    return pd.DataFrame(
        {
            "test_accuracy_mean": test,
            "test_accuracy_sd": 0.1,
            "test_gain_mean": gains,
            "test_gain_ci95": 0.2,
        },
        index=ORDER,
    )


def test_fc_figure_shows_full_accuracy_axis_and_both_gains_apart():
    gains = [0.0, 0.5, -0.25, 1.0, 0.0]
    fig = plot_fc_comparison(_per_row(gains), PAPER_FC_TABLE.set_index("row"), ORDER, baseline=ORDER[0])
    left, right = fig.axes[:2]
    assert left.get_xlim() == (0.0, 100.0)  # bars start at zero: no truncated axis
    assert left.get_ylim() == right.get_ylim()  # the rows line up
    widths = sorted(round(p.get_width(), 2) for p in left.patches)
    assert widths == sorted(np.round([*PAPER_FC_TABLE["test_accuracy"], *(97.0 + np.array(gains))], 2))
    paper = PAPER_FC_TABLE.set_index("row")["test_accuracy"]
    diamonds = right.lines[1]
    np.testing.assert_allclose(diamonds.get_xdata(), (paper - paper.iloc[0]).iloc[1:])
    ours = right.lines[2]  # the measured gains' markers (their error bars are a collection)
    np.testing.assert_allclose(ours.get_xdata(), gains[1:])
    assert np.all(np.abs(diamonds.get_ydata() - ours.get_ydata()) > 0.29)  # one above the other, never on top
    assert legibility_problems(fig) == []


def _costs():
    rows = [dict(method="dense", sparsity=0.0, macs_ratio=1.0, latency_ratio=1.0)]
    for method, latency in [("rmt_lowrank", 0.8), ("svd", 0.8), ("magnitude", 1.02)]:
        for level in (0.3, 0.5):
            macs = 1.0 if method == "magnitude" else 1 - level
            rows.append(dict(method=method, sparsity=level, macs_ratio=macs, latency_ratio=latency))
    return pd.DataFrame(rows)


def test_cost_figure_separates_identical_methods_and_shares_y():
    fig = plot_pruned_costs(_costs(), noise=0.02)
    macs, latency = fig.axes[:2]
    assert macs.get_ylim() == latency.get_ylim() and macs.get_xlim() == (0.0, 100.0)
    lines = {line.get_label(): line for line in macs.lines}
    lowrank, svd = lines["rmt_lowrank"], lines["svd"]
    np.testing.assert_allclose(lowrank.get_ydata(), svd.get_ydata())  # same values ...
    assert np.all(np.abs(lowrank.get_xdata() - svd.get_xdata()) >= 1.0)  # ... drawn apart
    assert lowrank.get_marker() != svd.get_marker()
    assert legibility_problems(fig) == []
    with pytest.raises(InputError, match="no pruned model"):
        plot_pruned_costs(_costs().iloc[:1])


def test_analysis_figure_labels_every_measured_bar_and_skips_missing_tools():
    timing = pd.DataFrame(
        {
            "model": ["m", "m", "m"],
            "tool": ["rmtlib.analyze", "torch.linalg.svdvals", "weightwatcher"],
            "seconds": [0.1, 0.2, np.nan],
        }
    )
    fig = plot_analysis_times(timing)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.10 s", "0.20 s"]
    assert [p.get_width() for p in ax.patches] == [0.1, 0.2]
    assert legibility_problems(fig) == []


def test_book_table_hides_the_index_and_rounds_for_a_reader():
    table = pd.DataFrame({"method": ["a", "b"], "error (%)": [1.23456, np.nan], "MACs": [45939840, 1200]})
    html = book_table(table, formats={"MACs": "{:,.0f}"}).to_html()
    assert "1.23" in html and "1.2346" not in html and "45,939,840" in html and "—" in html
    assert 'class="row_heading' not in html  # no bare 0, 1, ... index
    assert "text-align: left" in html  # the text column reads from the left, numbers from the right
    with pytest.raises(InputError, match=r"columns not in the table: \['nope'\]"):
        book_table(table, formats={"nope": "{:.1f}"})
