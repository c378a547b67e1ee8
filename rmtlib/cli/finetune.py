"""The fine-tuning flags shared by ``rmtlib prune`` and ``rmtlib sweep``, and the step they run."""

from __future__ import annotations

from typing import Any

from torch import nn

from rmtlib.cli.args import positive_counts
from rmtlib.errors import InputError, check_number
from rmtlib.runtime import get_device
from rmtlib.train.data import load_dataset, make_loader
from rmtlib.train.distributed import is_main_process, unwrap
from rmtlib.train.loops import evaluate, finetune


def add_finetune_arguments(parser: Any) -> None:
    """Add ``--finetune-epochs``, ``--finetune-lr``, ``--batch-size``, ``--train-subset`` to an argparse
    parser (used by ``rmtlib prune``, whose ``--data`` and ``--workers`` come from the shared data group)."""
    group = parser.add_argument_group("fine-tuning (needs --data)")
    group.add_argument("--finetune-epochs", type=int, default=0, help="epochs of masked fine-tuning after pruning")
    group.add_argument(
        "--finetune-lr", type=float, default=1e-4, help="AdamW learning rate of fine-tuning (cosine decay)"
    )
    group.add_argument("--batch-size", type=int, default=128, help="fine-tuning batch size")
    group.add_argument(
        "--train-subset",
        type=int,
        help="fine-tune on N training samples only (the first N; of an image folder, a seeded random N)",
    )


def check_finetune_arguments(args: Any) -> None:
    """The arguments of :func:`add_finetune_arguments`, checked before any pruning (InputError naming the flag)."""

    epochs = int(getattr(args, "finetune_epochs", 0) or 0)
    if epochs < 0:
        raise InputError(f"--finetune-epochs must be >= 0, got {epochs}")
    if epochs and not getattr(args, "data", None):
        raise InputError("--finetune-epochs needs --data (the training data to fine-tune on)")
    positive_counts(
        (getattr(args, "batch_size", None), "--batch-size"), (getattr(args, "train_subset", None), "--train-subset")
    )
    lr = getattr(args, "finetune_lr", None)
    if epochs and lr is not None:
        check_number("--finetune-lr", lr, minimum=0, exclusive=True)
    if getattr(args, "device", None) is not None:
        get_device(args.device)


def finetune_from_args(model: nn.Module, args: Any, dense_model: nn.Module | None = None) -> nn.Module:
    """The fine-tuning step of ``rmtlib prune``: with ``--data``, print top-1 of the dense model
    (when given), the pruned one and, after ``--finetune-epochs`` of masked fine-tuning, the
    fine-tuned one. Returns the model."""
    check_finetune_arguments(args)
    epochs = int(getattr(args, "finetune_epochs", 0) or 0)
    data = getattr(args, "data", None)
    if not data:
        return model

    device = getattr(args, "device", None)
    quiet = bool(getattr(args, "quiet", False))
    workers = int(getattr(args, "workers", 0) or 0)
    test = make_loader(load_dataset(data, "test", model=unwrap(model)), 500, num_workers=workers)
    lines = []
    if dense_model is not None:
        dense = evaluate(dense_model, test, device)["accuracy"]
        lines.append(f"top-1 dense {100 * dense:.2f}%")
    pruned = evaluate(model, test, device, progress=not quiet)["accuracy"]
    lines.append(f"pruned {100 * pruned:.2f}%")
    if epochs:
        train_set = load_dataset(data, "train", model=unwrap(model))
        loader = make_loader(
            train_set,
            getattr(args, "batch_size", 128),
            shuffle=True,
            seed=getattr(args, "seed", 0),
            subset=getattr(args, "train_subset", None),
            num_workers=workers,
        )
        finetune(
            model,
            loader,
            epochs,
            lr=getattr(args, "finetune_lr", 1e-4),
            device=device,
            seed=getattr(args, "seed", 0),
            progress=not quiet,
        )
        model.eval()
        tuned = evaluate(model, test, device)["accuracy"]
        lines.append(f"after {epochs} epoch(s) of fine-tuning {100 * tuned:.2f}%")
    if is_main_process():
        print(f"accuracy on {data} (test): " + ", ".join(lines))
    return model
