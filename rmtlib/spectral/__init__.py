"""Spectra of weight matrices: Gram eigenvalues (one place), the MP fit, layer matrices, per-layer analysis."""

from rmtlib.spectral.fit_config import FitConfig

__all__ = ["FitConfig"]
