"""``rmtlib prune MODEL --method M --sparsity S --out FILE``: prune a model and save it.

Prints a one-screen summary (parameters dense / stored / nonzero, multiply-adds, target vs
reached sparsity) and, with ``--layers``, the per-layer table. Bad input exits with code 2
before anything is written.

Under ``torchrun`` every process prunes, rank 0's pruned model is given to all
(:func:`rmtlib.train.distributed.sync_from_rank0`), top-1 is measured on shards and fine-tuning is
data-parallel; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import pandas as pd

from rmtlib.atomic import write_or_rescue
from rmtlib.cli.args import (
    DATA,
    DEVICE,
    FIT,
    OUTPUT,
    add_command,
    build_model,
    calibration_spec,
    check_classes,
    check_input_file,
    check_io,
    check_output_file,
    default_calibration,
    fit_config_from_args,
    key_values,
    load_calibration,
    model_inputs,
    seed_value,
    sparsity_level,
    write_csv_atomic,
)
from rmtlib.cli.finetune import add_finetune_arguments as _add
from rmtlib.cli.finetune import check_finetune_arguments, finetune_from_args
from rmtlib.errors import InputError
from rmtlib.nn.checkpoints import save_checkpoint
from rmtlib.nn.count import count_macs, count_params, example_input
from rmtlib.nn.finite import check_finite_model
from rmtlib.nn.models import mnist_vit_config, recorded_kwargs
from rmtlib.pruning import METHODS, PruneResult, check_method_options, prune
from rmtlib.runtime import get_device
from rmtlib.train.data import check_model_input, load_dataset
from rmtlib.train.distributed import init_distributed, is_main_process, sync_from_rank0
from rmtlib.train.loops import seed_everything

#: prune() arguments this command sets itself (from its flags); an --option naming one would clash
_SET_BY_COMMAND = {
    "model",
    "method",
    "sparsity",
    "include",
    "exclude",
    "inplace",
    "seed",
    "device",
    "alpha",  # the fit flags (--alpha, --beta, --edge-centring) make one fit_config
    "beta",
    "edge_centring",
    "fit_config",
    "split_qkv",
    "progress",
    "calibration",
    "pattern",
}
_NO_FLAG = {"model", "inplace", "progress", "fit_config"}


def add_parser(sub: argparse._SubParsersAction) -> None:

    p = add_command(
        sub,
        "prune",
        "prune a model (rmt, rmt_oneshot, rmt_lowrank, magnitude, wanda, sparsegpt, seb, svd, random)",
        [DEVICE, FIT, DATA, OUTPUT],
    )
    p.add_argument("model", help="timm model name or project model (mnist_vit: the committed weights, fc:784-256-10)")
    p.add_argument("--method", required=True, choices=list(METHODS), help="pruning method")
    p.add_argument(
        "--sparsity",
        type=sparsity_level,
        help="target: 1 - nonzero / dense parameters of the whole model, in [0, 1). Without it rmt, rmt_oneshot, "
        "rmt_lowrank and svd stop by their own rule (cycles=, z=, bulk_fraction=, rank_fraction=): rmt_lowrank "
        "then keeps only each layer's spikes, which can be far sparser than intended (the MNIST ViT: 81.7%% "
        "sparsity, 12.6%% top-1)",
    )
    p.add_argument("--checkpoint", help="local weights to prune (safetensors or torch state dict)")
    p.add_argument("--out", help="write the pruned model here (.safetensors, with pruning metadata)")
    p.add_argument("--report", help="write the per-layer table here (CSV)")
    p.add_argument("--layers", action="store_true", help="print the per-layer table")
    p.add_argument("--include", action="append", metavar="PATTERN", help="only layers matching (fnmatch; repeatable)")
    p.add_argument("--exclude", action="append", metavar="PATTERN", help="skip layers matching (repeatable)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, e.g. scope=global, rho=0.08, regularization=none, bulk_fraction=0.1 (repeatable)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model argument, e.g. depth=4 (repeatable)"
    )
    p.add_argument(
        "--split-qkv", action="store_true", help="prune a fused qkv as three matrices (element-wise methods)"
    )
    p.add_argument(
        "--calibration",
        type=calibration_spec,
        metavar="DATA[:COUNT]",
        help="calibration images for wanda/sparsegpt: COUNT training images of DATA drawn with --seed "
        "(default for those methods: mnist:256 on mnist_vit, else 256 images of --data)",
    )
    p.add_argument(
        "--pattern",
        metavar="N:M",
        help="N:M sparsity (magnitude, wanda, sparsegpt): keep N of each M consecutive inputs; instead of --sparsity",
    )
    p.add_argument(
        "--seed", type=seed_value, default=0, help="seed of random pruning and of a randomly initialised model"
    )
    add_finetune_arguments(p)
    p.set_defaults(func=run)


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """Hook for fine-tuning after pruning (``--data PATH --finetune-epochs N``, zero mask frozen).

    The arguments come from :func:`rmtlib.cli.finetune.add_finetune_arguments`.
    """

    _add(p)


def finetune(model: Any, args: argparse.Namespace, dense: Any = None) -> Any:
    """Hook: accuracy of ``dense`` (the model before pruning) and of the pruned one, and masked
    fine-tuning (:func:`rmtlib.cli.finetune.finetune_from_args`)."""

    return finetune_from_args(model, args, dense_model=dense)


def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def summary(result: PruneResult, before: dict[str, int], after: dict[str, int], macs: tuple[int, int] | None) -> str:
    """The one-screen summary printed after pruning."""
    s, report = result.summary, result.layers
    target = "-" if s.target_sparsity is None else format(s.target_sparsity, ".4f")
    lines = [f"method {s.method}: target sparsity {target}, reached {s.reached_sparsity:.4f}"]
    lines.append(f"{'':10}{'dense':>12}{'stored':>12}{'nonzero':>12}")
    lines.append(f"{'before':10}{_fmt(before['dense']):>12}{_fmt(before['stored']):>12}{_fmt(before['nonzero']):>12}")
    lines.append(f"{'after':10}{_fmt(after['dense']):>12}{_fmt(after['stored']):>12}{_fmt(after['nonzero']):>12}")
    if macs is not None:
        lines.append(
            f"MACs per sample: {_fmt(macs[0])} -> {_fmt(macs[1])} ({macs[1] / macs[0]:.3f}x; zeros in dense "
            "weights do not reduce them)"
        )
    a = s.outputs
    extra = {
        k: a[k] for k in ("cycles", "z", "rank_fraction", "bulk_fraction", "scope", "allocation", "pattern") if k in a
    }
    if extra:
        lines.append("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))
    changed = report[report["nonzero_after"] < report["nonzero_before"]]
    lines.append(f"{len(changed)} of {len(report)} layers pruned")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:

    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    check_output_file(args.report, "--report")
    model_kwargs = key_values(args.set, "--set")
    pretrained = args.model == "mnist_vit" and not args.checkpoint and not model_kwargs  # the committed weights
    check_io(
        model_inputs(args.model, args.checkpoint, pretrained),
        [(args.out, "--out"), (args.report, "--report")],
        overwrite=args.overwrite,
        data=args.data,
    )
    device = get_device(args.device)
    check_finetune_arguments(args)  # before pruning, which can take minutes
    options = key_values(args.option, "--option")
    taken = sorted(set(options) & _SET_BY_COMMAND)
    if taken:  # passing them twice was a TypeError traceback; fit= stays an option (it has no flag)
        flags = [f"--{k.replace('_', '-')}" for k in taken if k not in _NO_FLAG]
        raise InputError(
            f"--option {', '.join(taken)}: set by the command itself, not a method option"
            + (f"; use {', '.join(flags)}" if flags else "")
        )
    if args.pattern is not None:
        options["pattern"] = args.pattern
    try:  # option values too (bulk_fraction=abc), before the model is built
        check_method_options(args.method, options, with_sparsity=args.sparsity is not None)
    except InputError as err:
        raise InputError(f"--option: {err}") from None
    calibration = default_calibration(args.calibration, [args.method], args.model, args.data)
    init_distributed()  # under torchrun: same pruning everywhere, sharded top-1, DDP fine-tuning, rank 0 writes
    main_process = is_main_process()
    seed_everything(args.seed)  # a randomly initialised model is the same on every run
    model = build_model(args.model, args.checkpoint, pretrained=pretrained, **model_kwargs)
    if main_process and not args.checkpoint and not pretrained:
        print(f"note: no --checkpoint, so {args.model} is randomly initialised", file=sys.stderr)
    model.eval()
    check_finite_model(model, args.checkpoint or args.model)  # a NaN bias was pruned and saved silently
    before = count_params(model)
    x = example_input(model)
    macs_before = count_macs(model, x) if x is not None else None
    if args.data:  # a wrong --data is an error now, not after the pruning (minutes on a large model)
        test_set = load_dataset(args.data, "test", model=model)
        check_model_input(model, test_set, args.data)
        check_classes(model, test_set, args.data)  # more classes than outputs was an IndexError after pruning
    dense = copy.deepcopy(model) if args.data else None  # for its top-1 beside the pruned model's
    inputs = None if calibration is None else load_calibration(calibration, model, args.seed)
    fit_config = fit_config_from_args(args)
    result = prune(
        model,
        args.method,
        sparsity=args.sparsity,
        include=args.include,
        exclude=args.exclude,
        inplace=True,
        seed=args.seed,
        device=device,
        fit_config=fit_config,
        split_qkv=args.split_qkv,
        progress=not args.quiet and main_process,
        calibration=inputs,
        **options,
    )
    pruned, report = result.model, result.layers
    sync_from_rank0(pruned, f"prune {args.method}")
    pruned = finetune(pruned, args, dense)
    after = count_params(pruned)
    if x is not None:  # evaluation and fine-tuning may have moved the model to --device
        x = x.to(next(pruned.parameters()).device)
    macs = (macs_before, count_macs(pruned, x)) if x is not None and macs_before else None
    if not main_process:
        return 0
    print(summary(result, before, after, macs))
    if args.layers:
        with pd.option_context("display.width", 200, "display.max_rows", 500, "display.float_format", "{:.4g}".format):
            print(report.to_string(index=False))
    if args.out:
        metadata = {
            "model": args.model,
            "model_kwargs": recorded_kwargs(args.checkpoint, args.model, model_kwargs),
            "source_checkpoint": args.checkpoint,
            "method": args.method,
            "sparsity_target": args.sparsity,
            "sparsity_reached": result.summary.reached_sparsity,
            "options": options,
            "calibration": None if calibration is None else f"{calibration[0]}:{calibration[1]}",
            "include": args.include,
            "exclude": args.exclude,
            "split_qkv": args.split_qkv,
            "fit_config": fit_config.to_dict(),
            "seed": args.seed,
            "params": after,
            "params_dense_before": before["dense"],
            "ranks": {row.layer: int(row.rank_kept) for row in report.itertuples() if not pd.isna(row.rank_kept)},
        }
        if args.model == "mnist_vit":
            metadata["config"] = mnist_vit_config(args.checkpoint, model_kwargs)
        write_or_rescue(lambda path: save_checkpoint(pruned, path, metadata), args.out, "--out")
        print(f"pruned model written to {args.out}")
    if args.report:
        write_or_rescue(lambda path: write_csv_atomic(report, path), args.report, "--report")
        print(f"per-layer table written to {args.report}")
    return 0
