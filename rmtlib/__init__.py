"""rmtlib: Marchenko-Pastur analysis and pruning of deep networks (arXiv 2503.01922, reproduced)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rmtlib.errors import CheckpointError, DataError, DivergenceError, InputError, RMTError
from rmtlib.experiments.sweep import sweep
from rmtlib.experiments.sweep_store import SweepStore
from rmtlib.nn.checkpoints import load_checkpoint, save_checkpoint
from rmtlib.nn.count import count_macs, count_params
from rmtlib.nn.lowrank import LowRankConv2d, LowRankLinear, factorize, factorize_linear, replace_module
from rmtlib.nn.models import create_model
from rmtlib.pruning import PruneResult, PruneSummary, prune, register_method
from rmtlib.spectral.analyze import analyze
from rmtlib.spectral.fit import MPFit, fit_mp, singular_values
from rmtlib.spectral.fit_config import FitConfig
from rmtlib.spectral.layers import layer_matrices, prunable_layers, weight_matrix
from rmtlib.theory.mp import mp_cdf, mp_edges, mp_pdf, mp_ppf
from rmtlib.theory.tracy_widom import tw1_cdf, tw1_ppf

try:
    __version__ = version("rmtlib")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = [
    "CheckpointError",
    "DataError",
    "DivergenceError",
    "InputError",
    "RMTError",
    "FitConfig",
    "MPFit",
    "fit_mp",
    "singular_values",
    "layer_matrices",
    "prunable_layers",
    "weight_matrix",
    "mp_cdf",
    "mp_edges",
    "mp_pdf",
    "mp_ppf",
    "analyze",
    "tw1_cdf",
    "tw1_ppf",
    "__version__",
    "count_macs",
    "count_params",
    "load_checkpoint",
    "save_checkpoint",
    "LowRankConv2d",
    "LowRankLinear",
    "factorize",
    "factorize_linear",
    "replace_module",
    "prune",
    "PruneResult",
    "PruneSummary",
    "register_method",
    "create_model",
    "sweep",
    "SweepStore",
]
