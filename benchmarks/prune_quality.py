"""Pruning quality on the committed MNIST ViT, and the FC regularization table at a reduced size.

Part 1: top-1 on the MNIST test set (10k) of ``rmt``, ``rmt_oneshot``, ``rmt_lowrank``,
``magnitude`` (per layer and global), ``svd`` and ``random`` at 30 / 50 / 70 % parameter
reduction, without and with one epoch of masked fine-tuning (AdamW, cosine; ``--finetune-subset
N`` uses the first N training images instead of all 50k, for a slow CPU). Part 2: the paper's FC
table (METHOD.md section 4) on MNIST with a smaller network and fewer epochs (``--fc-widths``,
``--fc-epochs``, ``--fc-subset``).

    python benchmarks/prune_quality.py --json benchmarks/results/prune_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rmtlib.experiments.sweep import DEFAULT_METHODS, level_table, sweep  # noqa: E402
from rmtlib.nn.models import load_mnist_vit, model_card  # noqa: E402
from rmtlib.train.data import load_mnist, make_loader  # noqa: E402

#: Variants swept besides the library's methods: label -> rmtlib.prune options (with a "method" key).
VARIANTS: dict[str, dict] = {"magnitude_global": {"method": "magnitude", "scope": "global"}}
#: What the benchmark sweeps by default: the book's methods, the one-shot rule and global magnitude.
BENCH_METHODS: tuple[str, ...] = (*DEFAULT_METHODS, "rmt_oneshot", "magnitude_global")


def _machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )


def vit_table(args: argparse.Namespace) -> dict:
    model = load_mnist_vit()
    eval_loader = make_loader(load_mnist("test"), 1000)
    ft_loader = make_loader(load_mnist("train"), 128, shuffle=True, seed=0, subset=args.finetune_subset)
    start = time.perf_counter()
    variants = {label: VARIANTS[label] for label in args.methods if label in VARIANTS}
    table = sweep(
        model,
        args.methods,
        args.levels,
        eval_loader=eval_loader,
        finetune_loader=ft_loader,
        method_options=variants,
        finetune_epochs=1,
        finetune_lr=args.finetune_lr,
        device=args.device,
        model_name="mnist_vit",
        dataset="MNIST test (10k)",
        progress=True,
    )
    seconds = time.perf_counter() - start
    pivot_pruned = level_table(table, "top1_pruned")
    pivot_ft = level_table(table, "top1_finetuned")
    print("\ntop-1 % without fine-tuning\n", pivot_pruned.round(2).to_string())
    print(
        "\ntop-1 % after 1 epoch of fine-tuning"
        + (f" (first {args.finetune_subset} training images)" if args.finetune_subset else " (50k images)")
    )
    print(pivot_ft.round(2).to_string())
    dense = float(table.loc[table.method == "dense", "top1_dense"].iloc[0])
    rows = table[table.method != "dense"]

    def top1(method: str, level: float, col: str = "top1_pruned") -> float:
        return float(rows[(rows.method == method) & (rows.target == level)][col].iloc[0])

    checks = {}
    if "rmt" in args.methods and 0.5 in args.levels:
        checks["rmt_50_drop_pp"] = dense - top1("rmt", 0.5)
        checks["rmt_50_within_1pp"] = checks["rmt_50_drop_pp"] <= 1.0
    if {"rmt", "magnitude"} <= set(args.methods):
        checks["rmt_ge_magnitude"] = {f"{lv:g}": top1("rmt", lv) >= top1("magnitude", lv) for lv in args.levels}
    if {"rmt_oneshot", "magnitude_global"} <= set(args.methods):
        checks["rmt_oneshot_minus_global_magnitude_pp"] = {
            f"{lv:g}": top1("rmt_oneshot", lv) - top1("magnitude_global", lv) for lv in args.levels
        }
    return {
        "dense_top1": dense,
        "checkpoint_card_accuracy": 100 * model_card()["test_accuracy"],
        "finetune": {
            "epochs": 1,
            "lr": args.finetune_lr,
            "optimizer": "adamw, cosine, zero mask frozen",
            "train_images": args.finetune_subset or 50000,
        },
        "rows": json.loads(table.to_json(orient="records")),
        "checks": checks,
        "seconds": seconds,
    }


def fc_section(args: argparse.Namespace) -> dict:
    from rmtlib.experiments.fc_table import PAPER_FC_TABLE, run_fc_table

    widths = [int(w) for w in args.fc_widths.split("-")]
    start = time.perf_counter()
    table = run_fc_table(
        widths=widths,
        epochs=args.fc_epochs,
        data="mnist",
        train_subset=args.fc_subset,
        device=args.device,
        progress=False,
    )
    seconds = time.perf_counter() - start
    print(
        f"\nFC table on MNIST, widths {widths}, {args.fc_epochs} epochs"
        + (f", first {args.fc_subset} training images" if args.fc_subset else "")
    )
    print(table[["row", "test_accuracy", "train_accuracy", "param_reduction", "ranks"]].round(3).to_string(index=False))
    return {
        "widths": widths,
        "epochs": args.fc_epochs,
        "train_images": args.fc_subset or 50000,
        "rows": json.loads(table.to_json(orient="records")),
        "paper": json.loads(PAPER_FC_TABLE.to_json(orient="records")),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(BENCH_METHODS),
        help=f"methods of rmtlib.prune or the variants {sorted(VARIANTS)}",
    )
    parser.add_argument("--levels", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument(
        "--finetune-subset", type=int, help="fine-tune on the first N training images (default all 50k)"
    )
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--fc-widths", default="784-512-512-512-10")
    parser.add_argument("--fc-epochs", type=int, default=12)
    parser.add_argument("--fc-subset", type=int, help="train the FC nets on the first N training images")
    parser.add_argument("--skip-vit", action="store_true")
    parser.add_argument("--skip-fc", action="store_true")
    parser.add_argument("--json", help="write all numbers here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result: dict = {"machine": _machine(args.device), "device": args.device, "torch": torch.__version__}
    if not args.skip_vit:
        result["vit"] = vit_table(args)
    if not args.skip_fc:
        result["fc"] = fc_section(args)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=float) + "\n")
        print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
