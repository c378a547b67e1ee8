"""Spectra of weight matrices: Gram eigenvalues (one place), the MP fit, layer matrices, per-layer analysis."""
