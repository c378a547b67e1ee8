"""The authors' 2026 hybrid magnitude-SER schedule against the same cumulative schedule with global
magnitude and with ``rmt`` at every level, on the committed MNIST ViT (METHOD.md section 7), plus SEB
alone (no fine-tuning) against global magnitude.

All three schedules prune in 5-point levels to the largest reported level, each level from the
previous fine-tuned model, and fine-tune ``--finetune-steps`` AdamW steps (batch ``--batch-size``,
cosine from ``--finetune-lr``) after every level; SER levels also train the reservoir for
``--reservoir-steps`` (the authors' extra epoch). The authors use one ImageNet epoch for each (about
10k steps); the defaults here are scaled to a shared 2-core CPU. Top-1 is on the 10,000 MNIST test
images; every evaluated model's per-sample correctness (MNIST test order) goes to ``correct.npz``
beside ``results.json`` (for paired tests such as McNemar's).

    OMP_NUM_THREADS=1 python benchmarks/hybrid_schedule.py --out benchmarks/results/hybrid
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmtlib.experiments.prune_restore import per_sample_correct, prune_schedule  # noqa: E402
from rmtlib.nn.models import load_mnist_vit  # noqa: E402
from rmtlib.pruning import prune  # noqa: E402
from rmtlib.train.data import load_mnist, make_loader  # noqa: E402

#: the schedules compared: the hybrid and the same levels with global magnitude and with rmt
STRATEGIES = ("hybrid", "magnitude", "rmt")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def _key(label: str, level: float) -> str:
    return f"{label}@{level:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for results.json and correct.npz")
    p.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8], help="schedule levels evaluated")
    p.add_argument("--step", type=float, default=0.05)
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), help="hybrid, magnitude, rmt, ser, ...")
    p.add_argument("--oneshot", type=float, nargs="*", default=[0.5, 0.55, 0.6, 0.65, 0.7, 0.8])
    p.add_argument("--finetune-steps", type=int, default=30)
    p.add_argument("--reservoir-steps", type=int, default=15)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--reservoir-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--over", type=float, default=0.03)
    p.add_argument("--test-subset", type=int, help="evaluate on the first N test images (default all 10,000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = load_mnist_vit()
    train_set = load_mnist("train")
    test_set = load_mnist("test")
    if args.test_subset:
        test_set = torch.utils.data.Subset(test_set, range(args.test_subset))
    test_loader = make_loader(test_set, 1000)
    correct: dict[str, np.ndarray] = {"dense": per_sample_correct(model, test_loader)}
    results: dict = {
        "command": "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python " + shlex.join(sys.argv),
        "machine": _machine(),
        "model": "rmtlib.nn.models.load_mnist_vit() (committed MNIST ViT)",
        "eval": f"MNIST test, first {len(test_set)} images",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "dense": float(correct["dense"].mean()),
        "oneshot": {},
        "schedules": {},
        "seconds": {},
    }

    for level in args.oneshot:  # SEB alone vs global magnitude, no fine-tuning
        for label, method, opts in (("seb", "seb", {}), ("magnitude_global", "magnitude", {"scope": "global"})):
            pruned, report = prune(model, method, sparsity=level, **opts)
            hit = per_sample_correct(pruned, test_loader)
            correct[_key(f"oneshot_{label}", level)] = hit
            results["oneshot"].setdefault(label, {})[f"{level:.2f}"] = float(hit.mean())
        print(
            f"one-shot {level:.2f}: seb {results['oneshot']['seb'][f'{level:.2f}']:.4f} "
            f"magnitude {results['oneshot']['magnitude_global'][f'{level:.2f}']:.4f}",
            flush=True,
        )

    target = max(args.levels)
    for strategy in args.strategies:
        start = time.perf_counter()
        _, table = prune_schedule(
            model,
            target,
            train_set,
            strategy=strategy,
            step=args.step,
            finetune_steps=args.finetune_steps,
            finetune_lr=args.finetune_lr,
            reservoir_steps=args.reservoir_steps,
            reservoir_lr=args.reservoir_lr,
            batch_size=args.batch_size,
            over=args.over,
            eval_data=test_set,
            evaluate_at=args.levels,
            seed=args.seed,
        )
        seconds = time.perf_counter() - start
        rows = []
        for row in table.to_dict("records"):
            hit = row.pop("correct", None)
            if isinstance(hit, np.ndarray):
                correct[_key(strategy, row["level"])] = hit
            rows.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
        results["schedules"][strategy] = {
            "top1": {f"{r['level']:.2f}": r["accuracy"] for r in rows if r.get("accuracy") is not None},
            "levels": rows,
        }
        results["seconds"][strategy] = seconds
        print(f"{strategy}: {results['schedules'][strategy]['top1']} ({seconds:.0f} s)", flush=True)
        np.savez_compressed(out / "correct.npz", **correct)  # after each schedule: a cut run keeps what it has
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    np.savez_compressed(out / "correct.npz", **correct)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
