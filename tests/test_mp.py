import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad

from rmtlib.mp import mp_cdf, mp_edges, mp_mean, mp_pdf, mp_ppf, mp_var

RATIOS = [0.05, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("sigma2", [0.3, 2.0])
def test_pdf_is_a_density_with_mp_moments(ratio, sigma2):
    a, b = mp_edges(ratio, sigma2)
    mass = quad(lambda x: mp_pdf(x, ratio, sigma2), a, b, limit=400)[0]
    mean = quad(lambda x: x * mp_pdf(x, ratio, sigma2), a, b, limit=400)[0]
    second = quad(lambda x: x * x * mp_pdf(x, ratio, sigma2), a, b, limit=400)[0]
    assert mass == pytest.approx(1.0, abs=1e-8)
    assert mean == pytest.approx(sigma2, rel=1e-8) == mp_mean(ratio, sigma2)
    assert second - mean**2 == pytest.approx(ratio * sigma2**2, rel=1e-7)
    assert mp_var(ratio, sigma2) == pytest.approx(ratio * sigma2**2)


@pytest.mark.parametrize("ratio", RATIOS)
def test_cdf_is_the_integral_of_the_pdf(ratio):
    a, b = mp_edges(ratio, 1.3)
    for x in np.linspace(a, b, 9)[1:-1]:
        assert mp_cdf(x, ratio, 1.3) == pytest.approx(quad(lambda t: mp_pdf(t, ratio, 1.3), a, x, limit=400)[0], abs=1e-9)


@pytest.mark.parametrize("ratio", RATIOS)
def test_cdf_is_exactly_zero_below_and_one_above_the_support(ratio):
    a, b = mp_edges(ratio, 0.7)
    below = np.array([-1.0, 0.0, a * 0.999]) if a > 0 else np.array([-1.0, 0.0])
    assert np.all(mp_cdf(below, ratio, 0.7) == 0.0)
    assert np.all(mp_cdf(np.array([b, b * 1.001, 10 * b, np.inf]), ratio, 0.7) == 1.0)
    assert np.all(mp_pdf(np.array([b * 1.01, -1.0]), ratio, 0.7) == 0.0)


@pytest.mark.parametrize("ratio", RATIOS)
def test_ppf_inverts_cdf(ratio):
    q = np.linspace(0.0, 1.0, 101)
    x = mp_ppf(q, ratio, 2.5)
    assert np.all(np.diff(x) >= 0)
    np.testing.assert_allclose(mp_cdf(x, ratio, 2.5)[1:-1], q[1:-1], atol=1e-12)
    a, b = mp_edges(ratio, 2.5)
    assert x[0] == pytest.approx(a, abs=1e-12) and x[-1] == pytest.approx(b)


@pytest.mark.parametrize("shape", [(400, 400), (300, 1200)])
def test_gaussian_spectrum_matches_the_law(shape, rng):
    m, n = shape
    sigma2 = 0.37
    w = rng.normal(0.0, np.sqrt(sigma2), size=shape)
    eig = np.linalg.svd(w, compute_uv=False) ** 2 / max(m, n)
    ks = stats.kstest(eig, lambda x: mp_cdf(x, min(m, n) / max(m, n), sigma2)).statistic
    assert ks < 0.02


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="ratio"):
        mp_pdf(1.0, 1.5)
    with pytest.raises(ValueError, match="sigma2"):
        mp_cdf(1.0, 0.5, -1.0)
    with pytest.raises(ValueError, match="quantile"):
        mp_ppf(1.2, 0.5)
