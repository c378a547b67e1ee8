"""What :func:`rmtlib.prune` returns: the pruned model, its per-layer table and a typed summary.

The summary used to ride on the table (pandas' experimental ``attrs``: untyped, lost by many DataFrame
operations); here it is a frozen dataclass, and :meth:`PruneSummary.to_dict` gives the
same mapping for JSON and checkpoint metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import pandas as pd
from torch import nn

from rmtlib.errors import InputError
from rmtlib.spectral.fit_config import FitConfig, with_fit_config

__all__ = ["PruneResult", "PruneSummary"]


@dataclass(frozen=True)
class PruneSummary:
    """One pruning run in numbers: what was asked, what was reached, and the method's own outputs.

    Counts are of the whole model (biases, norms and tokens included): ``params_dense`` and
    ``nonzero_before`` of the input, ``stored_after`` and ``nonzero_after`` of the pruned model, and
    ``reached_sparsity = 1 - nonzero_after / params_dense``. ``target_sparsity`` is None when the
    method stopped by its own rule (``cycles=``, ``z=``, an N:M ``pattern``). ``options`` are the
    method options as given; ``fit_config`` the MP fit settings of the run; ``outputs`` what the
    registered method returned (``cycle_log``, ``z``,
    ``allocation``, ``seb_weights``, ...: the keys depend on the method).
    """

    method: str
    target_sparsity: float | None
    reached_sparsity: float
    params_dense: int
    nonzero_before: int
    stored_after: int
    nonzero_after: int
    seed: int
    fit_config: FitConfig
    options: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A flat dict: the method's outputs first, then the run's fields (which win a shared key); the
        fit settings as one ``fit_config`` dict (:meth:`FitConfig.to_dict`)."""
        out = dict(self.outputs)
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "outputs"})
        out["options"] = dict(self.options)
        out["fit_config"] = self.fit_config.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruneSummary:
        """The inverse of :meth:`to_dict` (e.g. of a summary read back from JSON): unknown keys are outputs;
        the loose ``alpha``, ``beta``, ``edge_centring`` of an older summary are read as its ``fit_config``."""
        data = with_fit_config(data, source="pruning summary")
        names = {f.name for f in fields(cls)} - {"outputs"}
        missing = sorted(f.name for f in fields(cls) if f.name in names and f.name not in data and f.name != "options")
        if missing:
            raise InputError(f"pruning summary: missing {', '.join(missing)}")
        return cls(
            **{k: v for k, v in data.items() if k in names and k != "fit_config"},
            fit_config=FitConfig.from_dict(data["fit_config"], source="pruning summary: fit_config"),
            outputs={k: v for k, v in data.items() if k not in names},
        )


@dataclass(frozen=True, eq=False)
class PruneResult:
    """The pruned ``model``, its per-layer table ``layers`` (columns
    :data:`rmtlib.pruning.core.REPORT_COLUMNS`) and the run's :class:`PruneSummary`."""

    model: nn.Module
    layers: pd.DataFrame
    summary: PruneSummary

    def __repr__(self) -> str:  # the model's own repr runs to pages
        s = self.summary
        target = "None" if s.target_sparsity is None else f"{s.target_sparsity:.4g}"
        return (
            f"PruneResult(method={s.method!r}, target_sparsity={target}, "
            f"reached_sparsity={s.reached_sparsity:.4f}, layers={len(self.layers)})"
        )
