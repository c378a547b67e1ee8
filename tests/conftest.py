"""Shared test settings: offline hub, deterministic torch, headless matplotlib."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def edge_decides():
    """``make(centring, beta=0.5) -> (W, paper, other)``: a 300 x 120 float64 matrix whose second singular
    value lies midway between the MP edge of ``paper = FitConfig(beta=beta)`` and that of ``other``
    (the same with ``edge_centring=centring``), its first far above both and all others below both, so
    the centring alone decides whether the second is a spike. Only values outside BEMA's window are
    moved, so both fits keep the noise's sigma^2 and edges (checked)."""
    from rmtlib import FitConfig, fit_mp

    def make(centring: str, beta: float = 0.5):
        shape = (300, 120)
        u, s, vh = np.linalg.svd(np.random.default_rng(7).standard_normal(shape), full_matrices=False)
        paper, other = FitConfig(beta=beta), FitConfig(beta=beta, edge_centring=centring)
        noise = {c: fit_mp(s, shape=shape, fit_config=c) for c in (paper, other)}
        lo, hi = sorted(fit.sv_edge for fit in noise.values())
        s = np.minimum(s, 0.99 * lo)
        s[0], s[1] = 2.0 * hi, 0.5 * (lo + hi)
        for config, fit in noise.items():
            assert fit_mp(s, shape=shape, fit_config=config).sv_edge == fit.sv_edge
        return torch.from_numpy((u * s) @ vh), paper, other

    return make
