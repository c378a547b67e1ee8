"""Find the weight matrices of a torch model: Linear, Conv1d/Conv2d (unfolded), fused qkv."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class LayerMatrix:
    """One analysable matrix: ``name`` is the module path (``.q``/``.k``/``.v`` appended when a
    fused qkv is split), ``kind`` the module type, ``matrix`` an out x in view of the weight."""

    name: str
    kind: str
    module: nn.Module
    matrix: torch.Tensor


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return bool(patterns) and any(fnmatch.fnmatchcase(name, p) for p in patterns)


class FactoredLayer(nn.Module):
    """A layer stored as factors with one effective out x in matrix (the low-rank layers of
    :mod:`rmtlib.nn.lowrank`). Analysis and structured pruning see it as that one matrix,
    element-wise pruning prunes its factor sub-layers. Defined here, below ``nn/``, because the
    layer listing must recognise it."""

    def rmt_matrix(self) -> torch.Tensor:
        """The effective out x in weight matrix (a new tensor)."""
        raise NotImplementedError

    def dense_numel(self) -> int:
        """Parameters of the equivalent dense layer (weight plus bias)."""
        raise NotImplementedError


def prunable_layers(
    model: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES,
    factors: str = "whole",
) -> list[tuple[str, nn.Module]]:
    """Leaf Linear/Conv modules of ``model`` as (name, module), in registration order.

    ``include``/``exclude`` are fnmatch patterns on the module name (e.g. ``"blocks.*.mlp.*"``);
    a layer is kept when it matches an include pattern (or no include is given) and no exclude.
    :class:`FactoredLayer` modules (e.g. :class:`rmtlib.nn.lowrank.LowRankLinear`)
    are listed as one matrix (``factors="whole"``, for analysis and structured pruning) or
    replaced by their factor sub-layers (``factors="parts"``, for element-wise pruning); a factor
    matches a pattern through its own name (``0.down``) or its layer's (``0``).
    """
    if factors not in ("whole", "parts"):
        raise ValueError(f"factors must be 'whole' or 'parts', got {factors!r}")
    if include is not None and isinstance(include, str):
        include = [include]
    if exclude is not None and isinstance(exclude, str):
        exclude = [exclude]
    out = []
    factored: list[str] = []  # FactoredLayer modules; their children are parts of them
    for name, module in model.named_modules():
        if not name:
            continue
        owner = next((prefix for prefix in factored if name.startswith(prefix + ".")), None)
        if isinstance(module, FactoredLayer):
            factored.append(name)
            if factors == "parts":
                continue
        elif owner is not None and factors == "whole":
            continue
        if not isinstance(module, (*types, FactoredLayer)):
            continue
        # a factor is selected by its own name or by the name of the layer it belongs to
        names = [name] if owner is None else [owner, name]
        if include and not any(_matches(n, include) for n in names):
            continue
        if any(_matches(n, exclude) for n in names):
            continue
        out.append((name, module))
    return out


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The module's weight as an out x in matrix (a conv kernel unfolded to C_out x (C_in / groups)*k*k).

    Returns a view of the weight for Linear/Conv (no copy, no dtype change), so the caller
    must not modify it in place unless it means to change the layer.
    """
    if isinstance(module, FactoredLayer):
        return module.rmt_matrix()
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"module of type {type(module).__name__} has no weight tensor")
    return weight.detach().reshape(weight.shape[0], -1)


def _is_fused_qkv(name: str, matrix: torch.Tensor) -> bool:
    return name.split(".")[-1] == "qkv" and matrix.shape[0] % 3 == 0 and matrix.shape[0] == 3 * matrix.shape[1]


def layer_matrices(
    model: nn.Module,
    *,
    split_qkv: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    factors: str = "whole",
) -> Iterator[LayerMatrix]:
    """Yield each analysable matrix of ``model``; a timm fused ``qkv`` (3d x d) is optionally
    split into its q, k and v blocks (rows 0:d, d:2d, 2d:3d, timm's layout)."""
    for name, module in prunable_layers(model, include, exclude, factors=factors):
        matrix = weight_matrix(module)
        kind = type(module).__name__
        if split_qkv and _is_fused_qkv(name, matrix):
            d = matrix.shape[0] // 3
            for i, part in enumerate("qkv"):
                yield LayerMatrix(f"{name}.{part}", kind, module, matrix[i * d : (i + 1) * d])
        else:
            yield LayerMatrix(name, kind, module, matrix)


def names(items: Iterable[LayerMatrix]) -> list[str]:
    """Names of the given layer matrices (convenience for tests and reports)."""
    return [item.name for item in items]
