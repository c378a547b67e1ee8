"""Calibration data for the data-dependent pruning methods (Wanda, SparseGPT).

:func:`calibration_inputs` turns what a user passes as ``calibration=`` (a DataLoader, a Dataset or
a tensor) into one tensor of model inputs, checked once by a forward pass; :func:`draw_calibration`
draws a seeded set of them from a dataset (``rmtlib prune --calibration`` and ``rmtlib sweep`` alike,
so the same seed and count pick the same images). :func:`layer_statistics`
runs those inputs through the model with forward hooks and accumulates, for each pruned layer, the
statistics of its input activations X (tokens x features, the columns of the layer's weight matrix):
the squared feature norms ``||X_j||_2^2`` (Wanda) and the Gram matrix ``X^T X`` (SparseGPT's Hessian).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rmtlib.errors import InputError

__all__ = [
    "calibration_inputs",
    "draw_calibration",
    "check_layer_inputs",
    "layer_input_rows",
    "LayerStats",
    "layer_statistics",
    "layer_inputs",
    "forward_order",
]

#: calibration samples per forward pass (the inputs are run in chunks to bound memory)
BATCH = 64


def _first_tensor(item: Any, what: str) -> torch.Tensor:
    """The model input of a sample or batch: the item itself when a tensor, else its first element."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    elif isinstance(item, dict):
        raise InputError(f"calibration: {what} is a dict; give tensors, (input, label) pairs or a tensor")
    if not isinstance(item, torch.Tensor):
        raise InputError(f"calibration: {what} is a {type(item).__name__}, not a tensor of model inputs")
    return item


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    param = next(model.parameters(), None)
    return (None, None) if param is None else (param.dtype, param.device)


def _to_model(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    dtype, device = _model_dtype_device(model)
    if device is None:
        return x
    return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)


class _Eval:
    """Context: the model in eval mode (no BatchNorm statistics updated, no dropout), each module's mode restored."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modes = {module: module.training for module in model.modules()}

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        for module, training in self.modes.items():
            module.training = training


def calibration_inputs(calibration: Any, model: nn.Module) -> torch.Tensor:
    """``calibration`` (a DataLoader, a Dataset or a tensor; of a pair the first element) as one tensor
    of model inputs, samples along dim 0. Checked by one forward pass of the first sample (in eval
    mode, without gradients: the model is not changed): an :class:`InputError` for a non-tensor, an
    empty set, or inputs the model cannot take."""
    if isinstance(calibration, torch.Tensor):
        x = calibration
    elif isinstance(calibration, DataLoader):
        parts = [_first_tensor(batch, f"batch {i}") for i, batch in enumerate(calibration)]
        if not parts:
            raise InputError("calibration: the DataLoader yielded no batches")
        try:
            x = torch.cat(parts)
        except RuntimeError as err:
            raise InputError(f"calibration: the batches do not stack ({str(err).splitlines()[0]})") from None
    elif isinstance(calibration, Dataset) or (hasattr(calibration, "__getitem__") and hasattr(calibration, "__len__")):
        if isinstance(calibration, (str, bytes, dict)):
            raise InputError(
                f"calibration must be a DataLoader, a Dataset or a tensor, got {type(calibration).__name__}"
            )
        if len(calibration) == 0:
            raise InputError("calibration: the dataset holds no samples")
        samples = [_first_tensor(calibration[i], f"sample {i}") for i in range(len(calibration))]
        try:
            x = torch.stack(samples)
        except RuntimeError as err:
            raise InputError(f"calibration: the samples do not stack ({str(err).splitlines()[0]})") from None
    else:
        raise InputError(f"calibration must be a DataLoader, a Dataset or a tensor, got {type(calibration).__name__}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError(f"calibration: no samples (a tensor of shape {tuple(x.shape)})")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise InputError("calibration: the inputs contain NaN or Inf")
    with _Eval(model), torch.no_grad():
        try:
            model(_to_model(x[:1], model))
        except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(
                f"calibration: inputs of shape {tuple(x.shape[1:])} per sample, which "
                f"{type(model).__name__} cannot take: {first}"
            ) from None
    return x.detach()


def draw_calibration(dataset: Dataset, count: int, seed: int) -> torch.Tensor:
    """``count`` model inputs of ``dataset`` drawn without replacement with ``seed`` (numpy's
    ``default_rng(seed).permutation``), stacked along dim 0: the one draw of calibration images, so a
    command and a sweep given the same seed and count calibrate on the same images. A sample is a
    tensor (or array) or a pair whose first element is the input. :class:`InputError` when ``count``
    is not in [1, len(dataset)]."""
    size = len(dataset)  # type: ignore[arg-type]
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= int(count) <= size:
        raise InputError(f"calibration: count must be in [1, {size}] (the dataset's size), got {count!r}")
    order = np.random.default_rng(int(seed)).permutation(size)[: int(count)]
    samples = [dataset[int(i)] for i in order]
    return torch.stack([torch.as_tensor(s[0] if isinstance(s, (tuple, list)) else s) for s in samples])


def check_layer_inputs(name: str, module: nn.Module) -> None:
    """:class:`InputError` naming a layer whose inputs cannot be laid out as the columns of its matrix."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups != 1:
        raise InputError(f"layer {name}: a grouped convolution (groups={module.groups}) has no single input matrix")
    if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise InputError(f"layer {name}: {type(module).__name__} inputs cannot be captured (Linear, Conv1d, Conv2d)")


def layer_input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input ``x`` of ``module`` as rows of its weight matrix's columns: a Linear's last dimension
    is the features (every other dimension, tokens included, gives samples); a convolution's input is
    unfolded to patches (C_in * kernel entries, the order of ``weight.reshape(C_out, -1)``)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        conv1d = isinstance(module, nn.Conv1d)
        if conv1d:
            x = x.unsqueeze(-2)
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        pad = module._reversed_padding_repeated_twice
        if conv1d:
            pad = [*pad, 0, 0]
        x = F.pad(x, pad, mode=mode) if any(pad) else x
        kernel = (1, *module.kernel_size) if conv1d else module.kernel_size
        stride = (1, *module.stride) if conv1d else module.stride
        dilation = (1, *module.dilation) if conv1d else module.dilation
        patches = F.unfold(x, kernel, dilation=dilation, stride=stride)  # N x (C k) x L
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    raise TypeError(f"no input layout for {type(module).__name__}")


@dataclass
class LayerStats:
    """Accumulated input statistics of one layer: ``count`` rows, ``sq_norms`` (features,) and, when
    asked for, ``gram`` = X^T X (features x features), all in float64."""

    count: int
    sq_norms: torch.Tensor
    gram: torch.Tensor | None = None


class _StopForward(Exception):
    """Raised by a hook once the inputs it waits for are captured: the rest of the forward is not needed."""


def _run(model: nn.Module, x: torch.Tensor, batch: int) -> None:
    with _Eval(model), torch.no_grad():
        for start in range(0, x.shape[0], batch):
            try:
                model(_to_model(x[start : start + batch], model))
            except _StopForward:
                pass


def layer_statistics(
    model: nn.Module,
    modules: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    gram: bool = False,
    device: torch.device | None = None,
    batch: int = BATCH,
    stop_after: int | None = None,
) -> dict[int, LayerStats]:
    """Run ``x`` through ``model`` and accumulate each module's input statistics (keyed by ``id``).

    A module called several times (a shared layer) accumulates every call's inputs; ``device`` is
    where the float64 sums live (default: the module's own). With ``stop_after`` (one module only:
    the number of times a forward calls it) each batch's forward stops once it has been called that often."""
    stats: dict[int, LayerStats] = {}
    calls = [0]
    if stop_after is not None and len(_unique(modules)) != 1:
        raise ValueError("stop_after needs exactly one module")

    def hook(module: nn.Module, args: tuple, _output: Any) -> None:
        rows = layer_input_rows(module, args[0].detach())
        dev = device if device is not None else rows.device
        rows = rows.to(device=dev, dtype=torch.float64)
        entry = stats.get(id(module))
        if entry is None:
            n = rows.shape[1]
            entry = stats[id(module)] = LayerStats(
                0,
                torch.zeros(n, dtype=torch.float64, device=dev),
                torch.zeros(n, n, dtype=torch.float64, device=dev) if gram else None,
            )
        entry.count += rows.shape[0]
        entry.sq_norms += (rows * rows).sum(0)
        if entry.gram is not None:
            entry.gram += rows.T @ rows
        calls[0] += 1
        if stop_after is not None and calls[0] % stop_after == 0:
            raise _StopForward

    handles = [m.register_forward_hook(hook) for m in _unique(modules)]
    try:
        _run(model, x, batch)
    finally:
        for h in handles:
            h.remove()
    return stats


def layer_inputs(model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each module's input rows (all of them, concatenated; keyed by ``id``), for checks and small models."""
    rows: dict[int, list[torch.Tensor]] = {}

    def hook(module: nn.Module, args: tuple, _output: Any) -> None:
        rows.setdefault(id(module), []).append(layer_input_rows(module, args[0].detach()))

    handles = [m.register_forward_hook(hook) for m in _unique(modules)]
    try:
        _run(model, x, BATCH)
    finally:
        for h in handles:
            h.remove()
    return {key: torch.cat(parts) for key, parts in rows.items()}


def forward_order(
    model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor
) -> tuple[list[nn.Module], dict[int, int]]:
    """``modules`` in the order a forward pass of ``x[:1]`` first calls them (never-called ones last),
    and how often that forward calls each (keyed by ``id``; 0 for a module never called)."""
    order: list[nn.Module] = []
    seen: set[int] = set()
    counts: dict[int, int] = {}

    def hook(module: nn.Module, _args: tuple, _output: Any) -> None:
        counts[id(module)] = counts.get(id(module), 0) + 1
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    unique = _unique(modules)
    handles = [m.register_forward_hook(hook) for m in unique]
    try:
        _run(model, x[:1], 1)
    finally:
        for h in handles:
            h.remove()
    return order + [m for m in unique if id(m) not in seen], {id(m): counts.get(id(m), 0) for m in unique}


def _unique(modules: Iterable[nn.Module]) -> list[nn.Module]:
    out, seen = [], set()
    for m in modules:
        if id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out
