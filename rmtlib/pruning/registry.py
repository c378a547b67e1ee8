"""The registry of pruning methods: one decorator, one call signature, one place to add a method.

A method is a function ``fn(ctx: PruneContext, *, option=default, ...) -> dict`` registered with
:func:`register_method` (in the style of timm's ``register_model``). Its keyword-only parameters
are its options; :func:`rmtlib.prune` validates them against the registry before any change to
the model, fits MP when the method needs it and passes calibration inputs when it needs data.
The returned dict (thresholds, cycle logs, ...) goes into the pruning summary (``PruneSummary.outputs``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.pruning.common import Budget, Unit
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig

__all__ = ["PruneContext", "MethodSpec", "METHODS", "KINDS", "register_method", "method_spec"]

#: element-wise methods zero single weights in place; structured ones replace layers (low rank)
KINDS = ("elementwise", "structured")


@dataclass
class PruneContext:
    """What every method receives: the model being pruned, its units, the budget and the run's settings."""

    model: nn.Module
    units: list[Unit]
    budget: Budget
    device: torch.device | None = None
    progress: bool = False
    seed: int = 0
    fit_config: FitConfig = DEFAULT_FIT_CONFIG
    calibration: Any = None  # model inputs (a tensor) for methods that need data; None otherwise
    extra: dict[str, Any] = field(default_factory=dict)


Method = Callable[..., "dict[str, Any] | None"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function, what it needs, and the options it takes."""

    name: str
    fn: Method
    kind: str
    needs_fit: bool
    needs_calibration: bool
    stopping_option: str | None  # the option with which it stops by its own rule instead of at a target
    requires_sparsity: bool
    options: frozenset[str]
    check: Callable[[str, Mapping[str, Any]], None] | None
    summary: str

    @property
    def structured(self) -> bool:
        return self.kind == "structured"


METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    kind: str = "elementwise",
    needs_fit: bool = False,
    needs_calibration: bool = False,
    stopping_option: str | None = None,
    requires_sparsity: bool = False,
    check: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> Callable[[Method], Method]:
    """Register ``fn(ctx, **options)`` as pruning method ``name``.

    Args:
        kind: ``"elementwise"`` (zeros weights in place) or ``"structured"`` (replaces layers).
        needs_fit: the method reads each unit's MP fit (fitted before it runs).
        needs_calibration: the method needs ``calibration=`` inputs (refused without them).
        stopping_option: the option that stops it by its own rule when no sparsity is given.
        requires_sparsity: it has no rule of its own: ``sparsity=`` is required.
        check: ``check(name, options)`` raising InputError for bad option values, before any change.
    """
    if kind not in KINDS:
        raise ValueError(f"register_method({name!r}): kind must be one of {KINDS}, got {kind!r}")

    def decorate(fn: Method) -> Method:
        params = inspect.signature(fn).parameters
        options = frozenset(n for n, p in params.items() if p.kind == p.KEYWORD_ONLY)
        if stopping_option is not None and stopping_option not in options:
            raise ValueError(f"register_method({name!r}): stopping option {stopping_option!r} is not an option of it")
        doc = (fn.__doc__ or "").strip().splitlines()
        METHODS[name] = MethodSpec(
            name=name,
            fn=fn,
            kind=kind,
            needs_fit=needs_fit,
            needs_calibration=needs_calibration,
            stopping_option=stopping_option,
            requires_sparsity=requires_sparsity,
            options=options,
            check=check,
            summary=doc[0] if doc else "",
        )
        return fn

    return decorate


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name``, or an InputError listing the methods."""
    if name not in METHODS:
        raise InputError(f"unknown pruning method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
