"""Pruning methods behind one entry point, :func:`prune` (see :mod:`rmtlib.pruning.core`)."""

from rmtlib.pruning.core import METHODS, REPORT_COLUMNS, check_method_options, prune

__all__ = ["prune", "check_method_options", "METHODS", "REPORT_COLUMNS"]
