"""Small helpers shared by the benchmarks: timing with device sync, peak-RSS sampling."""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def sync(device: str) -> None:
    """Wait for the given GPU's queued work (cuda:1's, not only the current device's)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def timed(fn: Callable[[], object], device: str) -> float:
    """Wall time of one call, synchronising the device before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], device: str, repeats: int) -> float:
    return statistics.median(timed(fn, device) for _ in range(repeats))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


@contextmanager
def peak_rss() -> Iterator[dict[str, int]]:
    """Sample this process's resident memory every 2 ms; yields a dict filled with
    ``before`` and ``peak`` (bytes) when the block exits."""
    result = {"before": _rss_bytes(), "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak"] = max(result["peak"], _rss_bytes())
