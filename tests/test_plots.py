import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rmtlib import fit_mp  # noqa: E402
from rmtlib.plots.spectra import plot_depth_summary, plot_esd, plot_esd_grid, save_figure  # noqa: E402


def test_esd_plot_draws_fitted_density_and_edge(tmp_path, rng):
    fit = fit_mp(rng.normal(size=(200, 400)))
    ax = plot_esd(fit)
    edge_lines = [line for line in ax.lines if np.allclose(line.get_xdata(), fit.lambda_plus)]
    assert len(edge_lines) == 1
    density = ax.lines[0]
    assert density.get_ydata().max() > 0
    path = save_figure(ax.figure, tmp_path / "esd.png")
    assert path.stat().st_size > 5000


def test_grid_and_depth_summary(tmp_path, rng):
    fits = [(f"layer{i}", fit_mp(rng.normal(size=(64, 128)))) for i in range(5)]
    fig = plot_esd_grid(fits, ncols=3)
    assert len([ax for ax in fig.axes if ax.axison]) == 5
    table = pd.DataFrame(
        {
            "layer": [f"blocks.{i}.fc" for i in range(4)],
            "block": [0.0, 1.0, 2.0, 3.0],
            "gamma": [0.9, 0.8, 0.7, 0.6],
            "n_spikes": [1, 2, 3, 4],
            "status": ["ok"] * 4,
        }
    )
    fig = plot_depth_summary(table)
    assert save_figure(fig, tmp_path / "depth.png").exists()
