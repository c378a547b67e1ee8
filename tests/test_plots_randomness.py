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
    accuracy_view,
    certificate_views,
    estimated_split_view,
    monotonicity_view,
    plot_before_after,
    plot_bulk_vs_control,
    plot_decay,
    plot_noise_paths,
    plot_planted_slack,
    plot_planted_theta,
    plot_singular_values,
    plot_stationary,
    plot_theta_paths,
    slack_views,
    splits_view,
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
    fits = [(f"case {i}", fit_mp(rng.standard_normal((200, 100)) * (i + 1), fit_config=fc)) for i in range(2)]
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


def _paths():
    rows = [
        {"l2": l2, "target": target, "data": data, "theta": t, "loss": 1 + t + l2, "ce": 1 - t, "accuracy": 0.9}
        for l2 in (0.0, 1e-3)
        for target in ("1", "all")
        for data in ("train", "test")
        for t in (0.0, 0.5, 1.0)
    ]
    return pd.DataFrame(rows)


def test_theta_paths_figure_draws_each_strength_and_target_on_the_training_images():
    paths = _paths()
    fig = plot_theta_paths(paths)
    loss_ax, ce_ax = fig.axes[:2]
    labels = [t.get_text() for t in ce_ax.get_legend().get_texts()]
    assert labels == ["L2 0, 1", "L2 0, all", "L2 0.001, 1", "L2 0.001, all"]
    lines = [line for line in loss_ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 4  # the test rows are not drawn: one line per curve, not two
    assert sorted(float(line.get_ydata()[-1]) for line in lines) == pytest.approx([2.0, 2.0, 2.001, 2.001])
    assert "fraction of the bulk kept" in loss_ax.get_xlabel()
    plt.close(fig)
    with pytest.raises(InputError, match="training images"):
        plot_theta_paths(paths[paths["data"] == "test"])


def test_noise_paths_figure_draws_three_metrics_per_strength():
    noise = pd.DataFrame(
        [
            {"l2": l2, "scale": t, "draw": d, "loss": t + d, "ce": t, "accuracy": 1 - t / 10}
            for l2 in (0.0, 1e-3)
            for d in (0, 1)
            for t in (0.0, 1.0, 2.0)
        ]
    )
    fig = plot_noise_paths(noise)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 3
    assert [t.get_text() for t in panels[-1].get_legend().get_texts()] == ["0", "0.001"]
    means = [line.get_ydata() for line in panels[0].get_lines() if len(line.get_xdata()) == 3]
    np.testing.assert_allclose(means[0], [0.5, 1.5, 2.5])  # the mean over the two draws
    plt.close(fig)


def _cells(styler) -> list[str]:
    """The displayed text of every body cell, row by row."""
    return [
        str(c["display_value"]) for row in styler._translate(False, False)["body"] for c in row if "data" in c["class"]
    ]


def _headers(styler) -> list[str]:
    return [c["display_value"] for c in styler._translate(False, False)["head"][0] if "col_heading" in c["class"]]


def test_chapter_3_tables_show_l2_as_written_headers_in_words_and_no_bare_index():
    splits = pd.DataFrame(
        [{"l2": 1e-4, "layer": "1", "shape": "256 x 784", "spikes": 19, "||S||_F^2": 81.1092, "||R||_F^2": 205.17,
          "bulk share of energy": 0.71674, "lambda ||R||_F^2": 0.0205172}]
    )  # fmt: skip
    styler = splits_view(splits)
    assert _cells(styler) == ["0.0001", "1", "256×784", "19", "81.1", "205.2", "0.717", "0.0205"]
    assert _headers(styler) == ["L2", "layer", "shape", "spikes", "‖S‖²", "‖R‖²", "bulk share of energy", "λ‖R‖²"]
    assert "row_heading" not in styler.to_html()
    accuracy = pd.DataFrame({"test accuracy, theta = 0": [0.94791]}, index=pd.MultiIndex.from_tuples(
        [(1e-3, "all")], names=["l2", "target"]))  # fmt: skip
    assert _cells(accuracy_view(accuracy)) == ["0.001", "all", "0.9479"]
    mono = pd.DataFrame(
        [{"l2": 0.0, "target": "all", "metric": "ce", "expect": "increasing", "holds": False, "n_violations": 10,
          "worst_violation": 0.000499, "change": -0.0206, "spearman": -1.0}]
    )  # fmt: skip
    styler = monotonicity_view(mono)
    assert _cells(styler) == ["0", "all", "ce", "False", "10", "0.000499", "-0.0206", "-1.00"]
    assert _headers(styler)[-4:] == ["steps against", "worst step against", "change", "Spearman"]
    assert _headers(monotonicity_view(mono.drop(columns="target")))[:2] == ["L2", "metric"]  # the noise path
    with pytest.raises(InputError, match="no column to show"):
        monotonicity_view(pd.DataFrame({"x": [1]}))


def test_wide_tables_are_split_in_two_and_rounded_for_a_reader():
    certs = pd.DataFrame(
        [{"l2": 0.001, "layer": "3", "split": "MP bulk", "lipschitz_rest": 19.8577, "ce_A": 0.01621, "ce_S": 0.02191,
          "penalty_removed": 0.03251, "bound": 37.4, "holds": True, "guarantees a decrease": False,
          "certified_lipschitz": 0.0, "certified_observed": 0.9934, "label_changed": 0.0034, "rhs": 9.0}]
    )  # fmt: skip
    bound, samples = certificate_views(certs)
    assert _cells(bound) == ["0.001", "3", "MP bulk", "19.9", "37.4", "0.0325", "True", "False"]
    assert _cells(samples) == ["0.001", "3", "MP bulk", "0.0162", "0.0219", "0.0%", "99.3%", "0.3%"]
    slack = pd.DataFrame(
        {"N": [256, 4096], "seeds": [8, 8], "slack_mean": [-0.0709, -0.0054], "slack_ce_mean": [-0.0709, -0.0054],
         "slack_penalty_mean": [-2.947e-05, 6e-6], "abs_slack_mean": [0.0709, 0.0054], "reg_removed": [0.0256, 0.4096],
         "holds_fraction": [1.0, 0.875], "ce_raised_fraction": [1.0, 0.875], "acc_S": [1.0, 1.0],
         "acc_W": [0.84471, 0.95381]}
    ).set_index("N")  # fmt: skip
    sizes, counts = slack_views(slack)
    assert _cells(sizes) == [
        "256", "8", "-0.0709", "-0.0709", "-2.95e-05", "0.0709", "0.0256",
        "4096", "8", "-0.0054", "-0.0054", "+6e-06", "0.0054", "0.41",
    ]  # fmt: skip
    assert _cells(counts) == ["256", "1.000", "1.000", "1.0000", "0.8447", "4096", "0.875", "0.875", "1.0000", "0.9538"]
    assert max(len(_headers(t)) for t in (bound, samples, sizes, counts)) <= 8
    estimated = pd.DataFrame(
        {"rank": [8], "spikes_found": [8.0], "acc_S": [1.0], "acc_split": [0.86333], "slack_true": [-0.0709],
         "slack_split": [-0.00551]}, index=pd.Index([256], name="N"),
    )  # fmt: skip
    assert _cells(estimated_split_view(estimated)) == ["256", "8", "8.00", "1.0000", "0.8633", "-0.0709", "-0.00551"]


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
        (f"case {i}", fit_mp(rng.standard_normal((200, 100)) * (i + 1), fit_config=FitConfig(beta=0.1)))
        for i in range(3)
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
