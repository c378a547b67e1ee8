"""Time of one-shot RMT pruning (``rmtlib.prune(..., "rmt_oneshot")``) of a random-init ViT-B/16.

Targets: under 60 s on the CPU; under 5 s on a GPU (``--device cuda``: model and SVDs there).
The first run is reported (cold: includes kernel/library start-up), then the median of repeats.

    python benchmarks/prune_speed.py [--model vit_base_patch16_224] [--device cpu|cuda] [--sparsity 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
    parser.add_argument("--method", default="rmt_oneshot")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=1, help="extra warm runs after the first (default 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    out: dict = {}

    def run() -> None:
        out["result"] = rmtlib.prune(model, args.method, sparsity=args.sparsity, device=args.device)

    first = timed(run, args.device)
    warm = sorted(timed(run, args.device) for _ in range(args.repeats))
    result = out["result"]
    results = {
        "model": args.model,
        "method": args.method,
        "device": args.device,
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "torch_threads": torch.get_num_threads(),
        "layers": len(result.layers),
        "target_sparsity": args.sparsity,
        "reached_sparsity": result.summary.reached_sparsity,
        "first_run_s": first,
        "warm_median_s": warm[len(warm) // 2] if warm else None,
    }
    for key, value in results.items():
        print(f"{key:>18}: {value:.4g}" if isinstance(value, float) else f"{key:>18}: {value}")
    limit = 5.0 if args.device.startswith("cuda") else 60.0
    print(f"\ntarget first run < {limit:g} s: {'MET' if first < limit else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
