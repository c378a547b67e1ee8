"""The Marchenko-Pastur law of sample-covariance eigenvalues: edges, pdf, cdf and quantiles.

Convention: for an m x n matrix with iid entries of variance ``sigma2``, p = min(m, n),
N = max(m, n) and ratio c = p / N in (0, 1], the eigenvalues s_i^2 / N follow MP(c, sigma2)
with support [sigma2 (1 - sqrt c)^2, sigma2 (1 + sqrt c)^2] and no atom. Everything is
vectorized over ``x``/``q`` and computed in float64; nothing here knows about torch.
"""

from __future__ import annotations

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


def _angle(x: np.ndarray, ratio: float) -> np.ndarray:
    """phi in [0, pi] with x = 1 + c + 2 sqrt(c) cos(phi) (x in units of sigma2)."""
    cos_phi = (x - 1.0 - ratio) / (2.0 * np.sqrt(ratio))
    return np.arccos(np.clip(cos_phi, -1.0, 1.0))


def _tail_from_angle(phi: np.ndarray, ratio: float) -> np.ndarray:
    """1 - F at the point of angle phi (closed form of the integral of the density)."""
    root = np.sqrt(ratio)
    k = (1.0 - root) / (1.0 + root)
    with np.errstate(over="ignore"):
        half_tan = np.tan(phi / 2.0)
    arct = np.where(phi >= np.pi, np.pi / 2.0, np.arctan(k * half_tan))
    body = (1.0 + ratio) * phi - 2.0 * root * np.sin(phi) - 2.0 * (1.0 - ratio) * arct
    return body / (2.0 * np.pi * ratio)


def mp_cdf(x: ArrayLike, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Distribution function: exactly 0 below the lower edge and exactly 1 above the upper one."""
    ratio, sigma2 = _check(ratio, sigma2)
    a, b = mp_edges(ratio, sigma2)
    x = np.asarray(x, dtype=np.float64)
    tail = _tail_from_angle(_angle(x / sigma2, ratio), ratio)
    cdf = np.clip(1.0 - tail, 0.0, 1.0)
    return np.where(x <= a, 0.0, np.where(x >= b, 1.0, cdf))


def mp_ppf(q: ArrayLike, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Quantile function (inverse cdf), by vectorized bisection on the angle to machine precision."""
    ratio, sigma2 = _check(ratio, sigma2)
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1) | ~np.isfinite(q)):
        raise ValueError("quantile levels must lie in [0, 1]")
    lo = np.zeros_like(q)  # phi = 0 is the upper edge (tail 0)
    hi = np.full_like(q, np.pi)  # phi = pi is the lower edge (tail 1)
    target = 1.0 - q
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = _tail_from_angle(mid, ratio) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    phi = 0.5 * (lo + hi)
    x = sigma2 * (1.0 + ratio + 2.0 * np.sqrt(ratio) * np.cos(phi))
    a, b = mp_edges(ratio, sigma2)
    return np.where(q <= 0.0, a, np.where(q >= 1.0, b, np.clip(x, a, b)))
