"""Where the time of ``rmtlib.analyze`` goes, and which eigenvalue strategy is fastest on this machine.

The per-layer float64 ``eigvalsh`` of the p x p Gram matrices dominates the analysis (on a GPU,
cuSOLVER runs one matrix at a time for p > 32). This benchmark forms the Gram matrices of a
random-init timm model once, then times, side by side in one run:

  device      torch.linalg.eigvalsh on the analysis device, in batches (rmtlib before rmtlib.spectral.gram)
  cpu_torch   the same on CPU copies (all torch threads)
  pool_K      a pool of K threads, one numpy eigvalsh per matrix, each single-threaded
  hybrid_F    a fraction F of the matrices on the CPU pool while the rest run on the device
  rmtlib_gram+eig  rmtlib.spectral.gram.gram_eigenvalues from the weights (Gram matrices included): the
              device and a CPU pool share one queue
  fits        the MP fits of all layers from their singular values (CPU)

and checks that every strategy returns the same eigenvalues (relative 1e-9). It prints one line per
strategy with its time and its ratio to ``device``.

    python benchmarks/eig_strategies.py [--model vit_base_patch16_224] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

try:  # single-threaded BLAS inside each pool worker (threadpoolctl comes with the bench extra)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - the pool then shares BLAS threads; the timing says so
    from contextlib import nullcontext

    def threadpool_limits(limits: int) -> nullcontext:  # type: ignore[misc]
        print("threadpoolctl missing: pool workers use multi-threaded BLAS")
        return nullcontext()


from _util import timed  # noqa: E402

import rmtlib  # noqa: E402
from rmtlib.spectral.gram import gram, gram_eigenvalues, singular_from_eigenvalues  # noqa: E402


def grams_of(matrices: list[torch.Tensor], device: str) -> list[torch.Tensor]:
    return [gram(m.to(device=device, dtype=torch.float64)) for m in matrices]


def on_device(grams: list[torch.Tensor], chunk: int = 16) -> list[np.ndarray]:
    out = []
    for start in range(0, len(grams), chunk):
        out.extend(torch.linalg.eigvalsh(torch.stack(grams[start : start + chunk])).cpu().numpy())
    return out


def on_cpu_torch(grams: list[torch.Tensor]) -> list[np.ndarray]:
    return list(torch.linalg.eigvalsh(torch.stack([g.cpu() for g in grams])).numpy())


def on_pool(grams: list[torch.Tensor], workers: int) -> list[np.ndarray]:
    host = [g.cpu().numpy() for g in grams]
    with threadpool_limits(limits=1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(np.linalg.eigvalsh, host))


def hybrid(grams: list[torch.Tensor], fraction: float, workers: int) -> list[np.ndarray]:
    n_cpu = int(round(fraction * len(grams)))
    host = [g.cpu().numpy() for g in grams[:n_cpu]]
    with threadpool_limits(limits=1), ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(np.linalg.eigvalsh, g) for g in host]
        rest = on_device(grams[n_cpu:]) if n_cpu < len(grams) else []
        return [f.result() for f in futures] + rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    cores = os.cpu_count() or 1
    pools = sorted({k for k in (2, 4, 8, 16, cores) if k <= cores})
    strategies = {"device": lambda g: on_device(g), "cpu_torch": on_cpu_torch}
    strategies.update({f"pool_{k}": (lambda g, k=k: on_pool(g, k)) for k in pools})
    if args.device != "cpu":
        for fraction in (0.25, 0.4, 0.5):
            strategies[f"hybrid_{fraction}"] = lambda g, f=fraction: hybrid(g, f, cores)

    items = list(rmtlib.layer_matrices(model))
    matrices, labels = [item.matrix for item in items], [item.name for item in items]
    shapes = [tuple(m.shape) for m in matrices]
    with torch.no_grad():
        t_gram = timed(lambda: grams_of(matrices, args.device), args.device)
        grams = grams_of(matrices, args.device)
        reference = on_device(grams)
        times: dict[str, float] = {}
        for name, fn in strategies.items():
            values = fn(grams)
            worst = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(values, reference))
            if worst > 1e-9:
                raise SystemExit(f"{name}: eigenvalues differ from the device's by {worst:.2e} (relative)")
            times[name] = float(np.median([timed(lambda: fn(grams), args.device) for _ in range(args.repeats)]))
        singular = [singular_from_eigenvalues(v) for v in reference]

        def fits() -> None:
            for sv, shape in zip(singular, shapes):
                rmtlib.fit_mp(sv, shape=shape)

        times["rmtlib_gram+eig"] = float(
            np.median(
                [
                    timed(lambda: gram_eigenvalues(matrices, labels, device=args.device), args.device)
                    for _ in range(args.repeats)
                ]
            )
        )
        times["fits"] = float(np.median([timed(fits, "cpu") for _ in range(args.repeats)]))
        times["analyze_total"] = float(
            np.median(
                [
                    timed(lambda: rmtlib.analyze(model, device=args.device, progress=False), args.device)
                    for _ in range(args.repeats)
                ]
            )
        )
    base = times["device"]
    print(
        f"{args.model} on {args.device} "
        f"({torch.cuda.get_device_name() if args.device != 'cpu' else f'{cores} CPU cores'}), "
        f"{len(grams)} Gram matrices; forming them took {t_gram:.3f} s"
    )
    for name, value in times.items():
        print(f"{name:>14}: {value:8.3f} s   {value / base:6.2f}x device")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": args.model, "device": args.device, "gram_s": t_gram, **times}, indent=2)
        )


if __name__ == "__main__":
    main()
