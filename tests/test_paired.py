"""Paired statistics: McNemar's exact test by hand and against scipy, the bootstrap interval's coverage."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from rmtlib.errors import InputError
from rmtlib.experiments.paired import compare, mcnemar, paired_bootstrap


def _table(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample correctness of two models with the given 2x2 table, shuffled."""
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, dtype=bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, dtype=bool)
    order = np.random.default_rng(0).permutation(len(a))
    return a[order], b[order]


def test_mcnemar_matches_a_hand_computation():
    # 1 vs 7 discordant samples: P(X <= 1) for X ~ Bin(8, 1/2) is 9/256; two-sided doubles it
    a, b = _table(50, 1, 7, 5)
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b) == (1, 7)
    assert result.p_value == pytest.approx(2 * 9 / 256, rel=1e-12)
    # symmetric in the two models, and concordant samples do not matter
    assert mcnemar(b, a).p_value == pytest.approx(result.p_value, rel=1e-12)
    assert mcnemar(*_table(5000, 1, 7, 900)).p_value == pytest.approx(result.p_value, rel=1e-12)


@pytest.mark.parametrize("only_a,only_b", [(0, 0), (3, 3), (10, 25), (40, 12), (0, 9)])
def test_mcnemar_equals_scipys_binomial_test(only_a, only_b):
    result = mcnemar(*_table(100, only_a, only_b, 20))
    n = only_a + only_b
    expected = 1.0 if n == 0 else binomtest(only_a, n, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    if n:  # the exact two-sided sum of the binomial tail, written out
        k = min(only_a, only_b)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        assert result.p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-9)


def test_bootstrap_covers_the_true_difference_at_its_nominal_rate():
    # paired correctness with correlated errors: one shared difficulty u per sample (a misses when
    # u > 0.90, b when u > 0.86), then each answer flipped independently with probability 0.025
    rng = np.random.default_rng(1)
    true = _true_diff(0.90, 0.86, 0.05)
    covered, trials, n = 0, 300, 500
    for t in range(trials):
        u = rng.random(n)
        a = (u < 0.90) ^ (rng.random(n) < 0.025)
        b = (u < 0.86) ^ (rng.random(n) < 0.025)
        _, lo, hi = paired_bootstrap(a, b, n_boot=400, seed=t)
        covered += lo <= true <= hi
    rate = covered / trials
    assert 0.90 <= rate <= 0.985, rate  # nominal 0.95; the binomial sd over 300 trials is 0.013


def _true_diff(pa: float, pb: float, flip: float) -> float:
    """P(a correct) - P(b correct) when each is flipped with probability flip/2 independently."""
    f = flip / 2
    return (pa * (1 - f) + (1 - pa) * f) - (pb * (1 - f) + (1 - pb) * f)


def test_bootstrap_is_seeded_and_centred_on_the_observed_difference():
    a, b = _table(300, 30, 10, 60)
    first = paired_bootstrap(a, b, n_boot=500, seed=3)
    assert first == paired_bootstrap(a, b, n_boot=500, seed=3)
    assert first[0] == pytest.approx((30 - 10) / 400)
    assert first[1] < first[0] < first[2]
    out = compare(a, b, n_boot=500, seed=3)
    assert out["diff_pp"] == pytest.approx(5.0)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((100 * first[1], 100 * first[2]))
    assert out["p_value"] == pytest.approx(binomtest(30, 40, 0.5).pvalue)


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="same samples"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(InputError, match="no samples"):
        paired_bootstrap(np.array([]), np.array([]))
    with pytest.raises(InputError, match="level"):
        paired_bootstrap(np.ones(3), np.ones(3), level=1.5)
