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

__all__ = ["tw1_cdf", "tw1_ppf"]

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
