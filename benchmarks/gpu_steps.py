"""The steps of :mod:`gpu_check`, each run in a process of its own (so a timeout can end it).

    python benchmarks/gpu_steps.py STEP --config CONFIG.json --result RESULT.json

Steps: ``analyze`` (speed targets), ``latency`` (low-rank and 2:4 vs dense), ``mnist_vit`` (the
committed asset retrained), ``fc_table`` (the paper's regularization table); the driver runs the CUDA
tests itself. A step writes its result JSON as it goes (after each model, row or dtype), so a step
that runs out of time still leaves what it measured. ``CONFIG`` holds ``device``, ``tiny``,
``budget_s`` (its timeout), ``deadline`` (``time.time()`` when it is ended), ``outdir``, ``scratch``,
``mnist`` (a file or null), ``fashion`` (a folder or null), ``vit_min_accuracy`` (null: the committed
card's). A step with nothing to work on returns ``{"step_skipped": reason}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm  # noqa: E402
import torch  # noqa: E402
from _util import sync, timed  # noqa: E402
from torch import nn  # noqa: E402

import rmtlib  # noqa: E402
from rmtlib.cli.main import main as cli_main  # noqa: E402
from rmtlib.experiments.fc_table import FC_ROWS, PAPER_FC_TABLE, PAPER_WIDTHS, run_fc_table, train_fc_row  # noqa: E402
from rmtlib.nn.models import load_mnist_vit  # noqa: E402
from rmtlib.train.data import load_dataset, make_loader  # noqa: E402
from rmtlib.train.loops import evaluate  # noqa: E402
from rmtlib.train.regularize import MPSplitScheduler  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: Speed targets of ``rmtlib.analyze`` on a GPU, seconds (random-init timm models).
ANALYZE_TARGETS = {"vit_base_patch16_224": 0.4, "vit_huge_patch14_224": 2.0}
#: Reduced architectures for ``--tiny`` (CPU dry runs): the same code paths on small matrices.
TINY_VIT = {
    "vit_base_patch16_224": {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2},
    "vit_huge_patch14_224": {"img_size": 28, "patch_size": 14, "embed_dim": 80, "depth": 2, "num_heads": 2},
}
PAPER_FC_EPOCHS = 100
TINY_FC_WIDTHS = (784, 32, 10)


def write_json(data: dict, path: str | Path) -> None:
    """Write ``data`` as JSON through a temporary file, so a reader (or a kill) never sees half of it."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def vit(name: str, tiny: bool, device: str) -> tuple[nn.Module, dict]:
    """A seeded random-init timm ViT built directly on ``device`` (a ViT-H initialised on a GPU takes
    a second, on the host's CPU far longer); its reduced ``TINY_VIT`` form with ``tiny``."""
    kwargs = TINY_VIT[name] if tiny else {}
    torch.manual_seed(0)
    with torch.device(device):
        model = timm.create_model(name, pretrained=False, **kwargs)
    return model.eval(), kwargs


# ---------------------------------------------------------------- 2:4 masks


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-magnitude entries of each group of 4 consecutive inputs
    (the last dimension), the pattern sparse tensor cores accelerate."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        raise ValueError(f"2:4 needs a 2-D weight with in-features divisible by 4, got shape {tuple(weight.shape)}")
    groups = weight.detach().abs().float().reshape(weight.shape[0], -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(weight.shape)


def nonzeros_per_group(weight: torch.Tensor) -> torch.Tensor:
    """Nonzero count of each group of 4 consecutive inputs (shape out x in/4)."""
    return (weight.detach() != 0).reshape(weight.shape[0], -1, 4).sum(-1)


def is_2_4(weight: torch.Tensor) -> bool:
    """True when every group of 4 consecutive inputs has at most 2 nonzeros."""
    return weight.dim() == 2 and weight.shape[1] % 4 == 0 and bool((nonzeros_per_group(weight) <= 2).all())


def apply_2_4(model: nn.Module) -> int:
    """Zero every ``nn.Linear`` weight outside its :func:`mask_2_4` (in place); returns the layers masked."""
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.in_features % 4 == 0:
                module.weight.mul_(mask_2_4(module.weight))
                count += 1
    return count


def masked_2_4_model(dense: nn.Module, device: str) -> tuple[nn.Module, dict]:
    """The dense model 2:4 magnitude-masked: by ``rmtlib.prune(..., pattern="2:4")`` where the library has
    it and each Linear it returns is 2:4 or unchanged, else by :func:`apply_2_4` here (every Linear).
    Returns (model, how it was made)."""
    attempts = []
    for kwargs in ({"sparsity": 0.5, "pattern": "2:4"}, {"pattern": "2:4"}):
        call = "rmtlib.prune(model, 'magnitude', " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
        try:
            model = rmtlib.prune(dense, "magnitude", device=device, **kwargs).model
        except (rmtlib.InputError, TypeError) as err:
            attempts.append(f"{call}: {str(err).splitlines()[0]}")
            continue
        pairs = [(a, b) for a, b in zip(dense.modules(), model.modules()) if isinstance(b, nn.Linear)]
        masked = [is_2_4(b.weight) for _, b in pairs]
        untouched = [torch.equal(a.weight, b.weight) for a, b in pairs]
        if any(masked) and all(m or u for m, u in zip(masked, untouched)):  # each Linear 2:4 or left dense
            return model, {"mask_source": call, "attempts": attempts}
        attempts.append(f"{call}: changed some Linear weights without making them 2:4")
    model = copy.deepcopy(dense)
    apply_2_4(model)
    return model, {
        "mask_source": "gpu_steps.apply_2_4 (2 largest |w| of each 4 inputs, every Linear)",
        "attempts": attempts,
    }


def semi_structured_backend(dtype: torch.dtype) -> str:
    """``cusparselt`` where it is available and takes ``dtype`` (fp16, bf16, int8), else ``cutlass``
    (which also takes fp32)."""
    cusparselt = torch.sparse.SparseSemiStructuredTensorCUSPARSELT
    if torch.backends.cusparselt.is_available() and dtype in cusparselt._DTYPE_SHAPE_CONSTRAINTS:
        return "cusparselt"
    return "cutlass"


def to_semi_structured(model: nn.Module, backend: str) -> tuple[int, dict[str, str]]:
    """Swap each 2:4 ``nn.Linear`` weight for ``torch.sparse.to_sparse_semi_structured`` of it (in place) on
    ``backend``. Returns (layers converted, {layer: why not} for those the kernels refuse, e.g. by shape)."""
    converted, skipped = 0, {}
    flag = torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS
    torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = backend == "cutlass"
    try:
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            if not is_2_4(module.weight):
                skipped[name] = "weight is not 2:4"
                continue
            try:
                sparse = torch.sparse.to_sparse_semi_structured(module.weight.detach().contiguous())
            except (RuntimeError, ValueError, NotImplementedError) as err:
                skipped[name] = str(err).splitlines()[0][:200]
                continue
            module.weight = nn.Parameter(sparse, requires_grad=False)
            converted += 1
    finally:
        torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = flag
    return converted, skipped


# ---------------------------------------------------------------- timing


def time_models(
    models: dict[str, nn.Module], x: torch.Tensor, device: str, warmup: int, iters: int
) -> dict[str, list[float]]:
    """Forward times (ms) of each model on ``x``, interleaved (who goes first alternates); CUDA events
    on a GPU, wall clock on the CPU; ``warmup`` untimed calls each first."""
    cuda = device.startswith("cuda")
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                model(x)
        sync(device)
        for i in range(iters):
            for name in list(models) if i % 2 == 0 else list(models)[::-1]:
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    models[name](x)
                    end.record()
                    end.synchronize()
                    times[name].append(start.elapsed_time(end))
                else:
                    begin = time.perf_counter()
                    models[name](x)
                    times[name].append(1e3 * (time.perf_counter() - begin))
    return times


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


# ---------------------------------------------------------------- steps


def analyze_speed(name: str, repeats: int, tiny: bool, device: str, report: Callable[[dict], None]) -> None:
    """Seconds of ``rmtlib.analyze`` of one random-init model and of bare ``torch.linalg.svdvals`` of its
    matrices: a first call of each (kept apart: library loading, solver handles), then ``repeats``
    interleaved pairs; medians. ``report`` gets the row after every pair (a timeout keeps those done)."""
    model, kwargs = vit(name, tiny, device)
    matrices = [lm.matrix for lm in rmtlib.layer_matrices(model)]

    def run_analyze() -> None:
        rmtlib.analyze(model, device=device, progress=False)

    def run_svdvals() -> None:
        for matrix in matrices:
            torch.linalg.svdvals(matrix)

    first = {"analyze_s": timed(run_analyze, device), "svdvals_s": timed(run_svdvals, device)}
    t_analyze: list[float] = []
    t_svd: list[float] = []
    target = ANALYZE_TARGETS[name]
    for _ in range(repeats):
        t_analyze.append(timed(run_analyze, device))
        t_svd.append(timed(run_svdvals, device))
        report(
            {
                "model_kwargs": kwargs,
                "matrices": len(matrices),
                "params": sum(p.numel() for p in model.parameters()),
                "repeats": len(t_analyze),
                "first_call_s": first,
                "analyze_s": median(t_analyze),
                "svdvals_s": median(t_svd),
                "analyze_times_s": t_analyze,
                "svdvals_times_s": t_svd,
                "analyze_over_svdvals": median(t_analyze) / median(t_svd),
                "target_s": target,
                "target_met": median(t_analyze) <= target,
            }
        )


def step_analyze(cfg: dict, save: Callable[[dict], None]) -> dict:
    """``rmtlib.analyze`` speed of random-init ViT-B/16 (target 0.4 s) and ViT-H/14 (2 s) on the device,
    beside bare ``torch.linalg.svdvals`` of the same matrices in the same run."""
    device, tiny = cfg["device"], cfg["tiny"]
    out: dict[str, Any] = {"device": device, "tiny": tiny, "targets_s": ANALYZE_TARGETS, "models": {}}
    for name, repeats in (("vit_base_patch16_224", 5), ("vit_huge_patch14_224", 3)):

        def report(row: dict, name: str = name) -> None:
            out["models"][name] = row
            save(out)

        analyze_speed(name, repeats, tiny, device, report)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def _lowrank(dense: nn.Module, device: str, **options: Any) -> tuple[nn.Module, dict]:
    start = time.perf_counter()
    result = rmtlib.prune(dense, "rmt_lowrank", sparsity=0.5, device=device, **options)
    low, report = result.model, result.layers
    seconds = time.perf_counter() - start
    dense_count, low_count = rmtlib.count_params(dense)["stored"], rmtlib.count_params(low)["stored"]
    call = "rmtlib.prune(model, 'rmt_lowrank', sparsity=0.5" + "".join(f", {k}={v!r}" for k, v in options.items())
    return low.eval(), {
        "call": call + ")",
        "prune_s": seconds,
        "params_dense": dense_count,
        "params_stored": low_count,
        "param_reduction": 1 - low_count / dense_count,
        "reached_sparsity": float(result.summary.reached_sparsity),
        "factorized_layers": int((report["params_after"] < report["params_before"]).sum()),
        "layers": len(report),
    }


def step_latency(cfg: dict, save: Callable[[dict], None]) -> dict:
    """ViT-B/16 forward latency (batch 64) in fp32 and bf16: dense vs ``rmt_lowrank`` at 50% (default ranks
    and ranks in multiples of 16) vs a 2:4 magnitude mask run through ``to_sparse_semi_structured``."""
    device, tiny = cfg["device"], cfg["tiny"]
    cuda = device.startswith("cuda")
    name = "vit_base_patch16_224"
    batch, warmup, iters = (4, 1, 3) if tiny else (64, 5, 20)
    dense, kwargs = vit(name, tiny, device)
    out: dict[str, Any] = {
        "model": name,
        "model_kwargs": kwargs,
        "device": device,
        "tiny": tiny,
        "batch": batch,
        "warmup": warmup,
        "iters": iters,
        "timer": "cuda events" if cuda else "perf_counter",
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }
    variants: dict[str, nn.Module] = {"dense": dense}
    for key, options in (("lowrank", {}), ("lowrank_r16", {"rank_multiple": 16})):
        variants[key], out[key] = _lowrank(dense, device, **options)
    masked, how = masked_2_4_model(dense, device)
    linear = [m for m in masked.modules() if isinstance(m, nn.Linear)]
    out["sparse24"] = {
        **how,
        "linear_layers": len(linear),
        "linear_layers_2_4": sum(is_2_4(m.weight) for m in linear),
    }
    save(out)
    torch.manual_seed(0)
    x32 = torch.randn(batch, *rmtlib.nn.count.example_input(dense).shape[1:], device=device)
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):  # bf16 first: the 2:4 case
        x = x32.to(dtype)
        models = {key: copy.deepcopy(model).to(dtype).eval() for key, model in variants.items()}
        result: dict[str, Any] = {}
        with torch.inference_mode():
            ref = models["dense"](x)
            for key in ("lowrank", "lowrank_r16"):
                result[f"{key}_rel_output_change"] = relative_change(models[key](x), ref)
        _record_times(result, time_models(models, x, device, warmup, iters))
        out[dtype_name] = result
        save(out)  # before the sparse kernels, which may fail
        if not cuda:
            result["sparse24_note"] = "skipped: semi-structured sparse kernels need a CUDA GPU"
        else:
            sparse24(result, models["dense"], copy.deepcopy(masked).to(dtype).eval(), x, device, warmup, iters)
        save(out)
        del models
        if cuda:
            torch.cuda.empty_cache()
    return out


def _record_times(result: dict, times: dict[str, list[float]]) -> None:
    """Medians (ms), the raw times and each model's ratio to ``dense`` timed in the same interleaved run."""
    for key, values in times.items():
        result[f"{key}_ms"] = median(values)
        result[f"{key}_times_ms"] = values
        if key != "dense":
            result[f"{key}_over_dense"] = median(values) / median(times["dense"])


def sparse24(
    result: dict, dense: nn.Module, masked: nn.Module, x: torch.Tensor, device: str, warmup: int, iters: int
) -> None:
    """Convert the 2:4-masked model's Linear weights to semi-structured sparse tensors and time it against
    the dense model (interleaved, a run of its own: ``dense_ms_vs_sparse24``); reasons go to ``result``."""
    sparse = copy.deepcopy(masked)
    result["sparse24_backend"] = semi_structured_backend(x.dtype)
    converted, skipped = to_semi_structured(sparse, result["sparse24_backend"])
    result["sparse24_layers_converted"], result["sparse24_layers_skipped"] = converted, skipped
    if not converted:
        result["sparse24_note"] = "skipped: the kernels took no layer (see sparse24_layers_skipped)"
        return
    try:
        with torch.inference_mode():
            result["sparse24_rel_error_vs_masked_dense"] = relative_change(sparse(x), masked(x))
        times = time_models({"dense": dense, "sparse24": sparse}, x, device, warmup, iters)
    except (RuntimeError, ValueError, NotImplementedError) as err:
        result["sparse24_note"] = f"skipped: the sparse forward failed: {str(err).splitlines()[0][:300]}"
        return
    result["sparse24_ms"], result["sparse24_times_ms"] = median(times["sparse24"]), times["sparse24"]
    result["dense_ms_vs_sparse24"], result["dense_times_ms_vs_sparse24"] = median(times["dense"]), times["dense"]
    result["sparse24_over_dense"] = result["sparse24_ms"] / result["dense_ms_vs_sparse24"]


def vit_train_args(device: str, tiny: bool) -> list[str]:
    """``rmtlib train`` arguments of the committed MNIST ViT's recipe (README), or of a tiny stand-in."""
    epochs = ["--epochs", "1", "--train-subset", "256"] if tiny else ["--epochs", "15"]
    args = ["train", "mnist_vit", "--data", "mnist", *epochs, "--seed", "0", "--device", device]
    if tiny:
        args += ["--set", "depth=1", "--set", "embed_dim=32", "--set", "num_heads=2"]
    return args + ["--out", "mnist_vit.safetensors", "--card", "mnist_vit.json", "--quiet"]


def step_mnist_vit(cfg: dict, save: Callable[[dict], None]) -> dict:
    """Retrain the committed MNIST ViT with today's code (the README's recipe) and keep the candidate
    (weights + card, under ``outdir``) only if its test accuracy is at least the committed one's."""
    device, tiny, scratch, outdir = cfg["device"], cfg["tiny"], Path(cfg["scratch"]), Path(cfg["outdir"])
    if not cfg.get("mnist"):
        return {"step_skipped": "no MNIST file (see gpu_check.sh --prepare): nothing to train on"}
    current_card = json.loads((ROOT / "rmtlib" / "assets" / "mnist_vit.json").read_text())
    current = float(current_card["test_accuracy"])
    minimum = current if cfg.get("vit_min_accuracy") is None else float(cfg["vit_min_accuracy"])
    work = scratch / "mnist_vit"
    work.mkdir(parents=True, exist_ok=True)
    args = vit_train_args(device, tiny)
    out: dict[str, Any] = {"command": "python -m rmtlib " + " ".join(args), "tiny": tiny, "current_accuracy": current}
    save(out)
    start = time.perf_counter()
    sys.argv = ["rmtlib", *args]  # what `python -m rmtlib` sees: the card records the command from it
    os.chdir(work)  # relative --out/--card: the card names the files as the asset recipe does
    try:
        code = cli_main(args)
    finally:
        os.chdir(ROOT)
    out["train_wall_s"] = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"rmtlib train exited with {code}")
    card = json.loads((work / "mnist_vit.json").read_text())
    candidate = load_mnist_vit(work / "mnist_vit.safetensors")
    test = make_loader(load_dataset("mnist", "test"), 1000, subset=500 if tiny else None)
    out.update(
        test_accuracy=card["test_accuracy"],
        val_accuracy=card["val_accuracy"],
        train_seconds=card["train_seconds"],
        epochs=card["epochs"],
        fp32_eval_samples=len(test.dataset),
        test_accuracy_fp32=evaluate(candidate, test, device, amp=False)["accuracy"],
        current_accuracy_fp32_here=evaluate(load_mnist_vit(), test, device, amp=False)["accuracy"],
        minimum_to_replace=minimum,
        replace=card["test_accuracy"] >= minimum,
        card=card,
    )
    if out["replace"]:
        for name in ("mnist_vit.safetensors", "mnist_vit.json"):  # gpu_check.CANDIDATE
            shutil.copyfile(work / name, outdir / name)
        out["candidate"] = "mnist_vit.safetensors + mnist_vit.json beside this file: copy both to rmtlib/assets/"
    else:
        out["candidate"] = f"not kept: test accuracy {card['test_accuracy']:.4f} < {minimum:.4f}"
    return out


def _fc_epochs(
    runs: list[tuple[float, bool, float]], split_s: float, budget_s: float, max_epochs: int, every: int
) -> int:
    """Most epochs (at most ``max_epochs``, a multiple of ``every`` below it) whose predicted time fits
    ``budget_s``, for ``runs`` of (seconds per epoch, splits?, seconds of set-up and evaluation) each;
    at least ``min(every, max_epochs)``, so the MP rows split at least once."""
    floor_epochs = min(every, max_epochs)

    def cost(epochs: int) -> float:
        return sum(epochs * t_epoch + (epochs // every) * split_s * mp + t_eval for t_epoch, mp, t_eval in runs)

    best = floor_epochs
    for epochs in range(floor_epochs, max_epochs + 1):
        if cost(epochs) <= budget_s and (epochs % every == 0 or epochs == max_epochs):
            best = epochs
    return best


def step_fc_table(cfg: dict, save: Callable[[dict], None]) -> dict:
    """The paper's FC table (METHOD.md section 4) at the paper's width and recipe, one seed, on MNIST and
    on a Fashion-MNIST folder when one is given; epochs scaled down from 100 to fit the step's budget."""
    device, tiny = cfg["device"], cfg["tiny"]
    budget = float(cfg["budget_s"])
    widths = list(TINY_FC_WIDTHS if tiny else PAPER_WIDTHS)
    max_epochs, every = (1, 1) if tiny else (PAPER_FC_EPOCHS, 4)
    subset = 300 if tiny else None
    datasets = {}
    if cfg.get("mnist"):
        datasets["MNIST"] = "mnist"
    if cfg.get("fashion"):
        datasets["Fashion-MNIST"] = f"fashion-mnist:{cfg['fashion']}"
    out: dict[str, Any] = {
        "widths": widths,
        "tiny": tiny,
        "device": device,
        "seed": 0,
        "paper_epochs": PAPER_FC_EPOCHS,
        "recipe": "SGD momentum 0.9, batch 128, lr 0.01 x 0.96 every 4 epochs, L1 = L2 = 5e-6, MP split every "
        f"{every} epochs keeping max(0, 1 - epoch/T) of the bulk, T = 3 x epochs (rmtlib.experiments.fc_table)",
        "amp": "bfloat16 autocast (rmtlib.train.loops default on CUDA)" if device.startswith("cuda") else "float32",
        "paper": PAPER_FC_TABLE.to_dict(orient="records"),
        "results": {},
    }
    if not datasets:
        return {**out, "step_skipped": "no MNIST file and no Fashion-MNIST folder (see gpu_check.sh --prepare)"}
    loaded = {
        label: (
            load_dataset(spec, "train", flatten=True),
            load_dataset(spec, "test", flatten=True),
        )
        for label, spec in datasets.items()
    }
    # calibration on the first dataset: one epoch of the costliest row (penalties) and one MP split
    train_set, test_set = loaded[next(iter(loaded))]
    if subset:
        train_set = torch.utils.data.Subset(train_set, range(subset))
    start = time.perf_counter()
    _, model, history = train_fc_row(FC_ROWS[3], train_set, test_set, widths=widths, epochs=1, device=device)
    calibration_wall = time.perf_counter() - start
    split_start = time.perf_counter()
    MPSplitScheduler(every=1, T=3.0).split(model, 1.0)
    sync(device)
    split_s = time.perf_counter() - split_start
    per_sample = history[0]["seconds"] / len(train_set)
    eval_s = max(0.0, calibration_wall - history[0]["seconds"])
    out["calibration"] = {"epoch_s": history[0]["seconds"], "eval_and_setup_s": eval_s, "mp_split_s": split_s}
    runs = [  # every (dataset, row) to train: an epoch's time scales with the training samples
        (per_sample * min(len(train), subset or len(train)), row.mp_pruning, eval_s)
        for train, _ in loaded.values()
        for row in FC_ROWS
    ]
    left = cfg["deadline"] - time.time() - 15.0  # margin: JSON, process exit
    epochs = _fc_epochs(runs, split_s, left / 1.1, max_epochs, every)  # 10% for what the estimate misses
    out["epochs"] = epochs
    out["epochs_scaled"] = epochs < PAPER_FC_EPOCHS
    out["note"] = (
        f"{epochs} epochs per row instead of the paper's {PAPER_FC_EPOCHS}, to fit the {budget:.0f} s this step "
        "had on this device"
        if epochs < PAPER_FC_EPOCHS
        else "the paper's 100 epochs"
    )
    save(out)
    for label, (train_set, test_set) in loaded.items():
        rows = out["results"].setdefault(label, [])
        for fc_row in FC_ROWS:
            table = run_fc_table(
                widths=widths,
                epochs=epochs,
                data=(train_set, test_set),
                rows=[fc_row],
                train_subset=subset,
                split_every=every,
                seed=0,
                device=device,
            )
            record = table.assign(dataset=label).iloc[0].to_dict()
            rows.append({k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()})
            save(out)
    return out


STEPS: dict[str, Callable[[dict, Callable[[dict], None]], dict]] = {
    "analyze": step_analyze,
    "latency": step_latency,
    "mnist_vit": step_mnist_vit,
    "fc_table": step_fc_table,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--config", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    torch.manual_seed(0)

    def save(data: dict) -> None:
        write_json(data, args.result)

    result = STEPS[args.step](cfg, save)
    save(result)
    print(
        f"[{args.step}] done: "
        + ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float, str)))[:2000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
