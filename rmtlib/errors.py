"""Exceptions raised by rmtlib; each message names the layer, file or argument at fault."""

from __future__ import annotations


class RMTError(Exception):
    """Base class of rmtlib's own errors."""


class InputError(RMTError, ValueError):
    """Bad input: NaN/Inf weights, wrong shape or dtype, out-of-range parameters."""


class CheckpointError(RMTError):
    """A checkpoint that cannot be read or does not match the architecture."""


class DataError(RMTError):
    """A missing or malformed data folder or file."""
