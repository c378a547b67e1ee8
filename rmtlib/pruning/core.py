"""``rmtlib.prune``: one entry point for every pruning method, with a per-layer report."""

from __future__ import annotations

import copy
import math
from dataclasses import fields
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

import rmtlib.pruning.elementwise  # noqa: F401  (each method family registers itself on import)
import rmtlib.pruning.rmt  # noqa: F401
import rmtlib.pruning.scores  # noqa: F401
import rmtlib.pruning.seb  # noqa: F401
import rmtlib.pruning.sparsegpt  # noqa: F401
import rmtlib.pruning.structured  # noqa: F401
from rmtlib.errors import InputError, check_number
from rmtlib.nn.count import count_params
from rmtlib.nn.finite import check_finite_model
from rmtlib.pruning.calibration import calibration_inputs
from rmtlib.pruning.common import (
    Budget,
    Unit,
    check_stored_weights,
    elementwise_units,
    fit_units,
    resolve_device,
    structured_units,
    write_back,
)
from rmtlib.pruning.registry import METHODS, PruneContext, method_spec
from rmtlib.pruning.result import PruneResult, PruneSummary
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.spectral.layers import FactoredLayer

__all__ = ["prune", "METHODS", "REPORT_COLUMNS", "PRUNE_KEYWORDS", "check_method_options"]

REPORT_COLUMNS = [
    "layer",
    "kind",
    "m",
    "n",
    "params_before",
    "params_after",
    "nonzero_before",
    "nonzero_after",
    "rank_kept",
    "gamma",
    "mu",
    "sv_edge",
    "n_spikes",
    "status",
]

#: keywords of :func:`prune` itself, which a caller's option mapping may also carry (the sweep passes them on)
PRUNE_KEYWORDS = frozenset(
    {
        "include",
        "exclude",
        "device",
        "progress",
        "seed",
        "fit_config",
        "split_qkv",
        "fit",
        "calibration",
    }
)


#: the summary's own fields: a method output of the same name (random's seed) is the run's value anyway
_SUMMARY_FIELDS = frozenset(f.name for f in fields(PruneSummary)) - {"outputs"}


def _stored(unit: Unit) -> int:
    """Stored weight entries of the unit's layer (biases excluded)."""
    if isinstance(unit.module, FactoredLayer):
        return sum(p.numel() for name, p in unit.module.named_parameters() if name.endswith("weight"))
    return unit.matrix.numel()


def _weight_params(unit: Unit) -> tuple[int, int]:
    """(stored, nonzero) weight entries of the unit's layer now (biases excluded)."""
    module = unit.module
    if isinstance(module, FactoredLayer):
        weights = [p.detach() for name, p in module.named_parameters() if name.endswith("weight")]
        return sum(w.numel() for w in weights), sum(int(torch.count_nonzero(w)) for w in weights)
    return unit.matrix.numel(), int(torch.count_nonzero(unit.matrix))


def check_method_options(method: str, options: Mapping[str, Any], *, with_sparsity: bool = False) -> None:
    """Raise :class:`InputError` for an unknown method, an option it does not take, or (with
    ``with_sparsity``: a sparsity target is given too) its own stopping rule, which would
    compete with the target (``rmt`` with ``cycles=`` could stop short of it). Before any work."""
    spec = method_spec(method)
    unknown = set(options) - spec.options - PRUNE_KEYWORDS
    if unknown:
        raise InputError(
            f"{method}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"it accepts {', '.join(sorted(spec.options)) or 'none'}"
        )
    if spec.structured and options.get("split_qkv"):
        raise InputError(f"{method}: split_qkv is only supported by element-wise methods")
    rule = spec.stopping_option
    if with_sparsity and rule is not None and options.get(rule) is not None:
        raise InputError(f"{method}: give either sparsity= or {rule}=, not both")
    if spec.check is not None:
        spec.check(method, options)


def prune(
    model: nn.Module,
    method: str,
    *,
    sparsity: float | None = None,
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    inplace: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    split_qkv: bool = False,
    fit: bool = True,
    progress: bool = False,
    calibration: Any = None,
    **method_options: Any,
) -> PruneResult:
    """Prune ``model`` with ``method`` to a target ``sparsity``; returns a :class:`PruneResult`.

    Sparsity is 1 - nonzero / dense parameters of the *whole* input model (biases, norms and
    tokens count as kept). Methods: ``rmt`` (the paper's cycles), ``rmt_oneshot``,
    ``rmt_lowrank`` (keep MP spikes, factorize), and the baselines ``magnitude``
    (``allocation="uniform"|"global"|"mp"|"alpha"``, or ``scope="layer"|"global"``), ``wanda`` and
    ``sparsegpt`` (calibration data; ``allocation=`` too; ``pattern="2:4"`` for N:M sparsity instead of
    a target), ``svd`` (uniform rank fraction) and ``random``. Method
    options (e.g. ``rho=``, ``sv_theta=``, ``reg_steps=``, ``bulk_fraction=``, ``z=``) are passed
    as keywords; without ``sparsity`` some methods take their own stopping rule instead
    (``cycles=``, ``z=``, ``bulk_fraction=``, ``rank_fraction=``).

    Args:
        include, exclude: fnmatch patterns on layer names (default: every Linear/Conv).
        inplace: modify ``model`` itself; otherwise a deep copy is pruned. Bad input is refused before
            any change, but an error midway (``rmt`` reaching ``max_cycles``) leaves an in-place model
            as far as it got.
        device: where SVDs run (float64); weights keep their own device and dtype.
        fit_config: the MP fit settings (:class:`rmtlib.FitConfig`; default the paper's).
        split_qkv: treat a fused qkv as three matrices (element-wise methods only).
        fit: fit MP for the report even when the method does not need it.
        calibration: model inputs for the data-dependent methods (wanda, sparsegpt): a DataLoader, a
            Dataset (of the pairs, the first element) or a tensor; checked by one forward pass.

    The result's ``model`` is the pruned model, ``layers`` has one row per pruned matrix (columns
    ``REPORT_COLUMNS``; gamma, mu, sv_edge and n_spikes are those of the input layer) and ``summary``
    (a :class:`PruneSummary`) holds the method, target and reached sparsity, whole-model counts and
    the method's own outputs (z, cycles, ...).
    """
    check_method_options(method, method_options, with_sparsity=sparsity is not None)
    spec = method_spec(method)
    structured, needs_fit = spec.structured, spec.needs_fit
    if sparsity is not None:
        sparsity = check_number("sparsity", sparsity, minimum=0.0, maximum=1.0, exclusive_maximum=True)
    elif spec.requires_sparsity:
        raise InputError(f"{method}: sparsity= is required")
    if structured and split_qkv:
        raise InputError(f"{method}: split_qkv is only supported by element-wise methods")
    check_fit_config(fit_config)  # checked here: a fit that fails is only marked fit_failed
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_finite_model(model, f"prune {method}")  # weights are checked per layer later; biases and norms only here
    dev = resolve_device(device)
    if spec.needs_calibration and calibration is None:
        raise InputError(f"{method}: needs calibration= (model inputs: a DataLoader, a Dataset or a tensor)")
    inputs = None if calibration is None else calibration_inputs(calibration, model)

    before = count_params(model)
    if not structured:  # before the copy: a computed weight cannot even be deep-copied
        check_stored_weights(model, include, exclude, split_qkv=split_qkv)
    try:
        work = model if inplace else copy.deepcopy(model)
    except RuntimeError as err:  # torch cannot deep-copy non-leaf tensors (weight_norm and the like)
        raise InputError(
            f"model {type(model).__name__} cannot be copied ({str(err).splitlines()[0]}); "
            "remove its reparametrizations or pass inplace=True"
        ) from None
    units = (
        structured_units(work, include, exclude)
        if structured
        else elementwise_units(work, include, exclude, split_qkv=split_qkv)
    )
    if not units:
        raise InputError(
            f"model {type(model).__name__} has no prunable Linear/Conv layers (include={include}, exclude={exclude})"
        )
    target_nonzero = None if sparsity is None else int(math.floor((1.0 - sparsity) * before["dense"] + 1e-9))
    budget = Budget(
        dense=before["dense"],
        nonzero_before=before["nonzero"],
        fixed_nonzero=before["nonzero"] - sum(u.nnz for u in units),
        target_nonzero=target_nonzero,
    )
    stored_before = [(_stored(u), u.nnz) for u in units]
    if needs_fit or fit:
        with torch.no_grad():
            fit_units(
                units,
                device=dev,
                fit_config=fit_config,
                keep_basis=structured,
                progress=progress,
            )
    ctx = PruneContext(
        model=work,
        units=units,
        budget=budget,
        device=dev,
        progress=progress,
        seed=seed,
        fit_config=fit_config,
        calibration=inputs,
    )
    options = {k: v for k, v in method_options.items() if k not in PRUNE_KEYWORDS}
    with torch.no_grad():
        try:
            extra = spec.fn(ctx, **options)
        finally:  # also after an error midway, so an in-place model is consistently "as far as it got"
            write_back(units)

    for unit in units:
        unit.extra.pop("gram_eigh", None)
    after = count_params(work)
    rows = []
    nan = float("nan")
    for unit, (stored0, nnz0) in zip(units, stored_before):
        stored1, nnz1 = _weight_params(unit)
        ok = unit.ok
        rows.append(
            {
                "layer": unit.name,
                "kind": unit.kind,
                "m": unit.m,
                "n": unit.n,
                "params_before": stored0,
                "params_after": stored1,
                "nonzero_before": nnz0,
                "nonzero_after": nnz1,
                "rank_kept": unit.rank_kept if structured else pd.NA,
                "gamma": unit.fit.gamma if ok else nan,
                "mu": unit.fit.mu if ok else nan,
                "sv_edge": unit.fit.sv_edge if ok else nan,
                "n_spikes": unit.fit.n_spikes if ok else 0,
                "status": unit.status,
            }
        )
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report["rank_kept"] = report["rank_kept"].astype("Int64")
    summary = PruneSummary(
        method=method,
        target_sparsity=sparsity,
        reached_sparsity=1.0 - after["nonzero"] / before["dense"],
        params_dense=before["dense"],
        nonzero_before=before["nonzero"],
        stored_after=after["stored"],
        nonzero_after=after["nonzero"],
        seed=seed,
        fit_config=fit_config,
        options=dict(method_options),
        outputs={k: v for k, v in (extra or {}).items() if k not in _SUMMARY_FIELDS},
    )
    return PruneResult(model=work, layers=report, summary=summary)
