"""Chapter 2's reading of its control: counts, sentences and verdict follow the ratios exactly."""

import numpy as np
import pandas as pd
import pytest

from rmtlib.errors import InputError
from rmtlib.experiments.decay_reading import (
    collapsed_bulk_finding,
    control_conclusion,
    control_counts,
    control_reading,
    decay_verdict,
)


def _control(ratios, spikes=(0.0, 5.0)):
    """A control_comparison-shaped table with the given bulk_vs_control ratios."""
    n = len(ratios)
    return pd.DataFrame(
        {
            "width": [64 * (1 + i // 2) for i in range(n)],
            "l2": [0.001 if i % 2 == 0 else 0.01 for i in range(n)],
            "layer": ["1"] * n,
            "bulk_vs_control": ratios,
            "spike_energy_init": [spikes[0]] * n,
            "spike_energy_trained": [spikes[1]] * n,
        }
    )


def test_counts_split_the_ratios_at_the_weight_decay_band():
    c = control_counts(_control([0.79, 0.8, 1.0, 1.25, 1.3, 2e20]))
    assert (c.cases, c.within, c.slower, c.faster, c.spikes_grew) == (6, 3, 2, 1, 6)
    assert c.median == pytest.approx(1.125) and c.high == 2e20
    assert c.slower_cases == ("N = 192, L2 = 0.001, layer 1", "N = 192, L2 = 0.01, layer 1")
    with pytest.raises(InputError, match="bulk_vs_control"):
        control_counts(pd.DataFrame({"width": [1]}))


def test_reading_names_the_cases_outside_the_band_and_prints_huge_ratios_compactly():
    text = control_reading(_control([0.9, 1.1, 1.4e20]))
    assert text.startswith("The ratio lies between 0.8 and 1.25 in 2 of the 3 cases")
    assert "In 1 it fell more slowly with data than without (ratio above 1.25, up to 1.4e+20: N = 128" in text
    assert "faster" not in text
    assert "in none of the 3 cases did training on data make it fall faster" in control_conclusion(
        _control([0.9, 1.0, 2.0])
    )
    assert "in 1 of the 2 cases training on data made it fall faster" in control_conclusion(_control([0.5, 1.0]))


@pytest.mark.parametrize(
    "ratios, verdict",
    [
        ([0.9, 1.0, 1.1], "shown as weight decay, not as a data effect"),
        ([0.9, 1.0, 3.0], "shown as weight decay (where not, the data slowed the decay), not as a data effect"),
        ([0.9, 3.0, 4.0], "the bulk falls more slowly with data than by weight decay alone"),
        ([0.5, 0.6, 1.0], "the bulk falls faster with data"),
        ([0.5, 1.0, 3.0], "mixed: faster with data in 1, slower in 1 of 3 cases"),
    ],
)
def test_verdict_follows_the_counts(ratios, verdict):
    (row,) = decay_verdict(_control(ratios))
    assert row["verdict"] == verdict
    assert f"median {np.median(ratios):.2f} over 3 runs" in row["measured"]
    assert decay_verdict(_control([])) == []


def test_collapsed_bulk_finding_counts_fits_at_and_below_the_floor():
    # p = 100 and alpha = 0.25: BEMA's floor is 0.75
    final = pd.DataFrame(
        {"epoch": 3, "m": 100, "n": 784, "gamma": [0.75, 0.70, 0.9], "width": 100, "layer": "1", "l2": [0.01, 0.1, 0.0]}
    )
    early = final.assign(epoch=0, gamma=0.5)  # only the last epoch counts
    text = collapsed_bulk_finding(pd.concat([early, final], ignore_index=True), 0.25)
    assert text.startswith("In 2 of 3 final fits gamma is at or below 1 - alpha = 0.75 (1 at it, 1 below;")
    assert "L2 = 0.1: gamma 0.700" in text
    assert collapsed_bulk_finding(final.assign(gamma=0.9), 0.25) is None
    with pytest.raises(InputError, match="alpha"):
        collapsed_bulk_finding(final, 0.5)
