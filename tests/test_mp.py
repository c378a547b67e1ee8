import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad

from rmtlib.theory.mp import mp_cdf, mp_edges, mp_mean, mp_pdf, mp_ppf, mp_var

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
        assert mp_cdf(x, ratio, 1.3) == pytest.approx(
            quad(lambda t: mp_pdf(t, ratio, 1.3), a, x, limit=400)[0], abs=1e-9
        )


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


def _lower_mass_by_quadrature(x: float, ratio: float) -> float:
    """F(x), integrated from the lower edge a in s = sqrt(t - a), where the integrand is smooth
    (an independent computation, accurate in relative terms however close x is to a)."""
    a, b = mp_edges(ratio)
    g = lambda s: s * s * np.sqrt(b - a - s * s) / (np.pi * ratio * (a + s * s))  # noqa: E731
    if ratio == 1.0:  # a = 0: the s^2 cancels
        g = lambda s: np.sqrt(4.0 - s * s) / np.pi  # noqa: E731
    return quad(g, 0.0, np.sqrt(x - a), epsabs=0.0, epsrel=1e-13)[0]


def _upper_mass_by_quadrature(x: float, ratio: float) -> float:
    """1 - F(x), integrated from the upper edge b in s = sqrt(b - t)."""
    a, b = mp_edges(ratio)
    g = lambda s: s * s * np.sqrt(b - a - s * s) / (np.pi * ratio * (b - s * s))  # noqa: E731
    return quad(g, 0.0, np.sqrt(b - x), epsabs=0.0, epsrel=1e-13)[0]


# ratios whose edges (1 -+ sqrt c)^2 are exact binary numbers, so a point d above the edge is exact
@pytest.mark.parametrize("ratio", [1.0, 0.25, 0.5625])
@pytest.mark.parametrize("distance", [1e-14, 1e-10, 1e-6, 1e-3, 0.2])
def test_cdf_keeps_relative_precision_near_the_lower_edge(ratio, distance):
    x = mp_edges(ratio)[0] + distance
    assert float(mp_cdf(x, ratio)) == pytest.approx(_lower_mass_by_quadrature(x, ratio), rel=1e-10, abs=0.0)


@pytest.mark.parametrize("ratio", [1.0, 0.25, 0.5625])
@pytest.mark.parametrize("level", [1e-30, 1e-12, 1e-6, 1e-2])
def test_ppf_keeps_relative_precision_in_the_lower_tail(ratio, level):
    a = mp_edges(ratio)[0]
    x = float(mp_ppf(level, ratio))
    assert x > a or ratio < 1.0  # at c = 1 the edge 0 is never the answer
    if x == a:  # the quantile lies within float64's spacing of the edge
        assert _lower_mass_by_quadrature(a + np.spacing(a), ratio) >= level
        return
    # F grows like (x - a)^(3/2) (c < 1) or (x - a)^(1/2): float64's spacing at x bounds the precision
    assert _lower_mass_by_quadrature(x, ratio) == pytest.approx(level, rel=1e-12 + 2 * np.spacing(x) / (x - a), abs=0.0)


@pytest.mark.parametrize("ratio", [1.0, 0.25, 0.5625])
@pytest.mark.parametrize("tail", [2.0**-40, 2.0**-20, 2.0**-6])
def test_ppf_near_the_upper_edge_matches_the_tail_mass(ratio, tail):
    # 1 - tail is exact for these tails; what limits the check is float64's spacing near b
    b = mp_edges(ratio)[1]
    x = float(mp_ppf(1.0 - tail, ratio))
    assert _upper_mass_by_quadrature(x, ratio) == pytest.approx(tail, rel=1e-12 + 2 * np.spacing(b) / (b - x), abs=0.0)
