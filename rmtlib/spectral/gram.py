"""Eigenvalues of many Gram matrices in float64, spread over CPU threads and the GPU.

Per-layer analysis diagonalises one p x p Gram matrix (p = min(m, n)) per weight matrix. Two
measured facts shape this module. On a CPU, one single-threaded LAPACK call per matrix on each
core beats one multi-threaded call after another (ViT-B/16 on 2 cores: 1.7x; under load a
2-thread eigvalsh can be far slower still). On a GPU, cuSOLVER diagonalises one matrix at a time
for p > 32 (about 7 ms at p = 768: ViT-B/16's 50 Gram matrices took 0.38 s on an H100), so the
host's cores are worth using too: the Gram matrices are formed on the device, then the device
and a pool of CPU threads take matrices from one queue, whichever is free, so neither waits.

All arithmetic is float64 on every path; the Gram matrix is formed where the caller asked.
On a GPU, which processor diagonalises a given matrix depends on timing, so eigenvalues can
differ between runs in the last bits (relative 1e-15); ``host_workers=0`` keeps all on the GPU.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from rmtlib.errors import InputError
from rmtlib.runtime import one_torch_thread, resolve_device

__all__ = [
    "gram",
    "gram_eigenvalues",
    "gram_singular_values",
    "singular_from_eigenvalues",
    "default_workers",
    "share_work",
]


def gram(w: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix: W W^T when m <= n, else W^T W (p x p)."""
    return w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w


def singular_from_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """Descending singular values from the ascending eigenvalues of a Gram matrix (round-off
    below zero clipped to 0); a fresh array."""
    return np.sqrt(np.clip(eigenvalues[::-1], 0.0, None))


def gram_singular_values(matrix: torch.Tensor, device: torch.device | str | None = None) -> np.ndarray:
    """Singular values (float64, descending) of one matrix from the eigenvalues of its smaller Gram
    matrix, formed in float64 on ``device``: the one place a single spectrum is computed (no input
    checks; :func:`rmtlib.spectral.fit.singular_values` adds them, :func:`gram_eigenvalues` batches)."""
    w = matrix.detach().to(device=device if device is not None else matrix.device, dtype=torch.float64)
    return singular_from_eigenvalues(torch.linalg.eigvalsh(gram(w)).cpu().numpy())


def default_workers() -> int:
    """CPU threads used for eigenvalues: torch's intra-op thread count (one matrix per thread)."""
    return max(1, torch.get_num_threads())


class _Queue:
    """Hands out indices 0..n-1, each once, to whichever consumer asks first (thread-safe)."""

    def __init__(self, n: int, on_take: Callable[[], None] | None = None) -> None:
        self._next, self._n, self._lock, self._on_take = 0, n, threading.Lock(), on_take
        self.failed = False

    def take(self) -> int | None:
        with self._lock:
            if self.failed or self._next >= self._n:
                return None
            index = self._next
            self._next += 1
            if self._on_take is not None:
                self._on_take()
            return index


def _finite_or_raise(flags: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """One device-to-host transfer for all the NaN/Inf checks (a sync per layer costs more on a GPU)."""
    host = torch.stack([f.to(flags[0].device) for f in flags]).cpu().numpy()
    if not host.all():
        raise InputError(f"layer {names[int(np.argmin(host))]}: weight contains NaN or Inf entries")


def _host_spectrum(matrix: torch.Tensor, name: str) -> np.ndarray:
    w = matrix.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(w).all()):
        raise InputError(f"layer {name}: weight contains NaN or Inf entries")
    return torch.linalg.eigvalsh(gram(w)).numpy()


def gram_eigenvalues(
    matrices: Sequence[torch.Tensor],
    names: Sequence[str],
    *,
    device: str | torch.device | None = None,
    host_workers: int | None = None,
    progress: bool = False,
    desc: str = "eigenvalues",
) -> list[np.ndarray]:
    """Ascending float64 eigenvalues of each matrix's smaller Gram matrix, in input order.

    Args:
        matrices: 2-D floating-point tensors (any dtype and device; never modified).
        names: one name per matrix, used in error messages.
        device: where the Gram matrices are formed; ``None`` keeps each matrix's own device.
            On CUDA the GPU and ``host_workers`` CPU threads share the diagonalisation.
        host_workers: CPU threads (default :func:`default_workers`); 0 on a GPU keeps all
            the work there. On the CPU at least one thread is used.
        progress: show a progress bar.
    Raises :class:`InputError` naming the layer when a matrix holds NaN or Inf.
    """
    if len(matrices) != len(names):
        raise ValueError(f"got {len(matrices)} matrices but {len(names)} names")
    dev = resolve_device(device)
    workers = default_workers() if host_workers is None else int(host_workers)
    if workers < 0:
        raise InputError(f"host_workers must be >= 0, got {host_workers}")
    on_gpu = any((dev if dev is not None else m.device).type == "cuda" for m in matrices)
    bar = tqdm(total=len(matrices), desc=desc, disable=not progress, leave=False)
    try:
        with torch.no_grad():
            if not on_gpu:
                return _on_host(matrices, names, max(workers, 1), bar)
            return _on_device_and_host(matrices, names, dev, workers, bar)
    finally:
        bar.update(bar.total - bar.n)
        bar.close()


def _on_host(matrices: Sequence[torch.Tensor], names: Sequence[str], workers: int, bar: tqdm) -> list[np.ndarray]:
    out = []
    with one_torch_thread(), ThreadPoolExecutor(workers, thread_name_prefix="rmtlib-eig") as pool:
        # map yields in input order, so the first bad layer (in model order) is the one named
        for values in pool.map(_host_spectrum, matrices, names):
            out.append(values)
            bar.update(1)
    return out


def _on_device_and_host(
    matrices: Sequence[torch.Tensor], names: Sequence[str], dev: torch.device | None, workers: int, bar: tqdm
) -> list[np.ndarray]:
    grams, flags = [], []
    for matrix in matrices:
        w = matrix.detach().to(device=dev if dev is not None else matrix.device, dtype=torch.float64)
        flags.append(torch.isfinite(w).all())
        grams.append(gram(w))
    _finite_or_raise(flags, names)  # also waits until every Gram matrix is formed

    def on_device(index: int) -> np.ndarray:
        return torch.linalg.eigvalsh(grams[index]).cpu().numpy()

    def on_host(index: int, streams: dict) -> np.ndarray:
        g = grams[index]
        if g.device.type == "cuda":  # copy on a side stream, not queued behind the GPU's eigvalsh
            stream = streams.setdefault(g.device, torch.cuda.Stream(g.device))
            with torch.cuda.stream(stream):
                g = g.to("cpu")
        return torch.linalg.eigvalsh(g).numpy()

    with one_torch_thread():
        return share_work(len(grams), on_device, on_host, workers, on_take=lambda: bar.update(1))


def share_work(
    n: int,
    main_task: Callable[[int], np.ndarray],
    pool_task: Callable[[int, dict], np.ndarray],
    workers: int,
    on_take: Callable[[], None] | None = None,
) -> list[np.ndarray]:
    """Results of tasks 0..n-1, each run once: by this thread with ``main_task(i)`` or by one of
    ``workers`` pool threads with ``pool_task(i, state)`` (``state``: a dict private to that thread).

    Whoever is free takes the next index, so a fast consumer does more of the work. The first
    exception stops further tasks from being handed out and is re-raised here.
    """
    queue = _Queue(n, on_take)
    results: list[np.ndarray | None] = [None] * n

    def consume() -> None:
        state: dict = {}
        try:
            while (index := queue.take()) is not None:
                results[index] = pool_task(index, state)
        except BaseException:
            queue.failed = True
            raise

    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="rmtlib-eig") as pool:
        futures = [pool.submit(consume) for _ in range(workers)]
        try:
            while (index := queue.take()) is not None:
                results[index] = main_task(index)
        except BaseException:
            queue.failed = True
            raise
        for future in futures:
            future.result()
    if any(r is None for r in results):  # pragma: no cover - only if a consumer vanished
        raise RuntimeError(f"{sum(r is None for r in results)} of {n} tasks were not run")
    return results  # type: ignore[return-value]
