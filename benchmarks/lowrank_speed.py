"""Inference latency of an ``rmt_lowrank`` model at 50% parameter reduction vs the dense model.

Random-init ViT-B/16 (default), same input batch, eval mode, no grad; dense and low-rank
forward passes are interleaved (each repeat times both, in alternating order) and the medians
compared; ``latency_ratio_paired`` is the median of the per-repeat ratios, robust to load that
changes between repeats.
Target: low-rank / dense <= 0.7 on the CPU. Also runs on a GPU with ``--device cuda``.
On the CPU the ratio of process CPU time is printed too: on a shared machine it is far less
disturbed by other jobs than wall time. Ranks are kept at multiples of 16 by default
(``--rank-multiple``), as matrix kernels prefer.
On a random-init model the truncation changes the outputs a lot (there is no signal to keep);
``relative_output_change`` reports it so nobody mistakes this for an accuracy result.

    python benchmarks/lowrank_speed.py [--model vit_base_patch16_224] [--batch 8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402
import torch  # noqa: E402
from _util import timed  # noqa: E402

import rmtlib  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rank-multiple", type=int, default=16, help="ranks kept at multiples of this (GEMM-friendly)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    dense = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    start = time.perf_counter()
    result = rmtlib.prune(
        dense, "rmt_lowrank", sparsity=args.sparsity, device=args.device, rank_multiple=args.rank_multiple
    )
    low, report = result.model, result.layers
    prune_s = time.perf_counter() - start
    low.eval()
    x = torch.randn(args.batch, *rmtlib.nn.count.example_input(dense).shape[1:], device=args.device)

    with torch.inference_mode():
        err = (low(x) - dense(x)).norm() / dense(x).norm()  # warm-up, and how far the truncation moved outputs
        timed(lambda: dense(x), args.device), timed(lambda: low(x), args.device)
        t_dense, t_low, c_dense, c_low = [], [], [], []
        pair = ((dense, t_dense, c_dense), (low, t_low, c_low))
        for i in range(args.repeats):  # interleaved, so load changes hit both alike; who goes first alternates
            for model, wall, cpu in pair if i % 2 == 0 else pair[::-1]:
                start = time.process_time()
                wall.append(timed(lambda: model(x), args.device))
                cpu.append(time.process_time() - start)
    paired = sorted(low_t / dense_t for low_t, dense_t in zip(t_low, t_dense))  # one ratio per repeat
    for values in (t_dense, t_low, c_dense, c_low):
        values.sort()
    counts_d, counts_l = rmtlib.count_params(dense), rmtlib.count_params(low)
    x1 = x[:1]
    results = {
        "model": args.model,
        "device": args.device,
        "batch": args.batch,
        "rank_multiple": args.rank_multiple,
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "torch_threads": torch.get_num_threads(),
        "params_dense": counts_d["stored"],
        "params_lowrank": counts_l["stored"],
        "param_reduction": 1 - counts_l["stored"] / counts_d["stored"],
        "macs_ratio": rmtlib.count_macs(low, x1) / rmtlib.count_macs(dense, x1),
        "factorized_layers": int((report["params_after"] < report["params_before"]).sum()),
        "layers": len(report),
        "prune_s": prune_s,
        "dense_ms": 1e3 * t_dense[len(t_dense) // 2],
        "lowrank_ms": 1e3 * t_low[len(t_low) // 2],
        "dense_min_ms": 1e3 * t_dense[0],
        "lowrank_min_ms": 1e3 * t_low[0],
        "relative_output_change": float(err),
    }
    results["latency_ratio"] = results["lowrank_ms"] / results["dense_ms"]
    results["latency_ratio_paired"] = paired[len(paired) // 2]  # median of the per-repeat ratios
    if not args.device.startswith("cuda"):  # CPU seconds of this process: robust to other load on a shared machine
        results["cpu_time_ratio"] = c_low[len(c_low) // 2] / c_dense[len(c_dense) // 2]
    for key, value in results.items():
        print(f"{key:>24}: {value:.4g}" if isinstance(value, float) else f"{key:>24}: {value}")
    print(f"\ntarget latency ratio <= 0.7: {'MET' if results['latency_ratio'] <= 0.7 else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
