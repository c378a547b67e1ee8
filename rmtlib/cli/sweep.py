"""``rmtlib sweep MODEL --data SPEC``: the sparsity-accuracy comparison of chapter 5 on any model.

Prunes the model with several methods at several sparsities (each level from the dense model, or
in stages with ``--schedule gradual``), optionally fine-tunes each pruned model with its zeros
frozen, and measures top-1 with each pruned model's cross-entropy, KL divergence from the dense
model and certified fraction; with ``--reference LABEL`` every other run is tested against that
label's run at the same level on the same samples (McNemar's p-value, a bootstrap interval of the
top-1 difference). It prints a method-by-level table and writes the tidy table of
:func:`rmtlib.experiments.sweep.sweep` (``--out``), a figure (``--plot``) and the pruned models
(``--save-dir``). On ImageNet with a GPU, for example::

    rmtlib sweep vit_base_patch16_224 --checkpoint vit_b16.safetensors --data imagefolder:/data/imagenet \\
        --methods rmt,magnitude --levels 0.3,0.5,0.7 --schedule gradual --finetune-epochs 1 \\
        --device cuda --workers 8 --out sweep.csv --plot sweep.png

Under ``torchrun`` each process prunes, rank 0's model is given to all
(:func:`rmtlib.train.distributed.sync_from_rank0`), top-1 is measured on shards and fine-tuning is
data-parallel; only rank 0 prints and writes. Wanda and SparseGPT take ``--calibration DATA[:COUNT]``.

``--out`` is rewritten after every run; after an interruption, the same command with ``--resume``
does only the missing runs (a gradual sweep restarts from its last stage saved in ``--save-dir``)
and ends with the table an uninterrupted sweep writes (an existing ``--out`` is refused without
``--resume`` or ``--overwrite``, so a repeated command cannot replace hours of results). The
settings that shape the rows but have no column in the table (``--alpha``, ``--beta`` and
``--edge-centring`` as one ``fit_config``, ``--seed``, ``--option``, ``--set``, fine-tuning's learning
rate, batch size and subset, ...) are kept beside it in ``OUT.settings.json``; a resume with other
settings is refused. ``--out`` and ``--save-dir`` are a
:class:`~rmtlib.experiments.sweep_store.SweepStore`: the files, checks and resume of
``rmtlib.sweep(..., store=..., resume=True)``.

Bad input (an unknown method, a level outside [0, 1), an unwritable output, a ``--resume`` table
made with other settings) exits with code 2 before any pruning, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from rmtlib.atomic import atomic_path, write_or_rescue
from rmtlib.cli.args import (
    DATA,
    DEVICE,
    FIT,
    OUTPUT,
    add_command,
    build_model,
    calibration_spec,
    check_classes,
    check_figure_file,
    check_input_file,
    check_io,
    check_output_dir,
    check_output_file,
    fit_config_from_args,
    key_values,
    model_inputs,
    names,
    positive_counts,
    seed_value,
    sparsity_levels,
)
from rmtlib.errors import InputError, check_number
from rmtlib.experiments.sweep import SCHEDULES, resolve_methods, sweep
from rmtlib.experiments.sweep_store import SweepConfig, SweepStore, level_text, sweep_config
from rmtlib.nn.finite import check_finite_model
from rmtlib.nn.models import mnist_vit_config, recorded_kwargs
from rmtlib.plots.sweep import plot_sweep
from rmtlib.pruning import METHODS, PruneResult
from rmtlib.runtime import get_device
from rmtlib.train.data import check_model_input, load_dataset, make_loader
from rmtlib.train.distributed import init_distributed, is_main_process
from rmtlib.train.loops import seed_everything


def add_parser(sub: argparse._SubParsersAction) -> None:

    p = add_command(
        sub,
        "sweep",
        "compare pruning methods across sparsities (top-1, optional fine-tuning); needs --data",
        [DEVICE, FIT, DATA, OUTPUT],
    )
    p.add_argument("model", help="timm model name or project model (mnist_vit: the committed MNIST ViT, fc:784-256-10)")
    p.add_argument("--checkpoint", help="local weights to prune (safetensors or torch state dict)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model argument, e.g. depth=4 (repeatable)"
    )
    p.add_argument(
        "--methods",
        type=names,
        default=["rmt", "magnitude"],
        help="comma-separated methods or variant labels (default rmt,magnitude)",
    )
    p.add_argument(
        "--levels",
        type=sparsity_levels,
        default=[0.3, 0.5, 0.7],
        help="comma-separated target sparsities in [0, 1) (default 0.3,0.5,0.7)",
    )
    p.add_argument(
        "--schedule",
        choices=list(SCHEDULES),
        default="oneshot",
        help="oneshot: every level from the dense model; gradual: levels in increasing order, each "
        "pruning the previous level's (fine-tuned) model",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="LABEL.KEY=VALUE",
        help="option of one swept label, e.g. rmt.cycles=6; a label with a 'method' option is a variant: "
        "--methods rmt,global --option global.method=magnitude --option global.scope=global (repeatable)",
    )
    p.add_argument(
        "--calibration",
        type=calibration_spec,
        metavar="DATA[:COUNT]",
        help="where wanda/sparsegpt draw their calibration images: the training split of DATA, COUNT of them "
        "per calibration seed (COUNT overrides --calibration-samples; default: the training split of --data)",
    )
    p.add_argument(
        "--reference",
        metavar="LABEL",
        help="compare every other label with this one at each level (paired on the same samples: "
        "McNemar p-value, bootstrap interval of the top-1 difference), e.g. a global magnitude variant",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the interval (default 2000)")
    p.add_argument(
        "--calibration-seeds",
        type=seed_list,
        default=[0],
        help="comma-separated seeds: a method that needs calibration data runs once per seed, drawing "
        "its calibration inputs from the training split (default 0); the table reports the spread",
    )
    p.add_argument("--calibration-samples", type=int, default=128, help="calibration inputs per draw (default 128)")
    p.add_argument("--include", action="append", metavar="PATTERN", help="only layers matching (fnmatch; repeatable)")
    p.add_argument("--exclude", action="append", metavar="PATTERN", help="skip layers matching (repeatable)")
    p.add_argument(
        "--eval-split",
        default="test",
        choices=["train", "val", "test"],
        help="split measured for top-1 (default test; an image folder without test/ uses val/)",
    )
    p.add_argument("--eval-batches", type=int, help="measure top-1 on the first N batches only")
    p.add_argument("--eval-batch-size", type=int, default=500, help="evaluation batch size")
    p.add_argument("--finetune-epochs", type=int, default=0, help="epochs of masked fine-tuning after each pruning")
    p.add_argument("--finetune-steps", type=int, help="instead of epochs: this many optimizer steps of fine-tuning")
    p.add_argument("--finetune-lr", type=float, default=1e-4, help="AdamW learning rate of fine-tuning (cosine decay)")
    p.add_argument("--batch-size", type=int, default=128, help="fine-tuning batch size")
    p.add_argument(
        "--train-subset",
        type=int,
        help="fine-tune on N training samples only (the first N; of an image folder, a seeded random N)",
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of random pruning, fine-tuning order, random init")
    p.add_argument(
        "--out",
        help="write the table here (CSV, one row per method and level plus the dense model; "
        "rewritten after every run, so an interrupted sweep keeps its finished rows)",
    )
    p.add_argument("--plot", help="write the top-1 vs parameter-reduction figure here (.png, .pdf, .svg)")
    p.add_argument("--save-dir", help="write each pruned model here as LABEL_LEVEL.safetensors (with metadata)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --out and do only the missing ones (a gradual sweep restarts "
        "from its last finished stage, which needs --save-dir)",
    )
    p.set_defaults(func=run)


def method_options(items: list[str], labels: list[str]) -> dict[str, dict[str, Any]]:
    """``["rmt.cycles=6", "global.method=magnitude"]`` -> ``{"rmt": {"cycles": 6}, "global": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        head, sep, _ = item.partition("=")
        label, dot, key = head.partition(".")
        if not sep or not dot or not label or not key:
            raise InputError(f"--option expects LABEL.KEY=VALUE (e.g. rmt.cycles=6), got {item!r}")
        if label not in labels:
            raise InputError(f"--option {item!r}: {label!r} is not one of --methods {','.join(labels)}")
        out.setdefault(label, {}).update(key_values([item[len(label) + 1 :]], "--option"))
    return out


def seed_list(text: str) -> list[int]:
    """An argparse ``type``: comma-separated distinct integer seeds, e.g. ``0,1,2``."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,1,2, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, at least one, got {text!r}")
    return seeds


def level_summary(table: pd.DataFrame) -> str:
    """Method-by-level text table: reached sparsity and top-1 (pruned -> fine-tuned), then, when the
    table has a reference, each run's top-1 difference from it with its interval and p-value."""
    dense = table[table["method"] == "dense"].iloc[0]
    runs = table[table["method"] != "dense"]
    tuned = runs["top1_finetuned"].notna().any()
    lines = [
        f"dense top-1 {dense['top1_dense']:.2f}%  ({dense['params_dense']:,} parameters)",
        "top-1 % after pruning" + (" -> after fine-tuning" if tuned else "") + ", by target sparsity "
        "(reached sparsity in brackets):",
    ]
    levels = sorted(runs["target"].unique())
    width = 26 if tuned else 16
    lines.append(f"{'method':>16}" + "".join(f"{level_text(level):>{width}}" for level in levels))
    for method, group in runs.groupby("method", sort=False):
        cells = []
        for level in levels:
            row = group[group["target"] == level]
            if not len(row):
                cells.append(f"{'-':>{width}}")
                continue
            row = row.iloc[0]
            text = f"{row['top1_pruned']:.2f}" + (f" -> {row['top1_finetuned']:.2f}" if tuned else "")
            cells.append(f"{text} ({row['sparsity']:.2f})".rjust(width))
        lines.append(f"{method:>16}" + "".join(cells))
    if "p_value" in runs and runs["p_value"].notna().any():
        reference = runs["reference"].dropna().iloc[0]
        lines.append(f"top-1 minus {reference}'s, pp [95% bootstrap interval] (McNemar p), before fine-tuning:")
        for method, group in runs[runs["p_value"].notna()].groupby("method", sort=False):
            cells = []
            for level in levels:
                row = group[group["target"] == level]
                if not len(row):
                    cells.append(f"{'-':>30}")
                    continue
                row = row.iloc[0]
                interval = f"[{row['ci_low_pp']:+.2f}, {row['ci_high_pp']:+.2f}]"
                cells.append(f"{row['diff_pp']:+.2f} {interval} ({row['p_value']:.2g})".rjust(30))
            lines.append(f"{method:>16}" + "".join(cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:

    if not args.data:
        raise InputError("--data is required: the data top-1 is measured on (e.g. mnist, synthetic, imagefolder:DIR)")
    check_input_file(args.checkpoint, "--checkpoint")
    positive_counts(
        (args.eval_batches, "--eval-batches"),
        (args.finetune_steps, "--finetune-steps"),
        (args.train_subset, "--train-subset"),
        (args.batch_size, "--batch-size"),
        (args.eval_batch_size, "--eval-batch-size"),
    )
    if args.finetune_epochs < 0:
        raise InputError(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
    if len(set(args.methods)) != len(args.methods):
        raise InputError(f"--methods: each label once, got {','.join(args.methods)}")
    if len({level_text(level) for level in args.levels}) != len(args.levels):  # rows and files would collide
        raise InputError(f"--levels: each level once, got {','.join(map(str, args.levels))}")
    check_output_file(args.out, "--out")
    check_figure_file(args.plot, "--plot")  # x.txt crashed after the whole sweep
    check_output_dir(args.save_dir, "--save-dir")
    model_kwargs = key_values(args.set, "--set")
    pretrained = args.model == "mnist_vit" and not args.checkpoint and not model_kwargs
    store = (
        SweepStore(args.out, models=args.save_dir, context=_context(args), describe=_metadata(args, model_kwargs))
        if args.out or args.save_dir
        else None
    )
    models = (
        [store.model_path(label, level) for label in args.methods for level in args.levels] if args.save_dir else []
    )
    check_io(
        model_inputs(args.model, args.checkpoint, pretrained),
        [
            (args.out, "--out"),
            (args.plot, "--plot"),
            (str(store.settings_path) if args.out else None, "--out's settings record"),
            *((str(path), "--save-dir's model") for path in models),
        ],
        overwrite=args.overwrite or args.resume,  # a resume replaces the stage files of the runs it redoes
        data=args.data,
    )
    device = get_device(args.device)  # a missing GPU is an error now, not after the model and data are loaded
    check_number("--finetune-lr", args.finetune_lr, minimum=0, exclusive=True)
    positive_counts((args.n_boot, "--n-boot"), (args.calibration_samples, "--calibration-samples"))
    if args.reference is not None and args.reference not in args.methods:
        raise InputError(f"--reference {args.reference!r} is not one of --methods {','.join(args.methods)}")
    options = method_options(args.option, args.methods)
    prune_options = {
        "include": args.include,
        "exclude": args.exclude,
        "fit_config": fit_config_from_args(args),
    }
    try:  # the library's own check, before the model and data are loaded
        resolved = resolve_methods(args.methods, options, prune_options)
    except InputError as err:
        raise InputError(f"--methods/--option: {err}") from None
    needs_data = any(METHODS[method].needs_calibration for method, _ in resolved.values())
    if args.out and Path(args.out).exists() and not (args.resume or args.overwrite):  # hours of results
        raise InputError(f"--out: {args.out} exists; pass --resume to finish that sweep or --overwrite to start again")
    if args.resume and args.overwrite:
        raise InputError("--resume keeps the table and --overwrite replaces it: give one of them")
    calibration_samples = args.calibration_samples
    if needs_data and args.calibration is not None:  # another source than --data's training split, COUNT of it
        calibration_samples = args.calibration[1]
    if args.resume:  # the store's checks before the model and data are loaded (the sweep finds the same plan)
        if not args.out:
            raise InputError("--resume needs --out (the table of the interrupted sweep)")
        if not store.exists():
            print(f"note: --resume: {args.out} does not exist yet; starting from the beginning", file=sys.stderr)
        else:
            tuned = bool(args.finetune_epochs or args.finetune_steps)
            config = sweep_config(
                args.methods,
                args.levels,
                schedule=args.schedule,
                model_name=args.model,
                dataset=args.data,
                finetune=tuned,
                finetune_epochs=args.finetune_epochs,
                finetune_steps=args.finetune_steps,
                finetune_lr=args.finetune_lr,
                method_options=options,
                prune_options=prune_options,
                seed=args.seed,
                eval_batches=args.eval_batches,
                reference=args.reference,
                n_boot=args.n_boot,
                calibration_seeds=args.calibration_seeds,
                calibration_samples=calibration_samples,
                context=store.context,
            )
            _check_resume(store, config)
    init_distributed()  # under torchrun: sharded evaluation, DDP fine-tuning, rank 0 writes
    main_process = is_main_process()
    seed_everything(args.seed)  # a randomly initialised model is the same on every run
    model = build_model(args.model, args.checkpoint, pretrained=pretrained, **model_kwargs)
    if main_process and not args.checkpoint and not pretrained:
        print(
            f"note: no --checkpoint, so {args.model} is randomly initialised; its top-1 will be near chance",
            file=sys.stderr,
        )
    model.eval()
    check_finite_model(model, args.checkpoint or args.model)
    eval_set = load_dataset(args.data, args.eval_split, model=model)
    check_model_input(model, eval_set, args.data)
    check_classes(model, eval_set, args.data)
    eval_loader = make_loader(eval_set, args.eval_batch_size, num_workers=args.workers)
    finetune_loader, calibration_loader = None, None
    if args.finetune_epochs or args.finetune_steps or needs_data:
        train_set = load_dataset(args.data, "train", model=model)
        finetune_loader = make_loader(
            train_set, args.batch_size, shuffle=True, seed=args.seed, subset=args.train_subset, num_workers=args.workers
        )
        calibration_loader = finetune_loader if needs_data else None
        if not (args.finetune_epochs or args.finetune_steps):
            finetune_loader = None

    if needs_data and args.calibration is not None:  # another source than --data's training split
        calibration_loader = make_loader(load_dataset(args.calibration[0], "train", model=model), args.batch_size)
    if args.overwrite and args.out and main_process:  # the old table and its record go together, before the first row
        store.clear()
    common = dict(
        eval_loader=eval_loader,
        finetune_loader=finetune_loader,
        finetune_epochs=args.finetune_epochs,
        finetune_steps=args.finetune_steps,
        finetune_lr=args.finetune_lr,
        prune_options=prune_options,
        schedule=args.schedule,
        eval_batches=args.eval_batches,
        reference=args.reference,
        n_boot=args.n_boot,
        calibration_loader=calibration_loader,
        calibration_samples=calibration_samples,
        calibration_seeds=args.calibration_seeds,
        device=device,
        seed=args.seed,
        model_name=args.model,
        dataset=args.data,
        progress=not args.quiet and main_process,
    )
    # the store writes the table after each run, its settings record first (a table never lacks it), and
    # not before the sweep: a resume that the dense-model check refuses leaves the record as it was
    table = sweep(model, args.methods, args.levels, method_options=options, **common, store=store, resume=args.resume)
    if not main_process:
        return 0
    print(level_summary(table))
    if args.out:
        print(f"table written to {args.out} (settings in {store.settings_path})")
    if args.plot:
        matplotlib.use("Agg")

        tuned = table["top1_finetuned"].notna().any()
        ax = plot_sweep(
            table,
            value="top1_finetuned" if tuned else "top1_pruned",
            title=f"{args.model} on {args.data} ({args.schedule}{', fine-tuned' if tuned else ''})",
        )
        write_or_rescue(lambda path: _save_plot(ax.figure, path), args.plot, "--plot")
        plt.close(ax.figure)
        print(f"figure written to {args.plot}")
    return 0


def _save_plot(figure: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=150, bbox_inches="tight")


def _context(args: argparse.Namespace) -> dict[str, Any]:
    """What the store records beside the library's settings: the command's choices of model arguments,
    batch sizes, evaluation split and calibration source (``--calibration`` only when given, so older
    records still match)."""
    context = {
        "model_kwargs": key_values(args.set, "--set"),
        "batch_size": args.batch_size,
        "train_subset": args.train_subset,
        "eval_split": args.eval_split,
        "eval_batch_size": args.eval_batch_size,
    }
    if args.calibration is not None:
        context["calibration"] = f"{args.calibration[0]}:{args.calibration[1]}"
    return context


def _check_resume(store: SweepStore, config: SweepConfig) -> None:
    """The store's resume checks, as ``--resume`` errors; its warnings (a missing record) as notes."""
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            store.prepare(config, resume=True)
        except InputError as err:
            raise InputError(f"--resume: {err}") from None
    for note in notes:
        print(f"note: --resume: {note.message}", file=sys.stderr)


def _metadata(args: argparse.Namespace, model_kwargs: dict[str, Any]) -> Callable[[str, float, Any], dict[str, Any]]:
    """What each pruned model is saved in ``--save-dir`` with: what made it."""

    # the architecture the model was built with: --checkpoint's recorded keywords and --set on top
    architecture = recorded_kwargs(args.checkpoint, args.model, model_kwargs)

    def describe(label: str, level: float, result: PruneResult) -> dict[str, Any]:
        a = result.summary
        metadata = {
            "model": args.model,
            "model_kwargs": architecture,
            "source_checkpoint": args.checkpoint,
            "label": label,
            "method": a.method,
            "options": dict(a.options),
            "fit_config": fit_config_from_args(args).to_dict(),
            "include": args.include,
            "exclude": args.exclude,
            "sparsity_target": level,
            "sparsity_reached": a.reached_sparsity,
            "schedule": args.schedule,
            "finetune_epochs": args.finetune_epochs,
            "finetune_steps": args.finetune_steps,
            "data": args.data,
            "seed": args.seed,
        }
        if args.model == "mnist_vit":
            metadata["config"] = mnist_vit_config(args.checkpoint, model_kwargs)
        return metadata

    return describe
