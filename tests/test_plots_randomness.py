"""Tests of rmtlib.plots.randomness: the figures draw what they claim, on small real inputs."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.experiments.planted import planted_experiment  # noqa: E402
from rmtlib.experiments.randomness import SpectralTracker, gaussian_init_  # noqa: E402
from rmtlib.nn.models import fc_net  # noqa: E402
from rmtlib.plots.layout import book_style, legibility_problems  # noqa: E402
from rmtlib.plots.randomness import (  # noqa: E402
    plot_before_after,
    plot_bulk_vs_control,
    plot_decay,
    plot_planted_slack,
    plot_planted_theta,
    plot_singular_values,
    plot_stationary,
)
from rmtlib.spectral.fit import fit_mp  # noqa: E402
from rmtlib.spectral.fit_config import FitConfig  # noqa: E402


def _spectra():
    frames = []
    for l2 in (0.0, 0.01):
        model = gaussian_init_(fc_net([40, 32, 32, 4]), seed=0)
        tracker = SpectralTracker(tags={"width": 32, "l2": l2})
        for epoch in range(3):
            tracker.observe(epoch, model)
            for p in model.parameters():
                p.data.mul_(1 - 10 * l2)  # a stand-in for weight decay: x0.9 per epoch
        frames.append(tracker.frame())
    return pd.concat(frames, ignore_index=True)


def test_plot_decay_draws_one_relative_curve_per_run():
    fig = plot_decay(_spectra(), "3")
    axes = fig.axes
    assert len(axes) == 4
    sigma_lines = [line for line in axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(sigma_lines) == 2
    ys = sorted(float(line.get_ydata()[-1]) for line in sigma_lines)
    assert ys[0] == pytest.approx(0.9**4, rel=1e-6) and ys[1] == pytest.approx(1.0)  # relative to init
    plt.close(fig)
    with pytest.raises(InputError, match="layer"):
        plot_decay(_spectra(), "5")  # the 4 x 32 head is too small to fit


def test_plot_singular_values_marks_each_edge():
    rng = np.random.default_rng(0)
    fc = FitConfig(beta=0.1)
    fits = [(f"case {i}", fit_mp(rng.standard_normal((200, 100)) * (i + 1), config=fc)) for i in range(2)]
    ax = plot_singular_values(fits)
    lines = ax.get_lines()
    assert len(lines) == 4  # one curve and one edge line per fit
    assert lines[1].get_ydata()[0] == pytest.approx(fits[0][1].sv_edge)
    plt.close(ax.figure)


def test_planted_figures():
    trials, paths = planted_experiment([64, 128], [0, 1], thetas=[0.0, 0.5, 1.0], d=16, rank=4, n_samples=200)
    fig = plot_planted_slack(trials)
    assert len(fig.axes) == 2
    mean_line = [line for line in fig.axes[0].get_lines() if line.get_label() == "mean over seeds"][0]
    np.testing.assert_allclose(mean_line.get_ydata(), trials.groupby("N")["slack"].mean().to_numpy())
    by_label = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(  # the two parts add up to the slack
        by_label["CE part (mean)"].get_ydata() + by_label["penalty part (mean)"].get_ydata(), mean_line.get_ydata()
    )
    width, height = fig.get_size_inches()
    assert width / height <= 2.6
    plt.close(fig)
    fig = plot_planted_theta(paths, trials, 128)
    assert len(fig.axes[0].get_lines()) == 4  # measured and predicted, for each of two seeds
    plt.close(fig)
    with pytest.raises(InputError, match="N=999"):
        plot_planted_theta(paths, trials, 999)


def test_bulk_vs_control_draws_trained_and_data_free_per_strength():
    spectra = _spectra()
    twin = spectra[spectra["l2"] > 0].assign(run="data-free")
    both = pd.concat([spectra.assign(run="trained"), twin], ignore_index=True)
    fig = plot_bulk_vs_control(both, "3")
    left, right = fig.axes
    labels = [line.get_label() for line in left.get_lines()]
    assert labels == ["L2 = 0, trained on data", "L2 = 0.01, penalty only (no data)", "L2 = 0.01, trained on data"]
    decayed = left.get_lines()[2].get_ydata()
    assert decayed[0] == pytest.approx(1.0) and decayed[-1] == pytest.approx(0.9**4, rel=1e-6)
    assert left.get_lines()[1].get_linestyle() == "--"
    plt.close(fig)
    with pytest.raises(InputError, match="control=True"):
        plot_bulk_vs_control(spectra, "3")


def test_plot_stationary_draws_gradient_and_energies():
    rows = pd.DataFrame(
        {
            "iteration": [0, 10, 100],
            "layer": "3",
            "status": "ok",
            "l2": 0.01,
            "grad_norm_rel": [1.0, 0.1, 0.01],
            "bulk_energy": [60.0, 3.0, 0.01],
            "spike_energy": [0.0, 10.0, 9.0],
        }
    )
    fig = plot_stationary(rows, "3")
    left, right = fig.axes
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [1.0, 0.1, 0.01])
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), [60.0, 3.0, 0.01])
    plt.close(fig)
    with pytest.raises(InputError, match="layer"):
        plot_stationary(rows, "1")


def test_plot_decay_draws_each_data_free_twin_dotted_in_its_colour():
    spectra = _spectra()
    twin = spectra[spectra["l2"] > 0].assign(run="data-free")
    both = pd.concat([spectra.assign(run="trained"), twin], ignore_index=True)
    fig = plot_decay(both, "3")
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":"]
    assert len(dashed) == 1 and dashed[0].get_label() == "0.01, penalty only (no data)"
    np.testing.assert_allclose(dashed[0].get_ydata(), [1.0, 0.9**2, 0.9**4], rtol=1e-6)  # sigma2 / init
    solid = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 3 and line.get_linestyle() == "-"]
    assert any(np.allclose(line.get_color(), dashed[0].get_color()) for line in solid)
    plt.close(fig)


def test_chapter_two_figures_fit_the_text_width_with_legible_fonts():
    book_style()
    spectra = _spectra()
    twin = spectra[spectra["l2"] > 0].assign(run="data-free")
    both = pd.concat([spectra.assign(run="trained"), twin], ignore_index=True)
    rows = pd.DataFrame(
        {
            "iteration": [0, 10, 100],
            "layer": "3",
            "status": "ok",
            "l2": 0.01,
            "grad_norm_rel": [1.0, 0.1, 0.01],
            "bulk_energy": [60.0, 3.0, 0.01],
            "spike_energy": [0.0, 10.0, 9.0],
        }
    )
    for fig in (plot_decay(both, "3"), plot_bulk_vs_control(both, "3"), plot_stationary(rows, "3")):
        assert legibility_problems(fig) == [], fig.texts[0].get_text() if fig.texts else fig
        plt.close(fig)
    decay = plot_decay(both, "3")
    legend = decay.legends[0]  # one legend below the panels, no axis legend left
    assert all(ax.get_legend() is None for ax in decay.axes)
    texts = [t.get_text() for t in legend.get_texts()]
    # one column per group, each headed by its title: L2 strengths, widths, data-free twins
    assert legend._ncols == 3 and texts[0] == "L2 strength" and "width N" in texts
    assert texts[texts.index("penalty only (no data)") + 1] == "L2 = 0.01"
    plt.close(decay)


def test_plot_before_after_draws_the_first_spectrum_and_every_case_with_its_edge():
    book_style()
    rng = np.random.default_rng(0)
    fits = [
        (f"case {i}", fit_mp(rng.standard_normal((200, 100)) * (i + 1), config=FitConfig(beta=0.1))) for i in range(3)
    ]
    fig = plot_before_after(fits, "3", 200)
    left, right = fig.axes
    assert left.get_title() == "case 0"
    assert len(right.get_lines()) == 6  # a curve and an edge per case
    assert right.get_lines()[5].get_ydata()[0] == pytest.approx(fits[2][1].sv_edge)
    assert legibility_problems(fig) == []
    plt.close(fig)
    with pytest.raises(InputError, match="no fits"):
        plot_before_after([], "3", 200)
