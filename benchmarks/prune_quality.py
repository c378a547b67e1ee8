"""Pruning quality on the committed MNIST ViT: every one-shot method against global magnitude pruning.

No fine-tuning. At 50 / 60 / 70 / 80 % parameter reduction and at the 2:4 pattern, each method of
:data:`rmtlib.experiments.prune_quality.VARIANTS` (magnitude per layer and global, ``rmt`` with the
reference and the light regularization, ``rmt_oneshot``, ``wanda``, ``sparsegpt``, each score under
the MP and Hill-alpha allocations, ``seb``, ``random``) prunes the dense model; top-1, cross-entropy,
KL divergence from the dense model and the certified fraction are measured on the MNIST test set
(10k), and top-1 is tested against global magnitude pruning on the same images (McNemar's exact
test, paired bootstrap interval). Data-dependent methods draw 128 calibration images from the
training set with each of 3 seeds. Variants this rmtlib does not have yet are skipped with a note.

    python benchmarks/prune_quality.py                      # all, into benchmarks/results/
    python benchmarks/prune_quality.py --methods magnitude_layer magnitude_global rmt_oneshot --levels 0.7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmtlib.experiments.prune_quality import (  # noqa: E402
    DEFAULT_LEVELS,
    DEFAULT_PATTERNS,
    REFERENCE,
    VARIANTS,
    benchmark_table,
    run_benchmark,
    verdict_sentence,
    verdicts,
)
from rmtlib.nn.models import load_mnist_vit, model_card  # noqa: E402
from rmtlib.train.data import load_mnist, make_loader  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), help=f"labels of {list(VARIANTS)}")
    parser.add_argument("--levels", nargs="*", type=float, default=list(DEFAULT_LEVELS))
    parser.add_argument("--patterns", nargs="*", default=list(DEFAULT_PATTERNS), help="N:M patterns (none: skip)")
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--calibration-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, help="the first N test images only (default all 10k)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(RESULTS / "prune_quality.json"), help="results JSON (a CSV beside it)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    test = load_mnist("test")
    eval_loader = make_loader(test, 1000, subset=args.eval_samples)
    calibration_loader = make_loader(load_mnist("train"), 128)
    result = run_benchmark(
        load_mnist_vit(),
        eval_loader=eval_loader,
        calibration_loader=calibration_loader,
        methods=args.methods,
        levels=args.levels,
        patterns=args.patterns,
        reference=args.reference,
        calibration_seeds=args.calibration_seeds,
        calibration_samples=args.calibration_samples,
        n_boot=args.n_boot,
        device=args.device,
        seed=args.seed,
        model_name="mnist_vit",
        dataset=f"MNIST test ({len(eval_loader.dataset):,} images)",
        progress=True,
    )
    record = {
        "command": "python benchmarks/prune_quality.py" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])),
        "machine": _machine(args.device),
        "device": args.device,
        "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint_card_accuracy": 100 * model_card()["test_accuracy"],
        **result.to_json(),
    }
    for label, why in result.skipped.items():
        print(f"skipped {label}: {why}")
    print()
    for _, row in verdicts(benchmark_table(record)).iterrows():
        print(verdict_sentence(row).replace("**", "").replace("`", ""))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    result.rows.to_csv(path.with_suffix(".csv"), index=False)
    print(f"\nresults written to {path} and {path.with_suffix('.csv')} ({result.settings['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
