"""Shared pieces of the pruning methods: the units pruned, the parameter budget, exact selection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rmtlib.errors import InputError
from rmtlib.nn.lowrank import gram_eigh
from rmtlib.runtime import resolve_device
from rmtlib.spectral.fit import MPFit, count_zero_lines, fit_mp
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.spectral.gram import gram, gram_eigenvalues, gram_singular_values, singular_from_eigenvalues
from rmtlib.spectral.layers import FactoredLayer, layer_matrices, prunable_layers

__all__ = [
    "Unit",
    "Budget",
    "elementwise_units",
    "structured_units",
    "write_back",
    "check_stored_weights",
    "fit_unit",
    "smallest_mask",
    "cut_smallest_keys",
    "remove_smallest",
    "split_count",
    "resolve_device",
]


@dataclass
class Unit:
    """One pruned matrix: ``matrix`` is a writable out x in view of the weight (element-wise
    methods) or the effective matrix of a layer that may be replaced (structured methods)."""

    name: str
    kind: str
    module: nn.Module
    matrix: torch.Tensor
    nnz: int
    fit: MPFit | None = None
    status: str = "not_fitted"
    rank_kept: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def m(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def ok(self) -> bool:
        return self.fit is not None and self.fit.ok


@dataclass(frozen=True)
class Budget:
    """Parameter budget of a pruning run, against the dense count of the input model."""

    dense: int
    nonzero_before: int
    fixed_nonzero: int  # nonzero parameters outside the pruned matrices (biases, norms, tokens, ...)
    target_nonzero: int | None  # None: the method's own stopping rule decides

    @property
    def unit_allowance(self) -> int | None:
        """Most nonzeros the pruned matrices may keep so the whole model meets the target."""
        return None if self.target_nonzero is None else self.target_nonzero - self.fixed_nonzero

    def max_sparsity(self, removable_floor: int = 0) -> float:
        """Best reachable sparsity when the pruned matrices keep ``removable_floor`` nonzeros."""
        return 1.0 - (self.fixed_nonzero + removable_floor) / self.dense


def _check_finite(name: str, matrix: torch.Tensor) -> None:
    if not matrix.is_floating_point():
        raise InputError(f"layer {name}: weight dtype {matrix.dtype} is not floating point")
    if not bool(torch.isfinite(matrix).all()):
        bad = int((~torch.isfinite(matrix)).sum())
        raise InputError(f"layer {name}: weight contains {bad} NaN or Inf entries")


def _stored_weight(name: str, module: nn.Module) -> torch.Tensor:
    """The parameter that holds the layer's weight; a computed weight (a torch parametrization such as
    weight_norm, or torch.nn.utils.prune's mask) cannot be pruned by writing into it."""
    weight = module._parameters.get("weight")
    if weight is None:
        raise InputError(
            f"layer {name}: its weight is not a stored parameter (computed by a torch parametrization "
            "or torch.nn.utils.prune, or kept as a buffer), so it cannot be pruned in place; remove the "
            "reparametrization first (torch.nn.utils.prune.remove(module, 'weight'), "
            "torch.nn.utils.parametrize.remove_parametrizations) or exclude the layer"
        )
    return weight


def check_stored_weights(
    model: nn.Module, include: Sequence[str] | None, exclude: Sequence[str] | None, split_qkv: bool = False
) -> None:
    """:class:`InputError` naming the first selected layer whose weight is not a stored parameter."""
    for item in layer_matrices(model, split_qkv=split_qkv, include=include, exclude=exclude, factors="parts"):
        _stored_weight(item.name, item.module)


def _owners(model: nn.Module) -> dict[int, list[str]]:
    """id of each parameter -> every ``path.name`` that holds it (a tied or reused weight has several)."""
    owners: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for pname, param in module._parameters.items():
            if param is not None:
                owners.setdefault(id(param), []).append(f"{path}.{pname}" if path else pname)
    return owners


def elementwise_units(
    model: nn.Module, include: Sequence[str] | None, exclude: Sequence[str] | None, split_qkv: bool = False
) -> list[Unit]:
    """Writable weight views of every prunable leaf; low-rank layers contribute their factor layers.

    A weight shared by several layers (tied, or one module at two paths) is one unit, pruned and
    counted once. A weight whose matrix is not a view of it (a channels_last convolution) is
    pruned on a contiguous copy that :func:`write_back` copies into the weight afterwards.
    """
    units, seen = [], set()
    for item in layer_matrices(model, split_qkv=split_qkv, include=include, exclude=exclude, factors="parts"):
        _check_finite(item.name, item.matrix)
        weight = _stored_weight(item.name, item.module)
        key = (id(weight), item.matrix.storage_offset(), tuple(item.matrix.shape))
        if key in seen:
            continue
        seen.add(key)
        matrix, extra = item.matrix, {}
        if matrix.untyped_storage().data_ptr() != weight.untyped_storage().data_ptr():  # a copy, not a view
            if matrix.shape[0] != weight.shape[0]:
                raise InputError(
                    f"layer {item.name}: a part of a non-contiguous weight cannot be pruned in place; "
                    "make the model contiguous first (model.to(memory_format=torch.contiguous_format))"
                )
            matrix = matrix.contiguous()
            extra["write_back"] = weight
        units.append(Unit(item.name, item.kind, item.module, matrix, int(torch.count_nonzero(matrix)), extra=extra))
    return units


def write_back(units: Sequence[Unit]) -> None:
    """Copy each unit pruned on a copy (see :func:`elementwise_units`) into its layer's weight."""
    for unit in units:
        weight = unit.extra.pop("write_back", None)
        if weight is not None:
            with torch.no_grad():
                weight.copy_(unit.matrix.reshape(weight.shape))


def structured_units(model: nn.Module, include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[Unit]:
    """Whole layers (dense or low-rank, not the factors inside a low-rank layer) with their matrices.

    A layer whose weight another module also holds (a tied embedding, one module at two paths) is
    refused: replacing it by factors would untie the copies and grow the model."""
    units = []
    owners = _owners(model)
    for name, module in prunable_layers(model, include, exclude):
        own = f"{name}." if name else ""
        shared = [o for p in module.parameters() for o in owners.get(id(p), []) if not o.startswith(own)]
        if shared:
            raise InputError(
                f"layer {name}: its weights are also held by {', '.join(sorted(set(shared)))}; a structured "
                "method would replace one copy and grow the model: exclude the layer or untie the weights"
            )
        if isinstance(module, FactoredLayer):
            matrix = module.rmt_matrix()
            nnz = sum(
                int(torch.count_nonzero(p.detach())) for n_, p in module.named_parameters() if n_.endswith("weight")
            )
        else:
            matrix = module.weight.detach().reshape(module.weight.shape[0], -1)
            nnz = int(torch.count_nonzero(matrix))
        _check_finite(name, matrix)
        units.append(Unit(name, type(module).__name__, module, matrix, nnz))
    return units


def fit_unit(
    unit: Unit,
    *,
    sv: np.ndarray | None = None,
    device: torch.device | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    keep_basis: bool = False,
) -> MPFit | None:
    """Fit MP to the unit's matrix (or to given singular values); stores fit and status on the unit.

    ``keep_basis`` keeps the Gram eigen-decomposition in ``unit.extra["gram_eigh"]`` so a later
    factorization of the layer needs no second decomposition.
    """
    if sv is None and keep_basis:
        w = unit.matrix.detach().to(device=device if device is not None else unit.matrix.device, dtype=torch.float64)
        eigval, eigvec = gram_eigh(w)
        unit.extra["gram_eigh"] = (eigval, eigvec)
        sv = singular_from_eigenvalues(eigval.cpu().numpy())
    elif sv is None:
        sv = gram_singular_values(unit.matrix, device=device)
    if not np.any(sv > 0):
        unit.fit, unit.status = None, "all_zero"
        return None
    try:
        fit = fit_mp(
            sv,
            shape=(unit.m, unit.n),
            fit_config=fit_config,
            name=unit.name,
            zero_lines=count_zero_lines(unit.matrix),
        )
    except InputError:  # e.g. a rank-deficient matrix whose central spectrum is zero
        unit.fit, unit.status = None, "fit_failed"
        return None
    unit.fit, unit.status = fit, fit.status
    return fit


_CHUNK = 16


def fit_units(
    units: list[Unit],
    *,
    device: torch.device | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    keep_basis: bool = False,
    progress: bool = False,
) -> None:
    """Fit MP to every unit. Eigenvalues come from :func:`rmtlib.spectral.gram.gram_eigenvalues` (CPU
    threads, plus the GPU on CUDA); with ``keep_basis`` Gram matrices of equal size are
    eigen-decomposed in batches and kept in ``unit.extra["gram_eigh"]`` (see :func:`fit_unit`).
    """
    check_fit_config(fit_config)  # here: fit_unit reads a fit's InputError as "fit_failed"
    if not keep_basis:
        values = gram_eigenvalues(
            [u.matrix for u in units], [u.name for u in units], device=device, progress=progress, desc="MP fit"
        )
        for unit, eig in zip(units, values):
            fit_unit(unit, sv=singular_from_eigenvalues(eig), fit_config=fit_config)
        return

    groups: dict[tuple[int, str], list[int]] = {}
    grams: dict[int, torch.Tensor] = {}
    for index, unit in enumerate(units):
        w = unit.matrix.detach().to(device=device if device is not None else unit.matrix.device, dtype=torch.float64)
        grams[index] = gram(w)
        groups.setdefault((grams[index].shape[0], str(grams[index].device)), []).append(index)
    bar = tqdm(total=len(units), desc="MP fit", disable=not progress, leave=False)
    for indices in groups.values():
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            values, vectors = torch.linalg.eigh(torch.stack([grams.pop(i) for i in chunk]))
            host = values.cpu().numpy()
            for j, i in enumerate(chunk):
                units[i].extra["gram_eigh"] = (values[j], vectors[j])
                fit_unit(units[i], sv=singular_from_eigenvalues(host[j]), fit_config=fit_config)
                bar.update(1)
    bar.close()


def smallest_mask(keys: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly the ``k`` smallest entries of 1-D ``keys`` (ties: lowest index first)."""
    k = int(k)
    mask = torch.zeros_like(keys, dtype=torch.bool)
    if k <= 0:
        return mask
    if k >= keys.numel():
        return ~mask
    thr = torch.kthvalue(keys.cpu() if keys.device.type == "mps" else keys, k).values
    mask = keys < thr
    short = k - int(mask.sum())
    if short > 0:
        mask[torch.nonzero(keys == thr).flatten()[:short]] = True
    return mask


def cut_smallest_keys(units: Sequence[Unit], keys: Sequence[torch.Tensor], remove: int) -> tuple[float, list]:
    """One threshold over all units: zero, in place, the ``remove`` nonzero entries with the lowest keys.

    ``keys`` holds each unit's flat float32 scores on one device (where the ranking runs), -1 at entries
    already zero (they come first and cost nothing). Returns the threshold (the largest key cut; 0 when
    nothing is) and, per unit, the boolean mask (unit shape, on its device) of the entries this call zeroed.
    """
    remove = max(0, int(remove))
    zeros = sum(int((k < 0).sum()) for k in keys)
    allkeys = torch.cat(list(keys))
    mask = smallest_mask(allkeys, remove + zeros)
    threshold = float(allkeys[mask].max()) if remove > 0 else 0.0
    mask &= allkeys >= 0
    cut, start = [], 0
    for unit, key in zip(units, keys):
        part = mask[start : start + key.numel()].reshape(unit.matrix.shape).to(unit.matrix.device)
        start += key.numel()
        unit.matrix.masked_fill_(part, 0)
        cut.append(part)
    return threshold, cut


def remove_smallest(matrix: torch.Tensor, k: int) -> int:
    """Zero the ``k`` smallest-magnitude nonzero entries of ``matrix`` in place; returns the count zeroed."""
    flat = matrix.reshape(-1)
    nonzero = flat != 0
    k = min(int(k), int(nonzero.sum()))
    if k <= 0:
        return 0
    keys = flat.detach().abs().to(torch.float64 if flat.dtype == torch.float64 else torch.float32)
    keys[~nonzero] = -1.0  # already-zero entries come first and cost nothing
    mask = smallest_mask(keys, k + int((~nonzero).sum()))
    if flat.data_ptr() == matrix.data_ptr() and flat.is_contiguous() and matrix.is_contiguous():
        flat[mask] = 0
    else:  # not a view: write back through the matrix
        matrix.copy_(torch.where(mask.reshape(matrix.shape), torch.zeros_like(matrix), matrix))
    return k


def split_count(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders), each <= its cap."""
    w = np.asarray(weights, dtype=np.float64)
    caps_arr = np.asarray(caps, dtype=np.int64)
    out = np.zeros(len(w), dtype=np.int64)
    remaining = int(min(total, caps_arr.sum()))
    while remaining > 0:
        free = (out < caps_arr) & (w > 0)
        if not free.any():
            break
        share = np.where(free, w, 0.0)
        ideal = remaining * share / share.sum()
        add = np.minimum(np.floor(ideal).astype(np.int64), caps_arr - out)
        left = remaining - int(add.sum())
        if left > 0:
            frac = np.where(free & (out + add < caps_arr), ideal - np.floor(ideal), -1.0)
            for i in np.argsort(-frac, kind="stable")[:left]:
                if frac[i] >= 0:
                    add[i] += 1
        if add.sum() == 0:
            break
        out += add
        remaining -= int(add.sum())
    return out.tolist()
