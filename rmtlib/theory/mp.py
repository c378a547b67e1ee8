"""The Marchenko-Pastur law of sample-covariance eigenvalues: edges, pdf, cdf and quantiles.

Convention: for an m x n matrix with iid entries of variance ``sigma2``, p = min(m, n),
N = max(m, n) and ratio c = p / N in (0, 1], the eigenvalues s_i^2 / N follow MP(c, sigma2)
with support [sigma2 (1 - sqrt c)^2, sigma2 (1 + sqrt c)^2] and no atom. Everything is
vectorized over ``x``/``q`` and computed in float64; nothing here knows about torch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["mp_edges", "mp_pdf", "mp_cdf", "mp_ppf", "mp_mean", "mp_var"]


def _check(ratio: float, sigma2: float) -> tuple[float, float]:
    ratio = float(ratio)
    sigma2 = float(sigma2)
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if not (sigma2 > 0.0 and np.isfinite(sigma2)):
        raise ValueError(f"sigma2 must be positive and finite, got {sigma2}")
    return ratio, sigma2


def mp_edges(ratio: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Lower and upper edge of the MP support."""
    ratio, sigma2 = _check(ratio, sigma2)
    root = np.sqrt(ratio)
    return sigma2 * (1.0 - root) ** 2, sigma2 * (1.0 + root) ** 2


def mp_mean(ratio: float, sigma2: float = 1.0) -> float:
    """Mean of MP(c, sigma2): sigma2."""
    _check(ratio, sigma2)
    return float(sigma2)


def mp_var(ratio: float, sigma2: float = 1.0) -> float:
    """Variance of MP(c, sigma2): c sigma2^2."""
    ratio, sigma2 = _check(ratio, sigma2)
    return ratio * sigma2**2


def mp_pdf(x: ArrayLike, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Density sqrt((b - x)(x - a)) / (2 pi sigma2 c x) on [a, b], zero outside."""
    ratio, sigma2 = _check(ratio, sigma2)
    a, b = mp_edges(ratio, sigma2)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > a) & (x < b) & (x > 0)
    xs = np.where(inside, x, 1.0)
    dens = np.sqrt(np.clip((b - xs) * (xs - a), 0.0, None)) / (2.0 * np.pi * sigma2 * ratio * xs)
    return np.where(inside, dens, 0.0)


# Both tails are computed from their own edge, so that each keeps full *relative* precision.
# In units of sigma2, with r = sqrt(c), a point y of the support is y = a + 4 r sin^2(psi/2)
# = b - 4 r sin^2(phi/2) with psi + phi = pi (psi: angle from the lower edge, phi: from the
# upper one). Integrating the density in these angles gives, with k = (1 - r) / (1 + r),
#   F(psi)     = [(1 + c) psi + 2 r sin psi - 2 (1 - c) arctan(tan(psi/2) / k)] / (2 pi c)
#   1 - F(phi) = [(1 + c) phi - 2 r sin phi - 2 (1 - c) arctan(k tan(phi/2))] / (2 pi c).
# Near the lower edge (c < 1) the terms linear in psi cancel exactly (F is of order psi^3 there),
# so there F is summed as a power series in u = tan(psi/2) whose linear terms are dropped
# analytically. At c = 1 the lower edge is 0 and F is linear in psi: no cancellation. Near the
# upper edge the same cancellation costs only absolute precision ~1e-16, which is all a cdf
# near 1 (or a point x near b) can hold in float64.


def _angles(y: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(psi, phi) of the points y (units of sigma2), each from its own edge, via atan2 (exact near both)."""
    root = np.sqrt(ratio)
    a, b = (1.0 - root) ** 2, (1.0 + root) ** 2
    s = np.sqrt(np.clip((b - y) * (y - a), 0.0, None))
    return np.arctan2(s, 1.0 + ratio - y), np.arctan2(s, y - 1.0 - ratio)


def _lower_mass(psi: np.ndarray, ratio: float) -> np.ndarray:
    """F at angle psi from the lower edge, psi in [0, pi/2]."""
    root = np.sqrt(ratio)
    body = (1.0 + ratio) * psi + 2.0 * root * np.sin(psi)
    if ratio < 1.0:
        k = (1.0 - root) / (1.0 + root)
        u = np.tan(psi / 2.0)
        body = body - 2.0 * (1.0 - ratio) * np.arctan(u / k)
        near = u <= 0.25 * k
        if np.any(near):
            un = u[near]
            u2, w2 = un**2, (un / k) ** 2
            # terms fall by at least w2 <= 1/16 each; stop once they are below 1e-17 of the first
            terms = int(np.ceil(np.log(1e-17) / np.log(max(float(w2.max()), 1e-300)))) + 1
            total = np.zeros_like(un)
            for j in range(max(terms, 1), 0, -1):  # smallest terms first
                odd = 2 * j + 1
                term = ((1.0 + ratio) / odd + 2.0 * root) * u2**j - (1.0 + root) ** 2 * w2**j / odd
                total += term if j % 2 == 0 else -term
            body = body.copy()
            body[near] = 2.0 * un * total
    return body / (2.0 * np.pi * ratio)


def _upper_mass(phi: np.ndarray, ratio: float) -> np.ndarray:
    """1 - F at angle phi from the upper edge, phi in [0, pi/2] (closed form: its absolute error,
    about 1e-16, is below what float64 can resolve of x near b anyway)."""
    root = np.sqrt(ratio)
    k = (1.0 - root) / (1.0 + root)
    body = (1.0 + ratio) * phi - 2.0 * root * np.sin(phi) - 2.0 * (1.0 - ratio) * np.arctan(k * np.tan(phi / 2.0))
    return body / (2.0 * np.pi * ratio)


def mp_cdf(x: ArrayLike, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Distribution function: exactly 0 below the lower edge and exactly 1 above the upper one.

    Near the lower edge F keeps full *relative* precision (tail probabilities down to 1e-300 come
    out right); elsewhere the error is about 1e-16 absolute, all a value near 1 can hold."""
    ratio, sigma2 = _check(ratio, sigma2)
    a, b = mp_edges(ratio, sigma2)
    x = np.asarray(x, dtype=np.float64)
    y = x / sigma2
    psi, phi = _angles(y, ratio)
    lower = psi <= np.pi / 2.0
    cdf = np.empty_like(y)
    cdf[lower] = _lower_mass(psi[lower], ratio)
    cdf[~lower] = 1.0 - _upper_mass(phi[~lower], ratio)
    cdf = np.clip(cdf, 0.0, 1.0)
    return np.where(x <= a, 0.0, np.where(x >= b, 1.0, cdf))


_LOG_SMALLEST_ANGLE = np.log(1e-300)


def _solve_angle(mass: Callable[[np.ndarray, float], np.ndarray], target: np.ndarray, ratio: float) -> np.ndarray:
    """The angle in (1e-300, pi/2] whose tail mass is ``target`` (increasing in the angle):
    bisection on log(angle), so small angles get full relative precision."""
    lo = np.full_like(target, _LOG_SMALLEST_ANGLE)
    hi = np.full_like(target, np.log(np.pi / 2.0))
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = mass(np.exp(mid), ratio) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi))


def mp_ppf(q: ArrayLike, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Quantile function (inverse cdf), by bisection on the angle from the nearer edge.

    Relative precision near machine epsilon in the lower tail (mp_ppf(1e-12, 1) is 2.5e-24, not 0);
    near the upper edge, as close as float64's spacing there allows."""
    ratio, sigma2 = _check(ratio, sigma2)
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1) | ~np.isfinite(q)):
        raise ValueError("quantile levels must lie in [0, 1]")
    root = np.sqrt(ratio)
    a, b = mp_edges(ratio, sigma2)
    lower = q <= _lower_mass(np.array([np.pi / 2.0]), ratio)[0]
    y = np.empty_like(q)
    if np.any(lower):
        psi = _solve_angle(_lower_mass, q[lower], ratio)
        y[lower] = (1.0 - root) ** 2 + 4.0 * root * np.sin(psi / 2.0) ** 2
    if np.any(~lower):
        phi = _solve_angle(_upper_mass, 1.0 - q[~lower], ratio)
        y[~lower] = (1.0 + root) ** 2 - 4.0 * root * np.sin(phi / 2.0) ** 2
    return np.where(q <= 0.0, a, np.where(q >= 1.0, b, np.clip(sigma2 * y, a, b)))
