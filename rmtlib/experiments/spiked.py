"""Spiked random matrices: Gaussian noise plus a planted low-rank signal, and the BBP transition.

The model is W = sum_j theta_j u_j v_j^T + Z (m x n, Z iid N(0, sigma^2), u_j, v_j orthonormal).
With N = max(m, n), p = min(m, n), a signal singular value theta leaves the MP bulk only when
theta > sigma (N p)^(1/4) (Baik-Ben Arous-Peche; Benaych-Georges-Nadakuditi for rectangular
matrices); above it the top singular value converges to
sqrt((theta^2 + sigma^2 N)(theta^2 + sigma^2 p)) / theta, below it to the bulk edge
sigma (sqrt N + sqrt p). The experiments here drive chapter 1 of the book and are tested
against that theory.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from rmtlib.errors import InputError
from rmtlib.runtime import one_torch_thread
from rmtlib.spectral.fit import fit_mp, singular_values
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.theory.tracy_widom import tw_centre_scale

__all__ = [
    "bbp_threshold",
    "bbp_singular_value",
    "spiked_matrix",
    "tw_scaled_top_eigenvalues",
    "noise_top_eigenvalues",
    "tw_standardize",
    "bbp_detection",
]


def _shape(m: int, n: int) -> tuple[int, int]:
    m, n = int(m), int(n)
    if m < 1 or n < 1:
        raise InputError(f"matrix shape must be positive, got {(m, n)}")
    return max(m, n), min(m, n)


def _sigma(sigma: float, *, positive: bool = False) -> float:
    """The noise standard deviation, checked: finite and >= 0 (> 0 with ``positive``)."""
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma < 0 or (positive and sigma == 0):
        raise InputError(f"sigma must be finite and {'> 0' if positive else '>= 0'}, got {sigma}")
    return sigma


def bbp_threshold(m: int, n: int, sigma: float = 1.0) -> float:
    """Smallest signal singular value that produces a spike: sigma (N p)^(1/4)."""
    N, p = _shape(m, n)
    return _sigma(sigma) * (N * p) ** 0.25


def bbp_singular_value(theta: ArrayLike, m: int, n: int, sigma: float = 1.0) -> np.ndarray:
    """Large-size limit of the top singular value of a rank-one spiked matrix with strength ``theta``.

    Only ``|theta|`` matters (the sign of ``theta u v^T`` can be moved into ``u``, as in
    :func:`spiked_matrix`); a NaN strength gives NaN.
    """
    N, p = _shape(m, n)
    sigma = _sigma(sigma)
    theta = np.abs(np.asarray(theta, dtype=np.float64))
    edge = sigma * (np.sqrt(N) + np.sqrt(p))
    safe = np.where(theta > 0, theta, 1.0)
    above = np.sqrt((safe**2 + sigma**2 * N) * (safe**2 + sigma**2 * p)) / safe
    return np.where(np.isnan(theta), np.nan, np.where(theta > bbp_threshold(m, n, sigma), above, edge))


def spiked_matrix(
    m: int,
    n: int,
    strengths: Sequence[float] = (),
    *,
    sigma: float = 1.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """An m x n matrix: iid N(0, sigma^2) noise plus sum_j strengths[j] u_j v_j^T (random orthonormal u, v)."""
    rng = rng if rng is not None else np.random.default_rng()
    strengths = np.asarray(strengths, dtype=np.float64).ravel()
    r = len(strengths)
    if r > min(m, n):
        raise InputError(f"strengths: rank {r} exceeds min(m, n) = {min(m, n)}")
    if sigma < 0 or not np.isfinite(sigma):
        raise InputError(f"sigma must be non-negative and finite, got {sigma}")
    w = sigma * rng.standard_normal((m, n))
    if r:
        u, _ = np.linalg.qr(rng.standard_normal((m, r)))
        v, _ = np.linalg.qr(rng.standard_normal((n, r)))
        w += (u * strengths) @ v.T
    return w


def noise_top_eigenvalues(
    m: int, n: int, n_trials: int, *, sigma: float = 1.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Largest eigenvalue s_1^2 / (N sigma^2) of ``n_trials`` pure-noise m x n matrices (unit-variance units)."""
    if n_trials < 1:
        raise InputError(f"n_trials must be >= 1, got {n_trials}")
    sigma = _sigma(sigma, positive=True)
    rng = rng if rng is not None else np.random.default_rng()
    N, _ = _shape(m, n)
    with one_torch_thread():
        top = np.array([singular_values(spiked_matrix(m, n, sigma=sigma, rng=rng))[0] for _ in range(n_trials)])
    return top**2 / N / sigma**2


def tw_standardize(top_eigenvalues: ArrayLike, m: int, n: int, centring: str = "paper") -> np.ndarray:
    """(lambda_max - centre) / scale with the centre and scale of :func:`rmtlib.theory.tracy_widom.tw_centre_scale`:
    TW1-distributed for large matrices. ``top_eigenvalues`` in unit-variance units (s_1^2 / (N sigma^2))."""
    _shape(m, n)
    try:
        centre, scale = tw_centre_scale(m, n, centring)
    except ValueError as err:
        raise InputError(str(err)) from None
    return (np.asarray(top_eigenvalues, dtype=np.float64) - centre) / scale


def tw_scaled_top_eigenvalues(
    m: int,
    n: int,
    n_trials: int,
    *,
    sigma: float = 1.0,
    rng: np.random.Generator | None = None,
    centring: str = "paper",
) -> np.ndarray:
    """Top eigenvalue s_1^2/N of pure-noise matrices, centred and scaled as in the fit's edge.

    With lambda = s^2 / N and c = p / N, the ``paper`` centring returns (lambda_max / sigma^2 - (1 + sqrt c)^2) /
    (N^(-2/3) c^(-1/6) (1 + sqrt c)^(4/3)), which follows the Tracy-Widom (beta = 1) law for large N;
    ``johnstone`` and ``ma`` use finite-size corrections of both (:func:`tw_standardize`).
    """
    return tw_standardize(noise_top_eigenvalues(m, n, n_trials, sigma=sigma, rng=rng), m, n, centring)


def bbp_detection(
    shapes: Iterable[Sequence[int]],
    relative_strengths: Sequence[float],
    n_trials: int,
    *,
    betas: Sequence[float] = (0.8, 0.1),
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    sigma: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Spike detection of a rank-one signal against its strength, by the MP fit (BEMA + TW edge).

    For each shape and strength theta = rel * bbp_threshold, ``n_trials`` matrices are drawn;
    a trial detects the signal when its top singular value lies above the fitted edge. One row
    per (shape, rel, beta): detection rate, its binomial standard error, the mean top singular
    value over the bulk edge sigma (sqrt N + sqrt p), the theory for that ratio, and the mean
    relative error of the fitted sigma^2. Each beta of ``betas`` replaces ``fit_config.beta``; the fit's
    other settings are ``fit_config``'s.
    """
    if n_trials < 1:
        raise InputError(f"n_trials must be >= 1, got {n_trials}")
    configs = {float(b): replace(check_fit_config(fit_config), beta=b) for b in betas}
    sigma = _sigma(sigma, positive=True)
    rng = np.random.default_rng(seed)
    rows = []
    with one_torch_thread():
        for shape in shapes:
            rows.extend(_detection_rows(shape, relative_strengths, n_trials, configs, sigma, rng))
    return pd.DataFrame(rows)


def _detection_rows(
    shape: Sequence[int],
    relative_strengths: Sequence[float],
    n_trials: int,
    configs: dict[float, FitConfig],
    sigma: float,
    rng: np.random.Generator,
) -> list[dict]:
    """The rows of :func:`bbp_detection` for one shape (``configs``: the fit settings of each beta)."""
    rows = []
    m, n = (int(v) for v in shape)
    N, p = _shape(m, n)
    thr = bbp_threshold(m, n, sigma)
    edge = sigma * (np.sqrt(N) + np.sqrt(p))
    for rel in relative_strengths:
        theta = float(rel) * thr
        tops = np.empty(n_trials)
        hits = {b: 0 for b in configs}
        s2_err = {b: 0.0 for b in configs}
        for t in range(n_trials):
            sv = singular_values(spiked_matrix(m, n, [theta] if theta > 0 else [], sigma=sigma, rng=rng))
            tops[t] = sv[0]
            for b, config in configs.items():
                fit = fit_mp(sv, shape=(m, n), fit_config=config)
                hits[b] += int(sv[0] > fit.sv_edge)
                s2_err[b] += abs(fit.sigma2 / sigma**2 - 1.0) / n_trials
        theory = float(bbp_singular_value(theta, m, n, sigma)) / edge
        for b in configs:
            rate = hits[b] / n_trials
            rows.append(
                dict(
                    m=m,
                    n=n,
                    N=N,
                    p=p,
                    rel_strength=float(rel),
                    theta=theta,
                    beta=float(b),
                    detection_rate=rate,
                    detection_se=float(np.sqrt(rate * (1 - rate) / n_trials)),
                    top_over_edge=float(tops.mean() / edge),
                    top_over_edge_sd=float(tops.std() / edge),
                    theory_top_over_edge=theory,
                    sigma2_rel_error=s2_err[b],
                    n_trials=n_trials,
                )
            )
    return rows
