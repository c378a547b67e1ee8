"""Chapter 2's reading of its runs: the trained bulk against weight decay alone, fits whose bulk
collapsed below BEMA's window, and the chapter's row of the introduction's verdict table.

Each trained run with an L2 penalty has a data-free twin (the same penalty and optimizer without
data, :func:`rmtlib.experiments.randomness.penalty_only_run`), which shrinks by weight decay alone.
:func:`rmtlib.experiments.randomness.control_comparison` gives, per (width, L2, layer), the trained
bulk energy over the twin's, ``bulk_vs_control``. A ratio inside :data:`WEIGHT_DECAY_BAND` reads as
"as fast as weight decay alone"; above it the bulk fell more slowly with data, below it faster. The
sentences here are generated from those counts, so the page cannot claim more than its run shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rmtlib.errors import InputError

__all__ = [
    "WEIGHT_DECAY_BAND",
    "ControlCounts",
    "control_counts",
    "control_reading",
    "control_conclusion",
    "decay_verdict",
    "collapsed_bulk_finding",
]

WEIGHT_DECAY_BAND = (0.8, 1.25)
"""Ratios of trained to data-free bulk energy read as "the decay weight decay alone causes" (20% either way)."""


@dataclass(frozen=True)
class ControlCounts:
    """How the ratios of one :func:`control_comparison` table fall against :data:`WEIGHT_DECAY_BAND`."""

    cases: int
    median: float
    low: float
    high: float
    within: int
    slower: int
    faster: int
    spikes_grew: int
    slower_cases: tuple[str, ...]
    faster_cases: tuple[str, ...]


def _case(row: pd.Series) -> str:
    return f"N = {row['width']}, L2 = {row['l2']:g}, layer {row['layer']}"


def control_counts(table: pd.DataFrame) -> ControlCounts:
    """Count the (width, L2, layer) cases whose bulk fell as fast as, slower or faster than weight decay alone."""
    missing = {"width", "l2", "layer", "bulk_vs_control", "spike_energy_init", "spike_energy_trained"} - set(table)
    if missing:
        raise InputError(f"control_counts needs control_comparison's columns; missing {sorted(missing)}")
    ratio = table["bulk_vs_control"].astype(float)
    low, high = WEIGHT_DECAY_BAND
    slower, faster = table[ratio > high], table[ratio < low]
    return ControlCounts(
        cases=len(table),
        median=float(ratio.median()) if len(table) else float("nan"),
        low=float(ratio.min()) if len(table) else float("nan"),
        high=float(ratio.max()) if len(table) else float("nan"),
        within=int(((ratio >= low) & (ratio <= high)).sum()),
        slower=len(slower),
        faster=len(faster),
        spikes_grew=int((table["spike_energy_trained"] > table["spike_energy_init"]).sum()),
        slower_cases=tuple(_case(r) for _, r in slower.iterrows()),
        faster_cases=tuple(_case(r) for _, r in faster.iterrows()),
    )


def control_reading(table: pd.DataFrame) -> str:
    """Sentences (Markdown) saying where the trained bulk fell as fast as its twin's, where slower and
    where faster, naming the cases outside the band."""
    c = control_counts(table)
    if not c.cases:
        return "No (width, L2, layer) case has both a trained and a data-free run."
    low, high = WEIGHT_DECAY_BAND
    text = (
        f"The ratio lies between {low:g} and {high:g} in {c.within} of the {c.cases} cases: there the bulk fell "
        "as fast as weight decay alone makes it fall."
    )
    if c.slower:
        text += (
            f" In {c.slower} it fell more slowly with data than without (ratio above {high:g}, up to "
            f"{c.high:.3g}: {'; '.join(c.slower_cases)})."
        )
    if c.faster:
        text += (
            f" In {c.faster} it fell faster with data (ratio below {low:g}, down to {c.low:.3g}: "
            f"{'; '.join(c.faster_cases)})."
        )
    return text


def control_conclusion(table: pd.DataFrame) -> str:
    """One sentence (Markdown): does the control show that training *on data* removes randomness?"""
    c = control_counts(table)
    if not c.cases:
        return "Without data-free twins this run cannot tell training from weight decay."
    if not c.faster:
        return (
            'So "the bulk collapses with L2" is shown, but in none of the '
            f"{c.cases} cases did training on data make it fall faster than weight decay alone: the bulk "
            "curves do not show that *training on data* removes randomness."
        )
    return (
        f'So "the bulk collapses with L2" is shown, and in {c.faster} of the {c.cases} cases training on '
        f"data made it fall faster than weight decay alone (ratio below {WEIGHT_DECAY_BAND[0]:g})."
    )


def decay_verdict(table: pd.DataFrame) -> list[dict[str, str]]:
    """Chapter 2's row of the introduction's verdict table (none without data-free twins).

    The verdict follows the counts of :func:`control_counts`: every case inside the band, weight decay
    explains the decay; faster cases none and inside the majority, weight decay explains it where the
    data did not slow it; otherwise the side that most cases lie on.
    """
    c = control_counts(table)
    if not c.cases:
        return []
    if not c.slower and not c.faster:
        verdict = "shown as weight decay, not as a data effect"
    elif not c.faster and c.within >= c.slower:
        verdict = "shown as weight decay (where not, the data slowed the decay), not as a data effect"
    elif not c.faster:
        verdict = "the bulk falls more slowly with data than by weight decay alone"
    elif not c.slower and c.faster > c.within:
        verdict = "the bulk falls faster with data"
    else:
        verdict = f"mixed: faster with data in {c.faster}, slower in {c.slower} of {c.cases} cases"
    low, high = WEIGHT_DECAY_BAND
    return [
        {
            "claim": "T2: training with L2 removes the random part of the weights (the MP bulk decays)",
            "paper": "theorem (at a stationary point of the L2-regularized loss the random part vanishes)",
            "measured": f"bulk energy / its data-free twin's: median {c.median:.2f} over {c.cases} runs, "
            f"{low:g}-{high:g} in {c.within}, above in {c.slower}, below in {c.faster}; spike energy grew in "
            f"{c.spikes_grew} of {c.cases}",
            "verdict": verdict,
        }
    ]


def collapsed_bulk_finding(spectra: pd.DataFrame, alpha: float) -> str | None:
    """A sentence on the final fits whose bulk fraction gamma is at or below BEMA's floor, else None.

    ``spectra``: the fitted rows (status ``ok``) of trained runs, one per (width, l2, layer, epoch).
    When more than a fraction ``alpha`` of a layer's singular values are spikes, BEMA's central window
    sees only the collapsed remainder, and gamma falls to floor((1 - alpha) p) / p or below.
    """
    if not 0 <= alpha < 0.5:
        raise InputError(f"alpha must lie in [0, 0.5), got {alpha}")
    last = spectra[spectra["epoch"] == spectra["epoch"].max()]
    p_min = np.minimum(last["m"], last["n"])
    floor = np.floor((1 - alpha) * p_min) / p_min  # gamma when every value above BEMA's window is a spike
    stuck = last[last["gamma"] <= floor + 1e-12]
    if not len(stuck):
        return None
    at = np.isclose(stuck["gamma"], floor[stuck.index], rtol=0, atol=1e-12)
    fits = "; ".join(f"N = {r.width}, layer {r.layer}, L2 = {r.l2:g}: gamma {r.gamma:.3f}" for r in stuck.itertuples())
    return (
        f"In {len(stuck)} of {len(last)} final fits gamma is at or below 1 - alpha = {1 - alpha:g} "
        f"({int(at.sum())} at it, {int((~at).sum())} below; {fits}): there the collapsed bulk is smaller than "
        "BEMA's central window assumes, see the note below."
    )
