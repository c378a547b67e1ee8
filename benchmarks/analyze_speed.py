"""Per-layer MP analysis speed: rmtlib.analyze vs bare torch.linalg.svdvals vs WeightWatcher.

All three run in one process on the same random-init model (default vit_base_patch16_224),
interleaved, so the ratios are measured side by side on a noisy shared machine.
Targets (CPU): analyze <= 1.0x bare svdvals, >= 8x faster than WeightWatcher, peak extra memory
< 2x the model's size. On a GPU (--device cuda): analyze <= 0.4 s for ViT-B/16.

    python benchmarks/analyze_speed.py [--model vit_base_patch16_224] [--device cpu|cuda] [--skip-ww]
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
from _util import peak_rss, timed  # noqa: E402

import rmtlib  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-ww", action="store_true", help="skip WeightWatcher (slow; needs the bench extra)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    matrices = [lm.matrix for lm in rmtlib.layer_matrices(model)]
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def run_analyze() -> None:
        rmtlib.analyze(model, device=args.device, progress=False)

    def run_svdvals() -> None:
        for matrix in matrices:
            torch.linalg.svdvals(matrix)

    run_analyze(), run_svdvals()  # warm-up (library loading, cuSOLVER handles)
    with peak_rss() as memory:
        run_analyze()
    t_analyze, t_svd = [], []
    for _ in range(args.repeats):  # interleaved repeats
        t_analyze.append(timed(run_analyze, args.device))
        t_svd.append(timed(run_svdvals, args.device))
    t_analyze.sort(), t_svd.sort()
    results = {
        "model": args.model,
        "device": args.device,
        "matrices": len(matrices),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "analyze_s": t_analyze[len(t_analyze) // 2],
        "svdvals_s": t_svd[len(t_svd) // 2],
        "model_mb": model_bytes / 2**20,
        "analyze_extra_rss_mb": (memory["peak"] - memory["before"]) / 2**20,
    }
    results["analyze_over_svdvals"] = results["analyze_s"] / results["svdvals_s"]
    results["extra_memory_over_model"] = results["analyze_extra_rss_mb"] / results["model_mb"]
    if not args.skip_ww:
        import weightwatcher as ww

        watcher = ww.WeightWatcher(model=model.cpu() if args.device == "cpu" else model)
        results["weightwatcher_s"] = timed(lambda: watcher.analyze(mp_fit=True), args.device)
        results["weightwatcher_over_analyze"] = results["weightwatcher_s"] / results["analyze_s"]
    for key, value in results.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    print(f"\ntarget analyze/svdvals <= 1.0: {'MET' if results['analyze_over_svdvals'] <= 1.0 else 'MISSED'}")
    if "weightwatcher_over_analyze" in results:
        print(f"target WeightWatcher/analyze >= 8: {'MET' if results['weightwatcher_over_analyze'] >= 8 else 'MISSED'}")
    print(f"target extra memory < 2x model: {'MET' if results['extra_memory_over_model'] < 2 else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
