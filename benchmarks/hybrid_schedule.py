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

    OMP_NUM_THREADS=1 python benchmarks/hybrid_schedule.py --out benchmarks/results/hybrid_ft20

Recorded: ``results/hybrid_ft20`` (these defaults: 20 fine-tune steps at lr 1e-4, 10 reservoir steps
at lr 1e-3) and ``results/hybrid`` (10 fine-tune steps at lr 3e-4, 5 reservoir steps, and the SEB
one-shot phase); each ``results.json`` holds every phase's settings and command. Phases were run as
separate processes at once and merged (see its ``note``).
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
    p.add_argument(
        "--phases",
        nargs="+",
        default=["hybrid", "magnitude", "oneshot", "rmt"],
        help="run in this order: oneshot (SEB vs magnitude, no fine-tuning) and schedule strategies "
        "(hybrid, magnitude, rmt, ser, ...); results merge into an existing results.json in --out",
    )
    p.add_argument("--oneshot", type=float, nargs="*", default=[0.5, 0.6, 0.7, 0.8])
    p.add_argument("--finetune-steps", type=int, default=20)
    p.add_argument("--reservoir-steps", type=int, default=10)
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
    command = "OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "") + " python " + shlex.join(sys.argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "phases")}
    results: dict = {
        "model": "rmtlib.nn.models.load_mnist_vit() (committed MNIST ViT)",
        "eval": f"MNIST test, first {len(test_set)} images",
        "oneshot": {},
        "schedules": {},
        "seconds": {},
        "commands": {},
        "settings": {},
    }
    correct: dict[str, np.ndarray] = {}
    if (out / "results.json").is_file():  # a later phase of the same benchmark: merge
        results = json.loads((out / "results.json").read_text())
        with np.load(out / "correct.npz") as saved:
            correct = {k: saved[k] for k in saved.files}
    results["machine"] = _machine()

    def save(phase: str, seconds: float) -> None:
        results["seconds"][phase] = seconds
        results["commands"][phase] = command
        results["settings"][phase] = settings
        np.savez_compressed(out / "correct.npz", **correct)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    if "dense" not in correct:
        correct["dense"] = per_sample_correct(model, test_loader)
        results["dense"] = float(correct["dense"].mean())
    target = max(args.levels)
    for phase in args.phases:
        start = time.perf_counter()
        if phase == "oneshot":  # SEB alone vs global magnitude, no fine-tuning
            for level in args.oneshot:
                for label, method, opts in (("seb", "seb", {}), ("magnitude_global", "magnitude", {"scope": "global"})):
                    pruned = prune(model, method, sparsity=level, **opts).model
                    hit = per_sample_correct(pruned, test_loader)
                    correct[_key(f"oneshot_{label}", level)] = hit
                    results["oneshot"].setdefault(label, {})[f"{level:.2f}"] = float(hit.mean())
                print(f"one-shot {level:.2f}: " + str({k: v[f"{level:.2f}"] for k, v in results["oneshot"].items()}))
            save(phase, time.perf_counter() - start)
            continue
        _, table = prune_schedule(
            model,
            target,
            train_set,
            strategy=phase,
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
            callback=lambda level, _m, rec: print(
                f"{phase} {level:.2f} {rec['action']} {rec['seconds']:.0f} s {rec.get('accuracy', '')}", flush=True
            ),
        )
        rows = []
        for row in table.to_dict("records"):
            hit = row.pop("correct", None)
            if isinstance(hit, np.ndarray):
                correct[_key(phase, row["level"])] = hit
            rows.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
        results["schedules"][phase] = {
            "top1": {f"{r['level']:.2f}": r["accuracy"] for r in rows if r.get("accuracy") is not None},
            "levels": rows,
        }
        save(phase, time.perf_counter() - start)
        print(f"{phase}: {results['schedules'][phase]['top1']} ({results['seconds'][phase]:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
