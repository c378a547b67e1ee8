import numpy as np
import pytest
from scipy.integrate import quad

from rmtlib.theory.tracy_widom import tw1_cdf, tw1_ppf


def test_mean_and_standard_deviation_match_published_values():
    # Tracy & Widom (1996); Bornemann (2010): mean -1.2065335746, variance 1.6077810345
    upper = quad(lambda s: 1 - tw1_cdf(s), 0, 12)[0]
    lower = quad(lambda s: tw1_cdf(s), -12, 0)[0]
    mean = upper - lower
    second = 2 * quad(lambda s: s * (1 - tw1_cdf(s)), 0, 12)[0] - 2 * quad(lambda s: s * tw1_cdf(s), -12, 0)[0]
    assert mean == pytest.approx(-1.2065335746, abs=1e-6)
    assert np.sqrt(second - mean**2) == pytest.approx(1.2680, abs=1e-4)
    assert second - mean**2 == pytest.approx(1.6077810345, abs=1e-6)


@pytest.mark.parametrize("q, expected", [(0.90, 0.4501), (0.95, 0.9793), (0.99, 2.0234)])
def test_upper_quantiles_match_tables(q, expected):
    assert tw1_ppf(q) == pytest.approx(expected, abs=1e-3)


def test_cdf_is_monotone_and_inverts_ppf():
    s = np.linspace(-6, 4, 41)
    f = tw1_cdf(s)
    assert np.all(np.diff(f) > 0) and f[0] < 1e-4 and f[-1] > 0.999
    for q in (0.05, 0.2, 0.5, 0.8):
        assert tw1_cdf(tw1_ppf(q)) == pytest.approx(q, abs=1e-10)


def test_gaussian_orthogonal_ensemble_largest_eigenvalue():
    # independent check: largest eigenvalue of GOE(n) rescaled as (l - 2 sqrt n) n^(1/6) ~ TW1
    rng = np.random.default_rng(7)
    n, trials = 100, 400
    samples = []
    for _ in range(trials):
        a = rng.normal(size=(n, n))
        h = (a + a.T) / np.sqrt(2)
        samples.append((np.linalg.eigvalsh(h)[-1] - 2 * np.sqrt(n)) * n ** (1 / 6))
    samples = np.asarray(samples)
    assert np.mean(samples) == pytest.approx(-1.2065, abs=0.2)  # finite-n bias + 3 standard errors
    assert np.mean(samples <= tw1_ppf(0.8)) == pytest.approx(0.8, abs=0.07)


def test_levels_outside_open_interval_are_refused():
    with pytest.raises(ValueError):
        tw1_ppf(1.0)
    with pytest.raises(ValueError):
        tw1_ppf(-0.1)


def test_paper_centring_is_the_edge_formula_and_the_others_shift_n_and_p():
    from rmtlib.theory.tracy_widom import tw_centre_scale

    for m, n in ((400, 200), (768, 3072), (64, 64)):
        N, p = max(m, n), min(m, n)
        c = p / N
        centre, scale = tw_centre_scale(m, n, "paper")
        assert centre == pytest.approx((1 + np.sqrt(c)) ** 2, rel=1e-13)
        assert scale == pytest.approx(N ** (-2 / 3) * c ** (-1 / 6) * (1 + np.sqrt(c)) ** (4 / 3), rel=1e-13)
        # Johnstone (2001): mu = (sqrt(N - 1) + sqrt p)^2,
        # sigma = (sqrt(N - 1) + sqrt p)(1/sqrt(N - 1) + 1/sqrt p)^(1/3)
        mu = (np.sqrt(N - 1) + np.sqrt(p)) ** 2
        sd = (np.sqrt(N - 1) + np.sqrt(p)) * (1 / np.sqrt(N - 1) + 1 / np.sqrt(p)) ** (1 / 3)
        assert tw_centre_scale(m, n, "johnstone") == pytest.approx((mu / N, sd / N), rel=1e-13)
        a, b = N - 0.5, p - 0.5
        assert tw_centre_scale(n, m, "ma") == pytest.approx(
            ((np.sqrt(a) + np.sqrt(b)) ** 2 / N, (np.sqrt(a) + np.sqrt(b)) * (a**-0.5 + b**-0.5) ** (1 / 3) / N)
        )
    with pytest.raises(ValueError, match="edge centring"):
        tw_centre_scale(10, 20, "johnston")
