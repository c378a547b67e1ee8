"""Argument parsing and output helpers shared by the ``rmtlib`` sub-commands.

``KEY=VALUE`` options, sparsity levels and comma lists are parsed here once, so every command
reports bad input the same way (an :class:`~rmtlib.errors.InputError` naming the flag, exit 2),
and tables are written atomically (a crash leaves no half-written file).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from rmtlib.atomic import write_text_atomic
from rmtlib.errors import InputError
from rmtlib.pruning import METHODS
from rmtlib.train.data import load_dataset

#: calibration images taken when ``--calibration`` gives no count (and the default for ``mnist_vit``)
CALIBRATION_COUNT = 256


def parse_value(text: str) -> Any:
    """A JSON value when ``text`` is one (``3``, ``0.1``, ``true``, ``[1, 2]``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b-c=x"]`` -> ``{"a": 1, "b_c": "x"}`` (dashes in keys become underscores)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def sparsity_level(text: str) -> float:
    """An argparse ``type``: a sparsity in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _comma_list(text: str, example: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expects at least one value, e.g. {example}")
    return parts


def sparsity_levels(text: str) -> list[float]:
    """An argparse ``type``: comma-separated sparsities in [0, 1), e.g. ``0.3,0.5,0.7``."""
    return [sparsity_level(part) for part in _comma_list(text, "0.3,0.5,0.7")]


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0 (process counts, epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def names(text: str) -> list[str]:
    """An argparse ``type``: a non-empty comma-separated list of names."""
    return _comma_list(text, "rmt,magnitude")


def check_input_file(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` is given but is not an existing file."""
    if path and not Path(path).is_file():
        raise InputError(
            f"{flag}: {path} is a folder, not a file" if Path(path).is_dir() else f"{flag}: no such file {path}"
        )


def _check_writable(folder: Path, path: str, flag: str) -> None:
    """The nearest existing folder must let us create entries (a read-only one fails only at the end)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: cannot write into {folder} (permission denied), so {path} cannot be written")


def check_output_file(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` cannot be a file to write (a folder, under a file, or in a
    folder this process may not write into)."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{flag}: {path} is a folder; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag}: {parent} is a file, so {path} cannot be written")
            _check_writable(parent, path, flag)
            break


def check_output_dir(path: str | None, flag: str) -> None:
    """Fail before any work when ``path`` cannot be a folder to write into (a file, under a file, or
    not writable)."""
    if not path:
        return
    target = Path(path)
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"{flag}: {folder} is a file, so {path} cannot be a folder to write into")
            _check_writable(folder, path, flag)
            return


def check_distinct_outputs(*pairs: tuple[str | None, str]) -> None:
    """Each (path, flag): two outputs naming the same file would overwrite one with the other."""
    seen: dict[Path, str] = {}
    for path, flag in pairs:
        if not path:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise InputError(f"{seen[key]} and {flag} name the same file {path}; give each its own")
        seen[key] = flag


def positive_counts(*pairs: tuple[Any, str]) -> None:
    """Each (value, flag): ``None`` or an integer >= 1, else :class:`InputError` naming the flag."""
    for value, flag in pairs:
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")


def write_csv_atomic(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``table`` as CSV (no index), atomically (:mod:`rmtlib.atomic`)."""
    write_text_atomic(table.to_csv(index=False), path)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON (numpy scalars as floats), atomically."""
    write_text_atomic(json.dumps(obj, indent=2, default=float) + "\n", path)


def calibration_spec(text: str) -> tuple[str, int]:
    """An argparse ``type``: ``DATA[:COUNT]`` -> (dataset spec, count), e.g. ``mnist:256``,
    ``imagefolder:/data/imagenet:128``; without a count, 256 images."""
    head, sep, tail = text.rpartition(":")
    if sep and tail.strip().isdigit():
        spec, count = head, int(tail)
    else:
        spec, count = text, CALIBRATION_COUNT
    if not spec or count < 1:
        raise argparse.ArgumentTypeError(f"expects DATA[:COUNT] with COUNT >= 1, e.g. mnist:256, got {text!r}")
    return spec, count


def default_calibration(
    given: tuple[str, int] | None, methods: Sequence[str], model_name: str, data: str | None
) -> tuple[str, int] | None:
    """The calibration set a command uses: ``--calibration`` when given; for a method that needs data,
    256 MNIST training images on ``mnist_vit`` or 256 training images of ``--data``; else none."""
    if given is not None:
        return given
    needing = [m for m in methods if m in METHODS and METHODS[m].needs_calibration]
    if not needing:
        return None
    if model_name == "mnist_vit":
        return "mnist", CALIBRATION_COUNT
    if data:
        return data, CALIBRATION_COUNT
    raise InputError(f"--calibration DATA[:COUNT] is needed by {', '.join(needing)} (e.g. --calibration mnist:256)")


def load_calibration(spec: tuple[str, int], model: torch.nn.Module, seed: int) -> torch.Tensor:
    """``count`` training images of dataset ``spec``, drawn at random with ``seed``, as one input tensor."""
    name, count = spec
    data = load_dataset(name, "train", model=model)
    if len(data) == 0:  # type: ignore[arg-type]
        raise InputError(f"--calibration {name}: the training split holds no samples")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(seed)))  # type: ignore[arg-type]
    samples = [data[int(i)] for i in order[:count]]
    return torch.stack([s[0] if isinstance(s, (tuple, list)) else s for s in samples])
