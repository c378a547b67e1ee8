"""Pruning methods behind one entry point, :func:`prune`; methods register in :mod:`rmtlib.pruning.registry`."""

from rmtlib.pruning.core import METHODS, REPORT_COLUMNS, check_method_options, prune
from rmtlib.pruning.registry import MethodSpec, PruneContext, register_method
from rmtlib.pruning.result import PruneResult, PruneSummary

__all__ = [
    "prune",
    "PruneResult",
    "PruneSummary",
    "check_method_options",
    "register_method",
    "PruneContext",
    "MethodSpec",
    "METHODS",
    "REPORT_COLUMNS",
]
