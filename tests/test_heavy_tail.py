"""Hill's estimator against exact Pareto samples and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rmtlib.errors import InputError
from rmtlib.spectral.heavy_tail import hill_alpha


def test_recovers_the_exponent_of_pareto_eigenvalues():
    """lambda ~ Pareto with density exponent a (P(lambda > x) = x^-(a-1)): Hill's estimate of
    1 + 1/E[log(lambda/lambda_(k+1))] tends to a as k grows (k/n -> 0)."""
    rng = np.random.default_rng(0)
    for a in (2.0, 3.0, 5.0):
        lam = rng.pareto(a - 1, size=400_000) + 1.0  # tail index a - 1 for the survival function
        est = hill_alpha(np.sqrt(lam), k=4000)
        assert est == pytest.approx(a, rel=0.04)


def test_by_hand_and_heavier_tails_give_smaller_alpha():
    sv = np.sqrt(np.array([8.0, 4.0, 2.0, 1.0]))
    # mean(log 8, log 4, log 2) = 2 log 2
    assert hill_alpha(sv, k=3) == pytest.approx(1 + 1 / (2 * np.log(2)))
    light = np.sqrt(np.linspace(1.0, 2.0, 50))
    heavy = np.sqrt(np.geomspace(1.0, 1e4, 50))
    assert hill_alpha(heavy, k=20) < hill_alpha(light, k=20)
    assert hill_alpha(np.ones(30), k=20) == float("inf")


def test_bad_input_is_named():
    with pytest.raises(InputError, match="at least k \\+ 1 = 21"):
        hill_alpha(np.ones(10))
    with pytest.raises(InputError, match="k must be"):
        hill_alpha(np.ones(30), k=0)
    with pytest.raises(InputError, match="must be positive"):
        hill_alpha(np.r_[np.ones(20), np.zeros(5)], k=20)
