"""``rmtlib schedule MODEL --sparsity S --data D [--strategy hybrid]``: cumulative pruning with fine-tuning.

Levels of ``--step`` (0.05, 0.10, ... up to S), each from the previous fine-tuned model: ``hybrid``
(global magnitude up to ``--switch``, SER after; the authors' 2026 schedule), ``ser``, or any
element-wise method of ``rmtlib prune`` (``magnitude`` is global). Prints one line per level (top-1 on
the test split with ``--evaluate``; none with ``--quiet``) and writes the table (``--report``) and the model
(``--out``). ``--workers`` loads the training and test data in that many processes.
"""

from __future__ import annotations

import argparse
import sys

from rmtlib.atomic import write_or_rescue
from rmtlib.cli.args import (
    DATA,
    DEVICE,
    FIT,
    OUTPUT,
    add_command,
    build_model,
    check_classes,
    check_input_file,
    check_io,
    check_output_file,
    fit_config_from_args,
    key_values,
    model_inputs,
    non_negative_int,
    seed_value,
    sparsity_level,
    write_csv_atomic,
)
from rmtlib.errors import InputError
from rmtlib.experiments.prune_restore import prune_schedule
from rmtlib.nn.checkpoints import save_checkpoint
from rmtlib.nn.finite import check_finite_model
from rmtlib.nn.models import mnist_vit_config, recorded_kwargs
from rmtlib.runtime import get_device
from rmtlib.train.data import check_model_input, load_dataset
from rmtlib.train.loops import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "schedule",
        "prune in cumulative levels with fine-tuning (hybrid magnitude-SER, ...)",
        [DEVICE, FIT, DATA, OUTPUT],
    )
    p.add_argument("model", help="timm model name or project model (mnist_vit: the committed weights, fc:784-256-10)")
    p.add_argument("--sparsity", type=sparsity_level, required=True, help="final target, reached in --step levels")
    p.add_argument("--strategy", default="hybrid", help="hybrid (default), ser, or an element-wise method name")
    p.add_argument("--step", type=float, default=0.05, help="level step (default 0.05); must divide --sparsity")
    p.add_argument("--switch", type=float, default=0.20, help="hybrid: last magnitude level (default 0.20)")
    p.add_argument("--finetune-steps", type=non_negative_int, default=20, help="AdamW steps after each level")
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--reservoir-steps", type=int, default=10, help="SER: Adam steps on the reservoir")
    p.add_argument("--reservoir-lr", type=float, default=1e-3)
    p.add_argument("--over", type=float, default=0.03, help="SER: over-prune to level + over, restore over")
    p.add_argument("--restore-weight", choices=("w", "inverse"), default="w", help="SER: |delta| * w_l or / w_l")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model argument (repeatable)")
    p.add_argument("--checkpoint", help="local weights to start from")
    p.add_argument("--evaluate", action="store_true", help="top-1 on the test split after every level")
    p.add_argument("--out", help="write the final model here (.safetensors)")
    p.add_argument("--report", help="write the per-level table here (CSV)")
    p.add_argument("--seed", type=seed_value, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_input_file(args.checkpoint, "--checkpoint")
    check_output_file(args.out, "--out")
    check_output_file(args.report, "--report")
    if not args.data:
        raise InputError("--data is required: the training data of the reservoir and the fine-tuning")
    options = key_values(args.option, "--option")
    model_kwargs = key_values(args.set, "--set")
    pretrained = args.model == "mnist_vit" and not args.checkpoint and not model_kwargs
    check_io(
        model_inputs(args.model, args.checkpoint, pretrained),
        [(args.out, "--out"), (args.report, "--report")],
        overwrite=args.overwrite,
        data=args.data,
    )
    device = get_device(args.device)
    fit_config = fit_config_from_args(args)
    seed_everything(args.seed)
    model = build_model(args.model, args.checkpoint, pretrained=pretrained, **model_kwargs)
    if not args.checkpoint and not pretrained:
        print(f"note: no --checkpoint, so {args.model} is randomly initialised", file=sys.stderr)
    model.eval()
    check_finite_model(model, args.checkpoint or args.model)
    test = load_dataset(args.data, "test", model=model)
    check_model_input(model, test, args.data)
    check_classes(model, test, args.data)
    train_set = load_dataset(args.data, "train", model=model)

    def show(level: float, _model, record: dict) -> None:  # the progress line of each level (none with --quiet)
        top1 = f", top-1 {100 * record['accuracy']:.2f}%" if "accuracy" in record else ""
        print(f"level {level:.4f} ({record['action']}): reached {record['reached_sparsity']:.4f}{top1}", flush=True)

    pruned, table = prune_schedule(
        model,
        args.sparsity,
        train_set,
        strategy=args.strategy,
        step=args.step,
        switch=args.switch,
        finetune_steps=args.finetune_steps,
        finetune_lr=args.finetune_lr,
        reservoir_steps=args.reservoir_steps,
        reservoir_lr=args.reservoir_lr,
        over=args.over,
        restore_weight=args.restore_weight,
        batch_size=args.batch_size,
        num_workers=args.workers,
        method_options=options or None,
        eval_data=test if args.evaluate else None,
        callback=None if args.quiet else show,
        fit_config=fit_config,
        seed=args.seed,
        device=device,
        inplace=True,
    )
    if args.out:
        metadata = {
            "model": args.model,
            "model_kwargs": recorded_kwargs(args.checkpoint, args.model, model_kwargs),
            "source_checkpoint": args.checkpoint,
            "method": f"schedule:{args.strategy}",
            "sparsity_target": args.sparsity,
            "sparsity_reached": float(table["reached_sparsity"].iloc[-1]),
            "options": options,
            "fit_config": fit_config.to_dict(),
            "seed": args.seed,
        }
        if args.model == "mnist_vit":
            metadata["config"] = mnist_vit_config(args.checkpoint, model_kwargs)
        write_or_rescue(lambda path: save_checkpoint(pruned, path, metadata), args.out, "--out")
        print(f"pruned model written to {args.out}")
    if args.report:
        rows = table.drop(columns=["correct"], errors="ignore")
        write_or_rescue(lambda path: write_csv_atomic(rows, path), args.report, "--report")
        print(f"per-level table written to {args.report}")
    return 0
