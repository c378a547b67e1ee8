"""Tests of rmtlib.plots.theory: chapter 1's figures draw what they claim and are legible in the book."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.experiments.mp_checks import mp_law_check, spiked_fit_check  # noqa: E402
from rmtlib.experiments.spiked import bbp_detection, noise_top_eigenvalues, tw_standardize  # noqa: E402
from rmtlib.plots.layout import book_style, legibility_problems  # noqa: E402
from rmtlib.plots.theory import (  # noqa: E402
    plot_bbp_transition,
    plot_mp_checks,
    plot_spiked_fits,
    plot_tw_edge,
)


@pytest.fixture(autouse=True)
def _book_style():
    book_style()
    yield
    plt.close("all")


def test_mp_checks_one_titled_panel_per_matrix_two_per_row():
    table, spectra = mp_law_check([0.1, 0.25, 0.5], 200, np.random.default_rng(0))
    fig = plot_mp_checks(spectra, table["KS"].tolist(), 200)
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 4 and len(drawn) == 3  # the fourth cell of the 2 x 2 grid is blank
    for ax, row in zip(drawn, table.itertuples()):
        assert ax.get_title() == f"{row.shape} (c = {row.c:g}), KS = {row.KS:.3f}"
    assert legibility_problems(fig) == []
    with pytest.raises(InputError, match="one KS distance per spectrum"):
        plot_mp_checks(spectra, [0.1], 200)


def test_spiked_fits_mark_found_and_predicted_spikes():
    _, cases = spiked_fit_check(
        [(200, 100), (400, 200)],
        [0.5, 2.0, 3.0],
        sigma=0.1,
        betas=[0.8, 0.1],
        rng=np.random.default_rng(0),
    )
    fig = plot_spiked_fits(cases, 0.1)
    assert len(fig.axes) == 2
    for ax, case in zip(fig.axes, cases):
        found = [line for line in ax.get_lines() if line.get_marker() == "v"][0]
        assert len(found.get_xdata()) == case.fits[0.1].n_spikes
        bars = [line for line in ax.get_lines() if line.get_marker() == "|"][0]
        np.testing.assert_allclose(bars.get_xdata(), case.predicted_sv**2 / max(case.shape))
        assert "2 above the threshold" in ax.get_title()
    assert legibility_problems(fig) == []
    with pytest.raises(InputError, match="beta = 0.5"):
        plot_spiked_fits(cases, 0.5)


def test_tw_edge_and_bbp_figures_are_legible_at_the_text_width():
    top = noise_top_eigenvalues(100, 50, 20, rng=np.random.default_rng(0))
    ax = plot_tw_edge(tw_standardize(top, 100, 50), [0.8, 0.1])
    assert legibility_problems(ax.figure) == []
    fig = plot_bbp_transition(bbp_detection([(60, 30)], [0.0, 1.0, 2.0], 4, seed=0))
    assert legibility_problems(fig) == []
    assert r"\tau" in fig.axes[0].get_xlabel()  # chapter 1 writes the signal strength tau, not theta
