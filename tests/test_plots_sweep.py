"""The benchmark figure: one panel per level, two per row, each point at its drop with its interval."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rmtlib.errors import InputError  # noqa: E402
from rmtlib.plots.sweep import plot_drop_by_level  # noqa: E402


def _table() -> pd.DataFrame:
    rows = [dict(method="dense", level="dense", sparsity=0.0, drop_pp=0.0, drop_low_pp=0.0, drop_high_pp=0.0)]
    for i, level in enumerate(["50%", "70%", "2:4"]):
        for j, method in enumerate(["glob", "layer", "rmt"]):
            drop = 0.5 + 3 * i + j
            rows.append(dict(method=method, level=level, sparsity=0.5 + 0.1 * i, drop_pp=drop,
                             drop_low_pp=drop - 0.3, drop_high_pp=drop + 0.4 + 0.1 * j))  # fmt: skip
    return pd.DataFrame(rows).assign(reference="glob")


def test_each_panel_draws_the_drops_and_intervals_of_its_level():
    table = _table()
    fig = plot_drop_by_level(table)
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 3 and len(fig.axes) == 4  # two panels per row, the fourth slot left empty
    width, height = fig.get_size_inches()
    assert width / height <= 2.6
    for ax, level in zip(axes, ["50%", "70%", "2:4"]):
        assert ax.get_title().startswith(level)
        group = table[table.level == level].sort_values("drop_pp", ascending=False)
        assert [t.get_text() for t in ax.get_yticklabels()] == list(group.method)
        points = ax.collections[-1].get_offsets()
        np.testing.assert_allclose(points[:, 0], group.drop_pp)
        segments = ax.collections[0].get_segments()  # the error bars, one segment per method
        np.testing.assert_allclose([s[0][0] for s in segments], group.drop_low_pp)
        np.testing.assert_allclose([s[1][0] for s in segments], group.drop_high_pp)
        reference = list(group.method).index("glob")
        assert tuple(ax.collections[-1].get_facecolors()[reference][:3]) == (0.0, 0.0, 0.0)
    assert "2:4 (70.0% of parameters)" == axes[2].get_title()
    with pytest.raises(InputError, match="no levels"):
        plot_drop_by_level(table[table.method == "dense"])
