"""Fit the Marchenko-Pastur law to one weight matrix: BEMA scale + Tracy-Widom edge.

BEMA (bulk-edge moment approach, Ke-Ma-Lin) fits sigma^2 by least squares through the origin
between the central order statistics of the eigenvalues s_i^2 / N and the matching MP(c, 1)
quantiles, so spikes and the smallest eigenvalues do not bias it. The edge adds a Tracy-Widom
(beta = 1) fluctuation term. Two bugs of the paper's reference code are fixed here: the edge
uses (1 + sqrt c)^(4/3) (not ((1 + sqrt c)^4)/3), and the MP cdf is 1 above the edge (not 0).
The cdf bug matters only when more than p - floor((1 - alpha) p) eigenvalues (a quarter of the
spectrum at alpha = 0.25) lie above the fitted MP edge sigma^2 (1 + sqrt c)^2: only then does an
eigenvalue of BEMA's window, where ``mu`` is measured, sit above the edge, and the reference's
``mu`` jumps to at least floor((1 - alpha) p) / p (0.75); otherwise both give the same ``mu``
(tests/test_fit.py checks both cases).

Quantile convention (``FitConfig.bema_quantile``): the k-th smallest eigenvalue is matched with the MP
quantile at (k - 1/2)/p by default (``"midpoint"``, the middle of its empirical-cdf step). The
paper's text uses k/p (``"paper"``), its reference code (k - 1)/p (``"reference"``). Measured on
4000 N(0, 1) 300 x 100 matrices (alpha 0.25): mean sigma^2 0.9992 (midpoint), 0.9896 (k/p),
1.0090 ((k - 1)/p), standard error 0.0002. The reference code also divides s^2 by the layer's
in-features rather than N = max(m, n), so its sigma^2 differs from this one by the aspect ratio
for a layer with more outputs than inputs (x4 for ViT fc1); its edge s_+, gamma and mu do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from rmtlib.errors import InputError, check_number
from rmtlib.spectral.fit_config import BEMA_QUANTILES, DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.spectral.gram import gram_singular_values
from rmtlib.theory.mp import mp_cdf, mp_ppf
from rmtlib.theory.tracy_widom import tw1_ppf, tw_centre_scale

__all__ = [
    "MPFit",
    "fit_mp",
    "singular_values",
    "count_zero_lines",
    "POOR_FIT_MU",
    "poor_fit_threshold",
]

POOR_FIT_MU = 0.1
"""A fit whose error ``mu`` (sup |F_MP - empirical cdf| over BEMA's window) exceeds
``max(POOR_FIT_MU, 4 / p)`` is flagged ``poor_fit``. Measured on this machine: for Gaussian matrices
p * mu stayed below 3 (300 draws each of 16 x 16 .. 64 x 64; 768 x 3072: mu 0.004; the eigenvalues of a
random matrix are rigid, so mu falls like 1/p), the 25 layers of the committed MNIST ViT have mu
0.011-0.074, while Cauchy entries give 0.3 (192 x 768). Above the threshold the bulk is not
MP-shaped, so gamma and the edge mean little; at p < 40 the 4 / p term keeps pure noise unflagged."""


RANK_TOLERANCE = 8.0
"""Singular values below ``RANK_TOLERANCE * sqrt(p eps) * s_max`` are round-off of exact zeros."""


def poor_fit_threshold(p: int) -> float:
    """The largest ``mu`` of a fit to a p x N matrix that is not flagged ``poor_fit`` (:data:`POOR_FIT_MU`)."""
    return max(POOR_FIT_MU, 4.0 / p)


@dataclass(frozen=True)
class MPFit:
    """Result of fitting MP to an m x n matrix (eigenvalues are s^2 / N, N = max(m, n))."""

    m: int
    n: int
    sigma2: float
    lambda_plus: float
    sv_edge: float
    gamma: float
    mu: float
    n_spikes: int
    status: str
    fit_config: FitConfig
    singular_values: np.ndarray = field(repr=False)
    rows_dropped: int = 0
    cols_dropped: int = 0

    @property
    def alpha(self) -> float:
        """BEMA's trimming fraction of the fit (``fit_config.alpha``)."""
        return self.fit_config.alpha

    @property
    def beta(self) -> float:
        """The Tracy-Widom level of the edge (``fit_config.beta``)."""
        return self.fit_config.beta

    @property
    def edge_centring(self) -> str:
        """The edge's finite-size centring (``fit_config.edge_centring``)."""
        return self.fit_config.edge_centring

    @property
    def m_eff(self) -> int:
        """Rows of the fitted matrix: ``m`` less the all-zero rows that were dropped."""
        return self.m - self.rows_dropped

    @property
    def n_eff(self) -> int:
        """Columns of the fitted matrix: ``n`` less the all-zero columns that were dropped."""
        return self.n - self.cols_dropped

    @property
    def p(self) -> int:
        """min(m, n) of the fitted (reduced) matrix."""
        return min(self.m_eff, self.n_eff)

    @property
    def N(self) -> int:  # noqa: N802 - the paper's notation
        """max(m, n) of the fitted (reduced) matrix."""
        return max(self.m_eff, self.n_eff)

    @property
    def ratio(self) -> float:
        return self.p / self.N

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues s_i^2 / N, descending."""
        return self.singular_values**2 / self.N

    @property
    def spikes(self) -> np.ndarray:
        """Singular values above the edge."""
        return self.singular_values[self.singular_values > self.sv_edge]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def poor_fit(self) -> bool:
        """Fitted, but with an error ``mu`` above :func:`poor_fit_threshold`: the bulk does not look like MP."""
        return self.ok and bool(self.mu > poor_fit_threshold(self.p))

    def summary(self) -> dict[str, Any]:
        """Scalar fields as a dict (for tables), the fit settings (:meth:`FitConfig.to_dict`) among them."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("fit_config", "singular_values")}
        out.update(self.fit_config.to_dict())
        out.update(m_eff=self.m_eff, n_eff=self.n_eff, p=self.p, N=self.N, ratio=self.ratio, poor_fit=self.poor_fit)
        return out


def _to_float64(x: Any, what: str) -> torch.Tensor:
    """Convert a tensor/array to a float64 torch tensor, refusing integer and non-finite input."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if not (t.is_floating_point()):
            raise InputError(f"{what}: expected a floating-point tensor, got dtype {t.dtype}")
        t = t.to(torch.float64)
    else:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"{what}: expected a floating-point array, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InputError(f"{what}: contains {bad} NaN or Inf entries")
    return t


def singular_values(matrix: Any, *, name: str = "matrix", device: str | torch.device | None = None) -> np.ndarray:
    """Singular values of an m x n matrix in float64, descending.

    Computed from the eigenvalues of the smaller Gram matrix (p x p), which needs far fewer
    operations than an SVD; the Gram matrix is formed in float64, so the squared singular
    values keep full relative precision for all but the tiniest ones, which MP fitting ignores.
    """
    t = _to_float64(matrix, name)
    if t.ndim != 2:
        raise InputError(f"{name}: expected a 2-D matrix, got shape {tuple(t.shape)}")
    return gram_singular_values(t, device=device)


def count_zero_lines(matrix: Any) -> tuple[int, int]:
    """Numbers of all-zero rows and all-zero columns of a 2-D matrix (exact zeros).

    Pass them to :func:`fit_mp` as ``zero_lines=`` when fitting singular values computed elsewhere,
    so that the fit drops those rows/columns as it does when given the matrix.
    """
    t = matrix.detach() if isinstance(matrix, torch.Tensor) else torch.as_tensor(np.asarray(matrix))
    if t.ndim != 2:
        raise InputError(f"count_zero_lines: expected a 2-D matrix, got shape {tuple(t.shape)}")
    nonzero = t != 0
    return int((~nonzero.any(dim=1)).sum()), int((~nonzero.any(dim=0)).sum())


def _edge(sigma2: float, p: int, N: int, beta: float, centring: str = "paper") -> float:
    """Tracy-Widom-corrected upper edge lambda_+ (eigenvalue units)."""
    t = float(tw1_ppf(1.0 - beta))
    if centring == "paper":  # the paper's formula, written as it does (equal to tw_centre_scale's to round-off)
        root = np.sqrt(p / N)
        return sigma2 * (
            (1.0 + root) ** 2 + t * N ** (-2.0 / 3.0) * (p / N) ** (-1.0 / 6.0) * (1.0 + root) ** (4.0 / 3.0)
        )
    centre, scale = tw_centre_scale(N, p, centring)
    return sigma2 * (centre + t * scale)


def _bema_window(p: int, alpha: float) -> np.ndarray:
    """1-based ranks k of the central window floor(alpha p) .. floor((1 - alpha) p).

    The products are nudged up by 1e-9 before rounding down, so that an integer such as
    0.7 * 90 = 63 is not lost to binary round-off (62.99999...)."""
    lo = max(int(np.floor(alpha * p + 1e-9)), 1)
    hi = min(int(np.floor((1.0 - alpha) * p + 1e-9)), p - 1)
    return np.arange(lo, hi + 1)


@lru_cache(maxsize=256)
def _bema_reference(p: int, N: int, alpha: float, quantile: str = "midpoint") -> tuple[np.ndarray, np.ndarray]:
    """The BEMA window's ranks and their MP(c, 1) quantiles at (k - offset)/p, cached per shape.

    A model repeats a handful of shapes (ViT-B/16: four), and the quantile bisection is most of
    a fit's time, so each (p, N, alpha) is computed once. The arrays are read-only.
    """
    ranks = _bema_window(p, alpha)
    q = mp_ppf((ranks - BEMA_QUANTILES[quantile]) / p, p / N, 1.0)
    ranks.setflags(write=False)
    q.setflags(write=False)
    return ranks, q


def _unit_scale(largest: float) -> float:
    """A power of two c with largest / c in [1, 2) (1 for 0): dividing by it is exact, and brings
    entries from 1e-300 or 1e300 to where squares neither underflow nor overflow."""
    if not largest > 0:
        return 1.0
    return float(np.ldexp(1.0, np.frexp(largest)[1] - 1))


def fit_mp(
    x: Any,
    shape: tuple[int, int] | None = None,
    *,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    name: str | None = None,
    zero_lines: tuple[int, int] | None = None,
) -> MPFit:
    """Fit MP to a weight matrix (or to its singular values with ``shape=(m, n)``).

    Args:
        x: an m x n matrix (torch or numpy, any float dtype; computed in float64), or a 1-D array
            of its min(m, n) singular values together with ``shape``.
        shape: (m, n) of the matrix when ``x`` holds singular values.
        fit_config: the fit settings (:class:`~rmtlib.spectral.fit_config.FitConfig`: BEMA's ``alpha`` and
            quantile convention, the Tracy-Widom level ``beta``, the edge's centring, ``min_dim``);
            default the paper's. The result carries it (``fit.fit_config``).
        name: layer name used in error messages.
        zero_lines: with ``shape=``, the numbers (rows, columns) of all-zero rows and columns of the
            matrix the singular values came from (:func:`count_zero_lines`); default none.

    All-zero rows and columns are dropped before fitting: a matrix with z zero rows is an
    (m - z) x n matrix, with its own aspect ratio and N, and its zeros are not eigenvalues of a bulk
    (fitting them as censored values biases sigma^2 low and invents spikes). The result keeps the
    original ``m, n`` and records ``rows_dropped``, ``cols_dropped``; ``p``, ``N``, ``ratio`` and
    ``singular_values`` are those of the reduced matrix. Given singular values only, the fit cannot
    see the zero rows: pass ``zero_lines``.

    Singular values below the numerical-rank tolerance ``8 sqrt(p eps) s_max`` (what round-off leaves
    of exact zeros in the Gram eigenvalues) count as 0. Zeros inside BEMA's central window are left
    out of the scale fit (and of ``mu``): a layer truncated to rank k (without zero rows or columns)
    keeps the top k singular values of its spectrum, so the window's nonzero order statistics still
    estimate sigma^2 (a censored fit). With fewer than 2 nonzero values in the window the status is
    ``rank_deficient`` and the metrics NaN: there is no bulk left to fit.
    """
    what = name or "matrix"
    check_fit_config(fit_config, f"{what}: fit_config")
    if shape is not None:
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
            raise InputError(f"{what}: shape must be (m, n), got {shape!r}")
        for side in shape:
            check_number(f"{what}: shape", side, minimum=1, integer=True)
    if shape is None:
        if zero_lines is not None:
            raise InputError(f"{what}: zero_lines= goes with shape= (singular values); a matrix is checked directly")
        t = _to_float64(x, what)
        if t.ndim != 2:
            raise InputError(
                f"{what}: expected a 2-D weight matrix (or singular values with shape=), got shape {tuple(t.shape)}"
            )
        m, n = t.shape
        nonzero = t != 0
        keep_rows, keep_cols = nonzero.any(dim=1), nonzero.any(dim=0)
        zr, zc = int(m - keep_rows.sum()), int(n - keep_cols.sum())
        if (zr or zc) and zr < m:
            t = t[keep_rows][:, keep_cols]
        scale = _unit_scale(float(t.abs().max()) if t.numel() else 0.0)
        # rescaled: no overflow or underflow in the Gram matrix
        sv = singular_values(t / scale, name=what) if zr < m else np.zeros(min(m, n))
    else:
        m, n = (int(v) for v in shape)
        t = _to_float64(x, what)
        if t.ndim != 1:
            raise InputError(f"{what}: with shape= the input must be 1-D singular values, got shape {tuple(t.shape)}")
        if t.numel() != min(m, n):
            raise InputError(f"{what}: got {t.numel()} singular values for shape {(m, n)}; expected {min(m, n)}")
        if bool((t < 0).any()):
            raise InputError(f"{what}: singular values must be non-negative")
        scale = _unit_scale(float(t.max()) if t.numel() else 0.0)
        sv = np.sort(t.cpu().numpy() / scale)[::-1].copy()
        zr, zc = _check_zero_lines(zero_lines, m, n, what)
        if zr < m and zc < n:
            keep = min(m - zr, n - zc)
            if np.any(sv[keep:] > RANK_TOLERANCE * np.sqrt(min(m, n) * np.finfo(np.float64).eps) * sv[0]):
                raise InputError(
                    f"{what}: zero_lines={zero_lines} leaves a {m - zr} x {n - zc} matrix of rank <= {keep}, "
                    f"but {int(np.sum(sv[keep:] > 0))} more singular values are nonzero"
                )
            sv = sv[:keep]
    if m < 1 or n < 1:
        raise InputError(f"{what}: empty matrix of shape {(m, n)}")
    if not np.any(sv > 0):
        raise InputError(f"{what}: all-zero matrix has no spectrum to fit")
    dropped = {"rows_dropped": zr, "cols_dropped": zc}
    m_fit, n_fit = m - zr, n - zc
    p, N = min(m_fit, n_fit), max(m_fit, n_fit)
    nan = float("nan")
    if p < fit_config.min_dim:
        return MPFit(m, n, nan, nan, nan, nan, nan, 0, "too_small", fit_config, sv * scale, **dropped)
    sv = np.where(sv < RANK_TOLERANCE * np.sqrt(p * np.finfo(np.float64).eps) * sv[0], 0.0, sv)

    ratio = p / N
    eig_asc = (sv[::-1] ** 2) / N
    ranks, q = _bema_reference(p, N, fit_config.alpha, fit_config.bema_quantile)
    lam = eig_asc[ranks - 1]
    if not np.all(lam > 0):  # censored: zeros (a truncated rank, pruned features) are not order statistics
        usable = lam > 0
        if usable.sum() < 2:
            return MPFit(m, n, nan, nan, nan, nan, nan, 0, "rank_deficient", fit_config, sv * scale, **dropped)
        ranks, q, lam = ranks[usable], q[usable], lam[usable]
    sigma2 = float(np.dot(q, lam) / np.dot(q, q))
    if not sigma2 > 0:
        raise InputError(
            f"{what}: the central part of the spectrum is zero (rank {int(np.sum(sv > 0))} of {p}); cannot fit MP"
        )
    lambda_plus = _edge(sigma2, p, N, fit_config.beta, fit_config.edge_centring)
    sv_edge = float(np.sqrt(N * lambda_plus))
    n_spikes = int(np.sum(sv > sv_edge))
    gamma = float(np.mean(sv <= sv_edge))
    # sup over the central window of |F_MP - empirical cdf|, both sides of each jump
    f = mp_cdf(lam, ratio, sigma2)
    mu = float(max(np.max(np.abs(f - ranks / p)), np.max(np.abs(f - (ranks - 1) / p))))
    # back to the input's units: the fit is scale-equivariant (sigma^2 and lambda_+ scale by c^2, s_+ by c)
    sigma2, lambda_plus, sv_edge = sigma2 * scale * scale, float(lambda_plus) * scale * scale, sv_edge * scale
    if not (np.isfinite(lambda_plus) and sigma2 >= np.finfo(np.float64).tiny and np.all(np.isfinite(sv * scale))):
        raise InputError(
            f"{what}: its scale (largest singular value {sv[0] * scale:.3g}) puts sigma^2 = {sigma2:.3g} outside "
            "float64's range; rescale the matrix (the fit is scale-equivariant: sigma^2 scales by c^2)"
        )
    return MPFit(m, n, sigma2, lambda_plus, sv_edge, gamma, mu, n_spikes, "ok", fit_config, sv * scale, **dropped)


def _check_zero_lines(zero_lines: Any, m: int, n: int, what: str) -> tuple[int, int]:
    """Validate ``zero_lines=`` (counts of all-zero rows and columns) against the shape (m, n)."""
    if zero_lines is None:
        return 0, 0
    try:
        zr, zc = (int(v) for v in zero_lines)
    except (TypeError, ValueError):
        raise InputError(f"{what}: zero_lines must be a pair (rows, columns) of counts, got {zero_lines!r}") from None
    if not (0 <= zr <= m and 0 <= zc <= n) or (zr == m) != (zc == n):
        raise InputError(f"{what}: zero_lines={zero_lines!r} is impossible for shape {(m, n)}")
    return zr, zc
