"""Paired statistics of two models scored on the same samples (numpy/scipy only).

Two pruned models evaluated on one test set differ on a few samples; whether their top-1
difference is more than noise is a question about those discordant samples, not about two
independent accuracies. :func:`mcnemar` is McNemar's exact test (a two-sided binomial test on the
discordant pairs); :func:`paired_bootstrap` a seeded percentile interval of the top-1 difference
that resamples samples, keeping the pairs together; :func:`compare` both at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from rmtlib.errors import InputError

__all__ = ["McNemar", "mcnemar", "paired_bootstrap", "compare"]


@dataclass(frozen=True)
class McNemar:
    """``only_a``: samples model A gets right and B wrong; ``only_b`` the reverse; ``p_value`` two-sided."""

    only_a: int
    only_b: int
    p_value: float


def _pair(a: np.ndarray, b: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise InputError(f"{name}: two 1-d arrays of the same samples are needed, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        raise InputError(f"{name}: no samples")
    return a, b


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test of equal accuracy from per-sample correctness (booleans) of two models.

    Under the null hypothesis each discordant sample is A's or B's with probability 1/2, so the
    p-value is the two-sided binomial test of ``only_a`` in ``only_a + only_b`` trials (1 without
    discordant samples).
    """
    a, b = _pair(correct_a, correct_b, "mcnemar")
    a, b = a.astype(bool), b.astype(bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(only_a=only_a, only_b=only_b, p_value=p)


def paired_bootstrap(
    values_a: np.ndarray,
    values_b: np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> tuple[float, float, float]:
    """(mean difference A - B, lower, upper): a percentile bootstrap interval at ``level`` that draws
    samples with replacement, each draw keeping A's and B's value of one sample together.

    With per-sample correctness the difference is one of top-1 (multiply by 100 for pp).
    """
    a, b = _pair(values_a, values_b, "paired_bootstrap")
    if not 0.0 < level < 1.0:
        raise InputError(f"paired_bootstrap: level must be in (0, 1), got {level!r}")
    if int(n_boot) < 1:
        raise InputError(f"paired_bootstrap: n_boot must be >= 1, got {n_boot!r}")
    d = a.astype(np.float64) - b.astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(int(n_boot))
    for start in range(0, int(n_boot), chunk):
        stop = min(start + chunk, int(n_boot))
        means[start:stop] = d[rng.integers(0, len(d), size=(stop - start, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(d.mean()), float(lo), float(hi)


def compare(
    correct: np.ndarray, correct_ref: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """A model against a reference on the same samples: ``diff_pp`` (top-1 difference, pp), its
    bootstrap interval ``ci_low``/``ci_high`` (pp) and McNemar's ``p_value``."""
    test = mcnemar(correct, correct_ref)
    diff, lo, hi = paired_bootstrap(correct, correct_ref, n_boot=n_boot, level=level, seed=seed)
    return {"diff_pp": 100 * diff, "ci_low": 100 * lo, "ci_high": 100 * hi, "p_value": test.p_value}
