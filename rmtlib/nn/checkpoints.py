"""Checkpoints: safetensors files with pruning metadata, written atomically.

A checkpoint holds the model's state dict plus, in the safetensors header, a JSON record:
the caller's metadata (method, parameters, ...), the library version and the low-rank layers
(path -> type and rank), so :func:`load_checkpoint` can rebuild the factorized layers in a
freshly created dense model before loading the weights. Plain timm/torch state dicts
(``.safetensors`` without that record, ``.pt``/``.pth``/``.bin``) load too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rmtlib.atomic import atomic_path
from rmtlib.errors import CheckpointError, InputError
from rmtlib.nn.lowrank import apply_lowrank_structure, lowrank_structure, replace_module

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "read_record",
    "load_state_dict_checked",
    "is_checkpoint_file",
]

_KEY = "rmtlib"
_FORMAT = 1


def _library_version() -> str:
    from rmtlib import __version__

    return __version__


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s state dict and ``metadata`` (JSON-serialisable) to ``path`` atomically.

    The file is written to a temporary name in the same folder and renamed over ``path`` only
    when complete, so a failure leaves any previous file untouched. Returns the path.
    """
    path = Path(path)
    try:
        record = json.dumps(
            {
                "format": _FORMAT,
                "library_version": _library_version(),
                "lowrank": lowrank_structure(model),
                "metadata": dict(metadata or {}),
            }
        )
    except TypeError as err:
        raise InputError(f"checkpoint metadata must be JSON-serialisable: {err}") from err
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path, suffix=".tmp") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", _KEY: record})
        _sort_header(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    return path


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys sorted, in place, so equal checkpoints are equal files.

    safetensors writes its metadata map in a random order (a Rust HashMap), so the same model saved
    twice gave different bytes and a model card's sha256 could not confirm a reproduction. The sorted
    header has the same length (same content, compact JSON), so the tensor data does not move.
    """
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        raw = handle.read(size)
        header = json.loads(raw)
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # pragma: no cover - only if the writer's JSON were more compact than ours
            return
        handle.seek(8)
        handle.write(text + b" " * (size - len(text)))


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a torch checkpoint (bare, or under 'state_dict' / 'model' / ...)."""
    for key in ("state_dict", "model_state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    keys = list(obj)
    if keys and all(k.startswith("module.") for k in keys):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` holds a safetensors file, whatever its name: an 8-byte header length, then
    a JSON header that fits in the file. :func:`save_checkpoint` writes this format to any name
    (``pruned.pt`` too), so the format is read from the bytes, not guessed from the suffix."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False  # torch files start with a zip ('PK') or pickle header
    return 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, rmtlib record) of a checkpoint file; the record is {} for plain state dicts."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors" or _is_safetensors(path):
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file ({err})") from err
        return tensors, read_record(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    return _unwrap(obj, path), {}


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The rmtlib record of a checkpoint file, read from its header without its tensors ({} for a
    torch file or a safetensors file that has none)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not (path.suffix == ".safetensors" or _is_safetensors(path)):
        return {}

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file ({err})") from err
    if _KEY not in header:
        return {}
    try:
        record = json.loads(header[_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt rmtlib metadata ({err})") from err
    _check_record(record, path)
    return record


def _check_record(record: Any, path: Path) -> None:
    """The shape of an rmtlib record (a JSON object; ``metadata``, ``lowrank`` and the architecture it
    records are objects), so a damaged header is a CheckpointError naming the file, not an
    AttributeError deep in model building."""
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: corrupt rmtlib metadata (a JSON {type(record).__name__}, not an object)")
    for key in ("metadata", "lowrank"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise CheckpointError(
                f"{path}: corrupt rmtlib metadata ({key!r} is a {type(record[key]).__name__}, not an object)"
            )
    metadata = record.get("metadata") or {}
    for key in ("config", "model_kwargs"):
        if metadata.get(key) is not None and not isinstance(metadata[key], dict):
            raise CheckpointError(
                f"{path}: corrupt rmtlib metadata (metadata {key!r} is a {type(metadata[key]).__name__}, not an object)"
            )
    if metadata.get("model") is not None and not isinstance(metadata["model"], str):
        raise CheckpointError(f"{path}: corrupt rmtlib metadata (metadata 'model' is not a name)")


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing file holding model weights (safetensors, or a torch zip/pickle
    file), judged from its bytes: what a command must not replace without being asked."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        if _is_safetensors(path):
            return True
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return head == b"PK" or head[:1] == b"\x80"  # torch.save: a zip archive, or a legacy pickle


def _names(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` only if keys and shapes match exactly; else name the mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch (checkpoint vs model): {_names(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint into ``model`` (modified in place, also returned) -> (model, metadata).

    Low-rank layers recorded in the checkpoint replace the model's dense layers first. The
    returned metadata is the caller's saved metadata plus ``library_version`` and ``lowrank``
    (empty for plain state dicts). A checkpoint that does not fit the architecture raises
    :class:`CheckpointError` naming the mismatching keys, and leaves ``model`` unchanged.
    """
    state, record = read_checkpoint(path)
    structure = record.get("lowrank", {}) or {}
    originals: dict[str, nn.Module] = {}
    try:
        for name in structure:
            try:
                originals[name] = model.get_submodule(name)
            except AttributeError as err:
                raise CheckpointError(f"{path}: low-rank layer {name} is not in {type(model).__name__}") from err
        apply_lowrank_structure(model, structure)
        load_state_dict_checked(model, state, source=str(path))
    except (CheckpointError, InputError) as err:
        for name, module in originals.items():  # put the dense layers back
            replace_module(model, name, module)
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    metadata = dict(record.get("metadata", {}))
    metadata.update(library_version=record.get("library_version"), lowrank=structure)
    return model, metadata
