"""Spiked matrices and the BBP transition, checked against exact algebra and random-matrix theory."""

import numpy as np
import pytest

from rmtlib.errors import InputError
from rmtlib.experiments.spiked import (
    bbp_detection,
    bbp_singular_value,
    bbp_threshold,
    spiked_matrix,
    tw_scaled_top_eigenvalues,
)
from rmtlib.spectral.fit import singular_values


def test_noise_free_spiked_matrix_has_exactly_the_planted_singular_values(rng):
    strengths = [7.0, 3.0, 0.5]
    w = spiked_matrix(60, 25, strengths, sigma=0.0, rng=rng)
    sv = singular_values(w)
    np.testing.assert_allclose(sv[:3], strengths, rtol=1e-10)
    assert np.all(sv[3:] < 1e-6)


def test_threshold_and_limit_agree_at_the_transition():
    m, n, sigma = 3072, 768, 0.02
    thr = bbp_threshold(m, n, sigma)
    assert thr == pytest.approx(sigma * (3072 * 768) ** 0.25)
    edge = sigma * (np.sqrt(3072) + np.sqrt(768))
    # the spike formula meets the bulk edge exactly at the threshold, and is above it beyond
    assert bbp_singular_value(thr * (1 + 1e-12), m, n, sigma) == pytest.approx(edge, rel=1e-9)
    assert bbp_singular_value(0.5 * thr, m, n, sigma) == pytest.approx(edge)
    assert bbp_singular_value(2 * thr, m, n, sigma) > edge * 1.05
    # the shape is symmetric in (m, n)
    assert bbp_singular_value(2 * thr, n, m, sigma) == pytest.approx(bbp_singular_value(2 * thr, m, n, sigma))


def test_simulated_top_singular_value_matches_bbp_limit(rng):
    m, n = 800, 400
    theta = 2.5 * bbp_threshold(m, n)
    tops = [singular_values(spiked_matrix(m, n, [theta], rng=rng))[0] for _ in range(4)]
    assert np.mean(tops) == pytest.approx(float(bbp_singular_value(theta, m, n)), rel=0.01)


def test_scaled_top_eigenvalue_follows_tracy_widom(rng):
    x = tw_scaled_top_eigenvalues(400, 200, 300, sigma=0.3, rng=rng)
    # TW1 mean -1.2065, sd 1.2680; finite-size and sampling error allow ~0.2
    assert x.mean() == pytest.approx(-1.2065, abs=0.2)
    assert x.std() == pytest.approx(1.2680, abs=0.2)


def test_detection_rate_is_beta_without_signal_and_one_far_above_threshold():
    table = bbp_detection([(200, 100)], [0.0, 3.0], 150, betas=(0.8, 0.1), seed=1)
    rate = table.set_index(["rel_strength", "beta"])["detection_rate"]
    # without signal the top noise eigenvalue exceeds the TW (1 - beta) quantile with probability ~beta
    assert rate[(0.0, 0.8)] == pytest.approx(0.8, abs=0.12)
    assert rate[(0.0, 0.1)] == pytest.approx(0.1, abs=0.08)
    assert rate[(3.0, 0.8)] == 1.0 and rate[(3.0, 0.1)] == 1.0
    assert (table["sigma2_rel_error"] < 0.03).all()


def test_bad_input_is_named():
    with pytest.raises(InputError, match="rank 3 exceeds"):
        spiked_matrix(10, 2, [1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="n_trials"):
        bbp_detection([(20, 10)], [1.0], 0)
    with pytest.raises(InputError, match="shape"):
        bbp_threshold(0, 5)


def test_monte_carlo_restores_torch_thread_count():
    import torch

    before = torch.get_num_threads()
    bbp_detection([(40, 20)], [1.0], 2, seed=0)
    tw_scaled_top_eigenvalues(40, 20, 2)
    assert torch.get_num_threads() == before


def test_bbp_limit_depends_only_on_the_size_of_the_strength(rng):
    m, n = 800, 400
    theta = 3.0 * bbp_threshold(m, n)
    # spiked_matrix with -theta is theta (-u) v^T: the same outlier as +theta
    tops = [singular_values(spiked_matrix(m, n, [-theta], rng=rng))[0] for _ in range(3)]
    assert np.mean(tops) == pytest.approx(float(bbp_singular_value(-theta, m, n)), rel=0.01)
    assert bbp_singular_value(-theta, m, n) == bbp_singular_value(theta, m, n)
    assert np.isnan(bbp_singular_value(np.nan, m, n))


def test_noise_scale_must_be_valid():
    with pytest.raises(InputError, match="sigma"):
        bbp_threshold(20, 10, sigma=-1.0)
    with pytest.raises(InputError, match="sigma"):
        bbp_singular_value(3.0, 20, 10, sigma=float("nan"))
    with pytest.raises(InputError, match="sigma"):
        tw_scaled_top_eigenvalues(40, 20, 2, sigma=0.0)
    with pytest.raises(InputError, match="sigma"):
        bbp_detection([(40, 20)], [1.0], 2, sigma=0.0)
    # a noise-free matrix is still a valid model: its top singular value is theta itself
    assert bbp_singular_value(2.5, 20, 10, sigma=0.0) == pytest.approx(2.5)


def test_finite_size_centrings_bring_the_top_eigenvalue_closer_to_tracy_widom():
    """At 100 x 50 the paper's centring puts the scaled top noise eigenvalue ~0.18 left of TW1's mean
    (false alarms below beta); Ma's half-integer shifts remove that bias (Ma 2012)."""
    from rmtlib.experiments.spiked import noise_top_eigenvalues, tw_standardize

    top = noise_top_eigenvalues(100, 50, 2000, sigma=0.7, rng=np.random.default_rng(5))
    mean = {c: tw_standardize(top, 100, 50, c).mean() for c in ("paper", "johnstone", "ma")}
    se = 1.268 / np.sqrt(len(top))
    assert mean["paper"] < -1.2065 - 4 * se  # biased low
    assert abs(mean["ma"] + 1.2065) < 3 * se
    assert abs(mean["johnstone"] + 1.2065) < abs(mean["paper"] + 1.2065)
    assert np.array_equal(
        tw_standardize(top, 100, 50), tw_scaled_top_eigenvalues(100, 50, 2000, sigma=0.7, rng=np.random.default_rng(5))
    )
    with pytest.raises(InputError, match="edge centring"):
        tw_standardize(top, 100, 50, "exact")
