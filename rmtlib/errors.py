"""Exceptions raised by rmtlib; each message names the layer, file or argument at fault."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


class RMTError(Exception):
    """Base class of rmtlib's own errors."""


class InputError(RMTError, ValueError):
    """Bad input: NaN/Inf weights, wrong shape or dtype, out-of-range parameters."""


class CheckpointError(RMTError):
    """A checkpoint that cannot be read or does not match the architecture."""


class DataError(RMTError):
    """A missing or malformed data folder or file."""


class DivergenceError(RMTError):
    """Training produced a non-finite loss or weight (a learning rate or penalty too large)."""


def check_number(
    what: str,
    value: Any,
    *,
    minimum: float,
    exclusive: bool = False,
    integer: bool = False,
    maximum: float | None = None,
    exclusive_maximum: bool = False,
) -> float:
    """Raise :class:`InputError` naming ``what`` (a flag, or ``method: option``) unless ``value`` is a
    finite number >= ``minimum`` (> with ``exclusive``), <= ``maximum`` when given (< with
    ``exclusive_maximum``), and a whole number with ``integer`` (2.0 is, 2.7 is not). Booleans and
    strings are not numbers here; numpy scalars of any float or int width are. Returns it as a float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value))
    ok = ok and (float(value) > minimum if exclusive else float(value) >= minimum)
    if ok and maximum is not None:
        ok = float(value) < maximum if exclusive_maximum else float(value) <= maximum
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "a whole number" if integer else "a finite number"
        low = f"{'>' if exclusive else '>='} {minimum:.12g}"
        high = "" if maximum is None else f" and {'<' if exclusive_maximum else '<='} {maximum:.12g}"
        raise InputError(f"{what} must be {kind} {low}{high}, got {value!r}")
    return float(value)
