"""Exceptions raised by rmtlib; each message names the layer, file or argument at fault."""

from __future__ import annotations

import math
import numbers
from typing import Any


class RMTError(Exception):
    """Base class of rmtlib's own errors."""


class InputError(RMTError, ValueError):
    """Bad input: NaN/Inf weights, wrong shape or dtype, out-of-range parameters."""


class CheckpointError(RMTError):
    """A checkpoint that cannot be read or does not match the architecture."""


class DataError(RMTError):
    """A missing or malformed data folder or file."""


def check_number(what: str, value: Any, *, minimum: float, exclusive: bool = False, integer: bool = False) -> None:
    """Raise :class:`InputError` naming ``what`` (a flag, or ``method: option``) unless ``value`` is a
    finite number >= ``minimum`` (> with ``exclusive``), and a whole number with ``integer`` (2.0 is,
    2.7 is not). Booleans are not numbers here."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and (float(value) > minimum if exclusive else float(value) >= minimum)
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "a whole number" if integer else "a finite number"
        raise InputError(f"{what} must be {kind} {'>' if exclusive else '>='} {minimum:g}, got {value!r}")
