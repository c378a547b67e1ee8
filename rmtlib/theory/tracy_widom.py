"""The Tracy-Widom law for beta = 1 (largest eigenvalue of real Gaussian matrices).

F1(s) is evaluated as the Fredholm determinant det(I - K_s) on L^2(0, inf) with kernel
K_s(x, y) = Ai(x + y + s) (Ferrari-Spohn form), discretized by Gauss-Legendre quadrature
(Bornemann's method; exponentially convergent). Quantiles come from root-finding on F1.
We compute it ourselves because it is short, exact to ~1e-12 and needs only SciPy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import airy

__all__ = ["tw1_cdf", "tw1_ppf", "EDGE_CENTRINGS", "tw_centre_scale"]

_NODES = 80
_CUTOFF = 16.0  # Ai(x) < 1e-20 beyond this, so the truncated integral is exact to double precision


@lru_cache(maxsize=1)
def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(_NODES)
    x = 0.5 * _CUTOFF * (nodes + 1.0)
    w = 0.5 * _CUTOFF * weights
    return x, w


def _cdf_scalar(s: float) -> float:
    if s > 12.0:
        return 1.0
    if s < -12.0:
        return 0.0
    x, w = _quadrature()
    root_w = np.sqrt(w)
    kernel = airy(s + x[:, None] + x[None, :])[0]
    det = np.linalg.det(np.eye(len(x)) - root_w[:, None] * kernel * root_w[None, :])
    return float(min(max(det, 0.0), 1.0))


def tw1_cdf(s: ArrayLike) -> np.ndarray:
    """Distribution function of TW1, vectorized over ``s``."""
    s = np.asarray(s, dtype=np.float64)
    return np.vectorize(_cdf_scalar, otypes=[np.float64])(s)


@lru_cache(maxsize=256)
def _ppf_scalar(q: float) -> float:
    return float(brentq(lambda s: _cdf_scalar(s) - q, -10.0, 10.0, xtol=1e-12, rtol=1e-12))


def tw1_ppf(q: ArrayLike) -> np.ndarray | float:
    """Quantile function of TW1; scalar in, float out. Levels must lie strictly in (0, 1)."""
    arr = np.asarray(q, dtype=np.float64)
    if np.any((arr <= 0) | (arr >= 1) | ~np.isfinite(arr)):
        raise ValueError(f"Tracy-Widom quantile level must be in (0, 1), got {q}")
    if arr.ndim == 0:
        return _ppf_scalar(float(arr))
    return np.array([_ppf_scalar(float(v)) for v in arr.ravel()]).reshape(arr.shape)


EDGE_CENTRINGS = ("paper", "johnstone", "ma")
"""Finite-size centrings of the largest eigenvalue: ``paper`` (the paper's, N and p), ``johnstone``
(N - 1 and p, Johnstone 2001) and ``ma`` (N - 1/2 and p - 1/2, Ma 2012, second-order accurate)."""


def tw_centre_scale(m: int, n: int, centring: str = "paper") -> tuple[float, float]:
    """Centre and scale of the largest eigenvalue s_1^2 / N of an m x n unit-variance Gaussian matrix.

    (lambda_max - centre) / scale tends to TW1. With (a, b) = (N, p), (N - 1, p) or (N - 1/2, p - 1/2)
    for the three :data:`EDGE_CENTRINGS`: centre = (sqrt a + sqrt b)^2 / N and
    scale = (sqrt a + sqrt b) (1/sqrt a + 1/sqrt b)^(1/3) / N. The ``paper`` case equals
    (1 + sqrt c)^2 and N^(-2/3) c^(-1/6) (1 + sqrt c)^(4/3), c = p / N, the paper's edge formula.
    """
    if centring not in EDGE_CENTRINGS:
        raise ValueError(f"edge centring must be one of {', '.join(EDGE_CENTRINGS)}, got {centring!r}")
    N, p = max(m, n), min(m, n)
    shift_n, shift_p = {"paper": (0.0, 0.0), "johnstone": (1.0, 0.0), "ma": (0.5, 0.5)}[centring]
    a, b = N - shift_n, p - shift_p
    if b <= 0:
        raise ValueError(f"edge centring {centring!r} needs min(m, n) > {shift_p:g}, got shape {(m, n)}")
    root = np.sqrt(a) + np.sqrt(b)
    return float(root**2 / N), float(root * (1.0 / np.sqrt(a) + 1.0 / np.sqrt(b)) ** (1.0 / 3.0) / N)
