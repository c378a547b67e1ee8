"""Where work runs: checked device names and torch's CPU thread count."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from rmtlib.errors import InputError

__all__ = ["resolve_device", "get_device", "one_torch_thread"]


def _available(kind: str) -> bool:
    """Whether torch can run on device type ``kind`` on this machine."""
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if kind == "xpu":
        return bool(getattr(torch, "xpu", None) and torch.xpu.is_available())
    return False  # meta holds no data; other back-ends are not supported by rmtlib


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a torch.device (None stays None; ``"auto"``: see :func:`get_device`).

    The one device rule of rmtlib: a bad name, a device type this machine does not have (cuda, mps,
    xpu) or one that holds no data (meta) is an InputError naming the device, before any work.
    """
    if device is None:
        return None
    if isinstance(device, str) and device.strip().lower() == "auto":
        return get_device("auto")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"device {device!r}: {err} (use auto, cpu, cuda or cuda:N)") from err
    if dev.type == "meta":
        raise InputError(f"device {device!r}: meta tensors hold no values, so nothing can be computed there")
    if not _available(dev.type):
        raise InputError(
            f"device {device!r}: {dev.type.upper()} is not available on this machine (use auto, cpu or cuda)"
        )
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
    if device is None or str(device).strip().lower() == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local)
        return torch.device("cpu")
    dev = resolve_device(device)  # a bad name or a missing GPU: an InputError, not a traceback later
    assert dev is not None
    return dev
