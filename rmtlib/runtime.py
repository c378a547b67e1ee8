"""Where work runs: checked device names and torch's CPU thread count."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from rmtlib.errors import InputError

__all__ = ["resolve_device", "get_device", "one_torch_thread"]


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch.device (None stays None); a bad name or a missing GPU is an InputError."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device: {err}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch's CPU kernels on one thread inside the block, then restore the setting.

    For many small eigenproblems one thread per problem (and one problem per core) beats one
    multi-threaded call after another, and it is immune to oversubscription: on a busy 2-core
    machine a 2-thread eigvalsh of an 800 x 800 Gram matrix was measured 60x slower than the
    1-thread one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given (``"auto"`` = CUDA when available), else the local CUDA device or the CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local)
        return torch.device("cpu")
    dev = resolve_device(device)  # a bad name or a missing GPU: an InputError, not a traceback later
    assert dev is not None
    return dev
