"""Heavy-tail exponent of a layer's spectrum: the Hill estimator used by AlphaPruning and SEB."""

from __future__ import annotations

import numpy as np

from rmtlib.errors import InputError

__all__ = ["hill_alpha"]


def hill_alpha(singular_values: np.ndarray, k: int = 20) -> float:
    """Hill estimate of the power-law exponent of the eigenvalues lambda = s^2.

    With lambda_(1) >= ... >= lambda_(k+1) the largest k + 1 eigenvalues,
    alpha = 1 + 1 / mean_{i <= k} log(lambda_(i) / lambda_(k+1)) (METHOD.md section 7). A heavier
    tail (more signal, less randomness) gives a smaller alpha. Needs at least k + 1 values and a
    positive lambda_(k+1); a flat top (all k equal to lambda_(k+1)) gives +inf.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"hill_alpha: k must be a positive whole number, got {k!r}")
    sv = np.asarray(singular_values, dtype=np.float64).ravel()
    if sv.size < k + 1:
        raise InputError(f"hill_alpha: needs at least k + 1 = {k + 1} singular values, got {sv.size}")
    if not np.all(np.isfinite(sv)):
        raise InputError("hill_alpha: singular values must be finite")
    lam = np.sort(sv**2)[::-1][: k + 1]
    if lam[k] <= 0:
        raise InputError(f"hill_alpha: the (k+1)-th largest eigenvalue is {lam[k]:g}; it must be positive")
    mean_log = float(np.mean(np.log(lam[:k] / lam[k])))
    return float("inf") if mean_log == 0 else 1.0 + 1.0 / mean_log
