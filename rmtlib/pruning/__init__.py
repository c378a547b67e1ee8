"""Pruning methods behind one entry point, :func:`prune` (see :mod:`rmtlib.pruning.core`)."""

from .core import METHODS, REPORT_COLUMNS, prune

__all__ = ["prune", "METHODS", "REPORT_COLUMNS"]
