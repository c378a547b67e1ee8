"""Sparsity sweeps: prune a model with several methods at several levels, fine-tune, evaluate.

:func:`sweep` returns a tidy table (one row per method and level, plus the dense model) that the
ViT chapter, ``benchmarks/prune_quality.py`` and the tests read alike. Besides top-1 it scores each
pruned model sample by sample against the dense one (cross-entropy, KL divergence, the certified
fraction of :func:`rmtlib.train.evaluation.sample_metrics`) and, given a ``reference`` label, tests
its top-1 against the reference's on the same samples (McNemar's exact test and a paired bootstrap
interval, :mod:`rmtlib.experiments.paired`). The paper's ImageNet ViT numbers in the same columns
are :func:`rmtlib.experiments.paper_numbers.paper_vit_results`; :func:`rmtlib.plots.sweep.plot_sweep`
draws either kind as top-1 against parameter reduction.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from rmtlib.errors import InputError
from rmtlib.experiments.paired import compare, paired_bootstrap
from rmtlib.experiments.sweep_store import STATS_COLUMNS, SWEEP_COLUMNS, ResumePlan, SweepStore, sweep_config
from rmtlib.nn.count import count_macs, count_params
from rmtlib.pruning import METHODS, PruneResult, check_method_options, prune
from rmtlib.pruning.calibration import draw_calibration
from rmtlib.runtime import get_device
from rmtlib.spectral.fit import fit_mp
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig
from rmtlib.spectral.layers import prunable_layers, weight_matrix
from rmtlib.train.distributed import is_main_process, sync_from_rank0
from rmtlib.train.evaluation import Predictions, predict, sample_metrics
from rmtlib.train.loops import evaluate, finetune, reseed_loader
from rmtlib.train.regularize import WeightMask

__all__ = [
    "SWEEP_COLUMNS",
    "STATS_COLUMNS",
    "DEFAULT_METHODS",
    "sweep",
    "resolve_methods",
    "level_table",
    "default_esd_layers",
    "layer_spectra",
]

#: The methods compared in the book: the paper's method, its factorized variant and three baselines.
DEFAULT_METHODS: tuple[str, ...] = ("rmt", "rmt_lowrank", "magnitude", "svd", "random")

#: How the levels of a sweep are reached: each from the dense model, or in stages from the last one.
SCHEDULES: tuple[str, ...] = ("oneshot", "gradual")

Callback = Callable[[str, float, nn.Module, pd.DataFrame], None]


def _top1(model: nn.Module, loader: DataLoader, device: Any, max_batches: int | None, seed: int = 0) -> float:
    """Top-1 in % on ``loader``, which draws the same batches on every call, even when it shuffles.

    With ``max_batches`` a shuffling loader would otherwise measure the dense model and each pruned
    one on a different subset. Its generator (or the global RNG it draws from) is set to ``seed``
    for the evaluation only; the global RNG state is restored afterwards.
    """

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reseed_loader(loader, seed)
        return 100.0 * evaluate(model, loader, device, max_batches=max_batches)["accuracy"]


def _predict(model: nn.Module, loader: DataLoader, device: Any, max_batches: int | None, seed: int = 0) -> Predictions:
    """Every sample's logits on the batches :func:`_top1` measures (the same seeding, the same samples)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reseed_loader(loader, seed)
        return predict(model, loader, device, max_batches=max_batches)


def _example_input(loader: DataLoader, device: Any) -> torch.Tensor:

    x, _ = next(iter(loader))
    return x[:1].to(get_device(device))


def sweep(
    model: nn.Module,
    methods: Sequence[str] = DEFAULT_METHODS,
    levels: Sequence[float] = (0.3, 0.5, 0.7),
    *,
    eval_loader: DataLoader,
    finetune_loader: DataLoader | None = None,
    finetune_epochs: int = 0,
    finetune_steps: int | None = None,
    finetune_lr: float = 1e-4,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    prune_options: Mapping[str, Any] | None = None,
    schedule: str = "oneshot",
    eval_batches: int | None = None,
    reference: str | None = None,
    n_boot: int = 2000,
    ci_level: float = 0.95,
    calibration_loader: DataLoader | None = None,
    calibration_samples: int = 128,
    calibration_seeds: Sequence[int] = (0,),
    dense_model: nn.Module | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    model_name: str = "",
    dataset: str = "",
    callback: Callback | None = None,
    on_update: Callable[[pd.DataFrame], None] | None = None,
    progress: bool = False,
    store: SweepStore | str | os.PathLike | None = None,
    resume: bool = False,
) -> pd.DataFrame:
    """Prune a fresh copy of ``model`` per (method, level); optionally fine-tune; evaluate top-1.

    ``model``'s weights are never changed, but it is moved to ``device`` and put in eval mode.

    Args:
        levels: target sparsities (1 - nonzero / dense parameters of the whole model).
        eval_loader: top-1 is measured on it (the first ``eval_batches`` batches when given); a
            shuffling loader is reseeded with ``seed`` before every evaluation, so the dense and
            every pruned model are measured on the same batches.
        finetune_loader: data for fine-tuning with the zero mask frozen
            (:func:`rmtlib.train.loops.finetune`): ``finetune_epochs`` epochs, or, with
            ``finetune_steps``, that many optimizer steps (one partial epoch).
        methods: method names, or labels of variants defined in ``method_options`` by a ``method``
            key (``{"global": {"method": "magnitude", "scope": "global"}}``); rows carry the label.
        method_options: per-method keywords for :func:`rmtlib.prune` (e.g. ``{"rmt": {"rho": 0.08}}``);
        prune_options: keywords for every method (``include``, ``exclude``, ``fit_config``;
            ``fit`` defaults to False: methods that need no MP fit skip it).
        schedule: ``"oneshot"`` prunes a fresh copy of ``model`` for every level; ``"gradual"``
            visits the levels in increasing order and prunes, at each level, the model the
            previous level left (after its fine-tuning), so pruned weights stay pruned and
            fine-tuning accumulates over the stages: prune-then-fine-tune cycles, as in the
            authors' re-run with one fine-tuning epoch per cycle.
        reference: a swept label; every other run at a level is compared with the reference's run
            at that level on the same samples (its rows come first, as it runs first).
        n_boot, ci_level: bootstrap resamples and level of the interval (seeded with ``seed``).
        calibration_loader: inputs for methods registered with ``needs_calibration``: each gets
            ``calibration_samples`` inputs drawn with every seed of ``calibration_seeds``.
        dense_model: the model the per-sample statistics compare with (default ``model``): a
            resumed gradual sweep prunes a saved stage but still compares with the dense model.
        callback: called as ``callback(method, target, pruned_model, result)`` after each run (``result``:
            the :class:`rmtlib.PruneResult`, whose model is ``pruned_model``, fine-tuned when asked).
        on_update: called with the table so far (dense row included) after each run, e.g. to
            save the finished rows of a long sweep as it goes.
        store: where the table is written after every run, with the settings it was made with
            (:class:`~rmtlib.experiments.sweep_store.SweepStore`; a folder path means
            ``SweepStore.folder(path)``, which also saves every pruned model); an existing table is
            refused unless ``resume``. Under torchrun only rank 0 writes.
        resume: keep the runs the store already holds and do only the missing ones (a gradual label
            restarts from its last saved stage); a store made with other settings or another dense
            model is refused (:class:`InputError` naming the file and the setting). The table returned
            and written is the one an uninterrupted sweep gives.

    Returns one row per run plus a ``method="dense"`` row, columns :data:`SWEEP_COLUMNS`:
    ``sparsity`` is the reached 1 - nonzero / dense, ``stored_reduction`` 1 - stored / dense
    (what low-rank factors really save), top-1 values in %, ``top1_finetuned`` NaN without
    fine-tuning, ``macs`` multiply-adds of one sample (unstructured zeros do not lower them).
    The statistics describe the pruned model before fine-tuning: mean cross-entropy ``ce`` and
    ``kl_to_dense`` (nats), ``certified`` (fraction of samples whose label provably did not flip),
    ``drop_low_pp``/``drop_high_pp`` (bootstrap interval of the drop from dense, pp),
    ``diff_pp`` (top-1 minus the reference's, pp) with its interval ``ci_low_pp``/``ci_high_pp``
    and McNemar's ``p_value`` (NaN without a reference, and for the reference itself). A method
    run with several calibration seeds reports the first seed's model in its row (the one
    fine-tuned, passed to ``callback`` and compared) and the spread of top-1 over all seeds in
    ``top1_seed_min``/``top1_seed_max``; ``calibration_seeds`` counts them (0: data-free).
    """

    if resume and store is None:
        raise InputError("sweep: resume=True needs the store of the sweep to finish (store=FOLDER or a SweepStore)")
    if store is not None:  # the same sweep, written run by run; every other argument passes on as given
        arguments = {k: v for k, v in locals().items() if k not in ("model", "methods", "levels", "store", "resume")}
        return _stored_sweep(SweepStore.open(store), resume, model, list(methods), list(levels), arguments)
    runs = resolve_methods(methods, method_options, prune_options)
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 <= float(level) < 1.0:
            raise InputError(f"sweep: every level must be a sparsity in [0, 1), got {level!r}")
    if schedule not in SCHEDULES:
        raise InputError(f"sweep: schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "gradual":
        if len(set(levels)) != len(levels):
            raise InputError(f"sweep: a gradual schedule needs distinct levels, got {list(levels)}")
        levels = sorted(float(level) for level in levels)
    if reference is not None and reference not in runs:
        raise InputError(f"sweep: reference {reference!r} is not one of the swept labels {list(runs)}")
    seeds = [int(s) for s in calibration_seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(
            f"sweep: calibration_seeds must be distinct seeds, at least one, got {list(calibration_seeds)}"
        )
    calibrated = [label for label, (method, _) in runs.items() if METHODS[method].needs_calibration]
    if calibrated and calibration_loader is None:
        raise InputError(f"sweep: {calibrated} need calibration data; pass calibration_loader")
    do_finetune = finetune_loader is not None and (finetune_epochs > 0 or (finetune_steps or 0) > 0)
    if finetune_loader is None and (finetune_epochs > 0 or finetune_steps):
        raise InputError("sweep: fine-tuning asked for (finetune_epochs/finetune_steps) but no finetune_loader given")
    if finetune_loader is not None and finetune_steps and finetune_steps > len(finetune_loader):
        raise InputError(
            f"sweep: finetune_steps={finetune_steps} is more than one pass over the fine-tuning data "
            f"({len(finetune_loader)} batches); use finetune_epochs, or more data"
        )
    if reference is not None:  # the reference runs first, so every other run can be compared as it finishes
        runs = {reference: runs[reference], **{k: v for k, v in runs.items() if k != reference}}
    dev = get_device(device)
    model = model.to(dev).eval()
    example = _example_input(eval_loader, dev)
    dense_counts = count_params(model)
    dense_macs = count_macs(model, example)
    dense_pred = _predict(
        model if dense_model is None else dense_model.to(dev).eval(), eval_loader, dev, eval_batches, seed
    )
    dense_stats = sample_metrics(dense_pred, dense_pred)
    dense_top1 = 100.0 * float(dense_stats["correct"].mean())
    ft_epochs = 0 if not do_finetune else (1 if finetune_steps else int(finetune_epochs))
    ft_steps = int(finetune_steps) if do_finetune and finetune_steps else None
    base = dict(
        params_dense=dense_counts["dense"],
        top1_dense=dense_top1,
        macs_dense=dense_macs,
        model=model_name,
        dataset=dataset,
        source="measured",
        schedule=schedule,
        reference=reference,
    )
    rows = [
        dict(
            base,
            method="dense",
            target=0.0,
            sparsity=1.0 - dense_counts["nonzero"] / dense_counts["dense"],
            stored_reduction=1.0 - dense_counts["stored"] / dense_counts["dense"],
            params_stored=dense_counts["stored"],
            params_nonzero=dense_counts["nonzero"],
            top1_pruned=dense_top1,
            top1_finetuned=np.nan,
            finetune_epochs=0,
            finetune_steps=None,
            macs=dense_macs,
            prune_s=0.0,
            finetune_s=0.0,
            **_stats_row(dense_stats),
            calibration_seeds=0,
        )
    ]
    reference_correct: dict[float, np.ndarray] = {}
    for label, (method, options) in runs.items():
        stage = model  # what the next level prunes: always the dense model, unless gradual
        label_seeds = seeds if label in calibrated else [None]
        for level in levels:
            outcomes = []
            for calib_seed in label_seeds:
                extra = (
                    {}
                    if calib_seed is None
                    else {"calibration": draw_calibration(calibration_loader.dataset, calibration_samples, calib_seed)}
                )
                start = time.perf_counter()
                # an N:M pattern fixes each layer's sparsity itself: the level is then the pattern's, as a label
                target = None if options.get("pattern") is not None else float(level)
                result = prune(stage, method, sparsity=target, seed=seed, device=dev, **options, **extra)
                pruned = result.model
                prune_s = time.perf_counter() - start
                pruned = pruned.to(dev).eval()
                sync_from_rank0(pruned, f"sweep: {label} at {level}")
                stats = sample_metrics(_predict(pruned, eval_loader, dev, eval_batches, seed), dense_pred)
                # only the first seed's model goes on (fine-tuning, callback, next stage)
                outcomes.append((pruned, result, prune_s, stats) if not outcomes else (None, None, prune_s, stats))
                del pruned, result
            pruned, result, prune_s, stats = outcomes[0]
            seed_top1 = [100.0 * float(o[3]["correct"].mean()) for o in outcomes]
            counts = count_params(pruned)
            row = dict(
                base,
                method=label,
                target=float(level),
                sparsity=1.0 - counts["nonzero"] / dense_counts["dense"],
                stored_reduction=1.0 - counts["stored"] / dense_counts["dense"],
                params_stored=counts["stored"],
                params_nonzero=counts["nonzero"],
                top1_pruned=seed_top1[0],
                macs=count_macs(pruned, example),
                prune_s=prune_s,
                finetune_epochs=ft_epochs,
                finetune_steps=ft_steps,
                **_stats_row(stats),
                **_drop_interval(dense_stats["correct"], stats["correct"], n_boot, ci_level, seed),
                calibration_seeds=0 if label_seeds == [None] else len(label_seeds),
                top1_seed_min=min(seed_top1) if len(seed_top1) > 1 else np.nan,
                top1_seed_max=max(seed_top1) if len(seed_top1) > 1 else np.nan,
            )
            if label == reference:
                reference_correct[float(level)] = stats["correct"]
            elif reference is not None:
                paired = compare(
                    stats["correct"], reference_correct[float(level)], n_boot=n_boot, level=ci_level, seed=seed
                )
                row.update(
                    diff_pp=paired["diff_pp"],
                    ci_low_pp=paired["ci_low"],
                    ci_high_pp=paired["ci_high"],
                    p_value=paired["p_value"],
                )
            del outcomes
            if do_finetune:
                mask = WeightMask.from_zeros(pruned)
                start = time.perf_counter()
                finetune(
                    pruned,
                    finetune_loader,
                    ft_epochs,
                    lr=finetune_lr,
                    mask=mask,
                    device=dev,
                    seed=seed,
                    progress=progress,
                    max_steps_per_epoch=ft_steps,
                )
                row["finetune_s"] = time.perf_counter() - start
                pruned.eval()
                row["top1_finetuned"] = _top1(pruned, eval_loader, dev, eval_batches, seed)
                _check_mask_held(pruned, mask, label, level)
            else:
                row.update(top1_finetuned=np.nan, finetune_s=0.0)
            if callback is not None:
                callback(label, float(level), pruned, result)
            rows.append(row)
            if on_update is not None:
                on_update(pd.DataFrame(rows, columns=SWEEP_COLUMNS))
            if schedule == "gradual":
                stage = pruned
            if progress:
                print(
                    f"{label:>12} @ {level:.2f}: sparsity {row['sparsity']:.3f}, top-1 {row['top1_pruned']:.2f}%"
                    + (f" -> {row['top1_finetuned']:.2f}% fine-tuned" if do_finetune else "")
                    + (
                        f", {row['diff_pp']:+.2f} pp vs {reference} (p = {row['p_value']:.2g})"
                        if "p_value" in row
                        else ""
                    ),
                    flush=True,
                )
            del pruned
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def _stored_sweep(
    store: SweepStore, resume: bool, model: nn.Module, methods: list[str], levels: list[float], kw: dict[str, Any]
) -> pd.DataFrame:
    """:func:`sweep` writing its table (and models) to ``store`` as it goes, or finishing what it holds."""
    runs = resolve_methods(methods, kw["method_options"], kw["prune_options"])  # bad options before any file
    tuned = kw["finetune_loader"] is not None and (kw["finetune_epochs"] > 0 or (kw["finetune_steps"] or 0) > 0)
    config = sweep_config(
        methods,
        levels,
        schedule=kw["schedule"],
        model_name=kw["model_name"],
        dataset=kw["dataset"],
        finetune=tuned,
        finetune_epochs=kw["finetune_epochs"],
        finetune_steps=kw["finetune_steps"],
        finetune_lr=kw["finetune_lr"],
        method_options=kw["method_options"],
        prune_options=kw["prune_options"],
        seed=kw["seed"],
        eval_batches=kw["eval_batches"],
        reference=kw["reference"],
        n_boot=kw["n_boot"],
        calibration_seeds=kw["calibration_seeds"],
        calibration_samples=kw["calibration_samples"],
        context=store.context,
    )
    writer = is_main_process()  # under torchrun rank 0 writes the store; every process reads what it resumes
    plan = store.prepare(config, resume=resume) if resume or writer else ResumePlan(None, {}, {})
    # the record keeps the options of labels this call does not sweep (their rows stay in the table)
    settings = {**config.settings, "options": {**plan.options, **config.settings["options"]}}
    user_update, user_callback = kw["on_update"], kw["callback"]

    def write(table: pd.DataFrame) -> None:
        if writer:
            store.write(table, settings)
        if user_update is not None:
            user_update(table)

    def save(label: str, level: float, pruned: nn.Module, result: PruneResult) -> None:
        if writer and store.models is not None:
            store.save_model(label, level, pruned, _model_metadata(store, runs, label, level, result, kw))
        if user_callback is not None:
            user_callback(label, level, pruned, result)

    kw = {**kw, "on_update": write, "callback": save}
    if plan.previous is None:
        table = sweep(model, methods, levels, **kw)
    else:
        table = _resume(store, plan, model, methods, levels, kw)
    if writer:
        store.write(table, settings)
    return table


def _model_metadata(
    store: SweepStore, runs: Mapping[str, tuple[str, dict]], label: str, level: float, result: PruneResult, kw: dict
) -> dict[str, Any]:
    """What a saved model records: the store's ``describe``, or how the sweep made it."""
    if store.describe is not None:
        return dict(store.describe(label, level, result))
    method, options = runs[label]
    options = {k: v.to_dict() if isinstance(v, FitConfig) else v for k, v in options.items()}  # fit_config: a dict
    metadata = dict(label=label, method=method, options=options, sparsity_target=level, schedule=kw["schedule"])
    return json.loads(json.dumps({**metadata, "seed": kw["seed"]}, default=str))


def _run_order(methods: Sequence[str], reference: str | None) -> list[str]:
    """The order a sweep runs its labels in: the reference first."""
    return list(methods) if reference is None else [reference, *(m for m in methods if m != reference)]


def _resume(
    store: SweepStore, plan: ResumePlan, model: nn.Module, methods: list[str], levels: list[float], kw: dict
) -> pd.DataFrame:
    """Run what ``plan`` says is missing, one label at a time, appending to the rows the store holds.

    A gradual label restarts from its saved stage; its rows keep the dense model's reference
    columns (top-1, parameters, MACs), so the table is the one an uninterrupted sweep writes. A
    one-shot label is compared with the reference's run at its level: that is pruned again beside it.
    """
    dense_model = model if kw["dense_model"] is None else kw["dense_model"]
    top1 = _top1(dense_model, kw["eval_loader"], get_device(kw["device"]), kw["eval_batches"], kw["seed"])
    store.check_dense_model(plan.previous, count_params(model)["dense"], top1)
    dense = plan.previous[plan.previous["method"] == "dense"].iloc[0]
    reference, options = kw["reference"], kw["method_options"] or {}
    rows = plan.previous
    order = _run_order(methods, reference)
    for label, (start, todo) in sorted(plan.todo.items(), key=lambda item: order.index(item[0])):
        stage = model if start is None else store.load_model(label, start, like=model).eval()

        def finished(so_far: pd.DataFrame, before: pd.DataFrame = rows, label: str = label) -> pd.DataFrame:
            new = so_far[so_far["method"] == label].copy()  # not a reference re-run only to compare with
            for column in ("top1_dense", "params_dense", "macs_dense"):
                new[column] = dense[column]
            new["sparsity"] = 1.0 - new["params_nonzero"] / dense["params_dense"]
            new["stored_reduction"] = 1.0 - new["params_stored"] / dense["params_dense"]
            return pd.concat([before, new], ignore_index=True)

        def callback(run: str, level: float, pruned: nn.Module, result: PruneResult, label: str = label) -> None:
            if run == label:  # the reference's re-run was saved (and reported) when it first ran
                kw["callback"](run, level, pruned, result)

        labels = [label] if reference in (None, label) else [reference, label]
        part = sweep(
            stage,
            labels,
            todo,
            **{
                **kw,
                "method_options": {lb: options[lb] for lb in labels if lb in options} or None,
                "dense_model": dense_model,
                "on_update": lambda so_far, finished=finished: kw["on_update"](finished(so_far)),
                "callback": callback,
            },
        )
        rows = finished(part)
    # the row order of an uninterrupted sweep: dense, then label by label, levels in the order run
    labels = {label: i for i, label in enumerate(["dense", *order])}
    ranks = {round(level, 9): i for i, level in enumerate(sorted(levels) if kw["schedule"] == "gradual" else levels)}
    keys = pd.DataFrame(
        {
            "label": rows["method"].map(lambda m: labels.get(m, len(labels))),
            "level": rows["target"].map(lambda t: ranks.get(round(float(t), 9), len(ranks))),
        }
    )
    return rows.loc[keys.sort_values(["label", "level"], kind="stable").index].reset_index(drop=True)


def _drop_interval(dense: np.ndarray, pruned: np.ndarray, n_boot: int, level: float, seed: int) -> dict[str, float]:
    """The paired bootstrap interval of the drop from dense (dense minus pruned top-1, pp)."""
    _, low, high = paired_bootstrap(dense, pruned, n_boot=n_boot, level=level, seed=seed)
    return {"drop_low_pp": 100 * low, "drop_high_pp": 100 * high}


def _stats_row(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The table's means of :func:`sample_metrics`' per-sample values."""
    return {
        "ce": float(stats["ce"].mean()),
        "kl_to_dense": float(stats["kl_to_dense"].mean()),
        "certified": float(stats["certified"].mean()),
    }


_SET_BY_SWEEP = frozenset({"sparsity", "seed", "device", "inplace"})  # prune() keywords the sweep decides


def resolve_methods(
    methods: Sequence[str],
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    prune_options: Mapping[str, Any] | None = None,
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each swept label -> (method, keywords for :func:`rmtlib.prune`), checked before any work.

    Raises :class:`InputError` for an unknown method or variant, ``method_options`` for a label
    that is not swept, or an option a method does not take. ``fit`` defaults to False.
    """

    method_options = dict(method_options or {})
    runs = {label: _variant(label, method_options) for label in methods}
    unknown = [label for label, (method, _) in runs.items() if method not in METHODS]
    if unknown:
        raise InputError(
            f"sweep: unknown method(s) {unknown}; choose from {sorted(METHODS)}, or name a variant "
            "in method_options with a 'method' key (e.g. {'global': {'method': 'magnitude', 'scope': 'global'}})"
        )
    extra_methods = set(method_options) - set(methods)
    if extra_methods:
        raise InputError(f"sweep: method_options for methods not swept: {sorted(extra_methods)}")
    resolved = {}
    for label, (method, variant_options) in runs.items():
        options = {"fit": False, **dict(prune_options or {}), **variant_options}
        reserved = sorted(set(options) & _SET_BY_SWEEP)
        if reserved:
            raise InputError(
                f"sweep: {label!r}: {reserved} are set by the sweep itself (the level, copies "
                "of the model, sweep(seed=, device=)); remove them from prune_options/method_options"
            )
        try:
            # every run has a level, which is the sparsity target unless an N:M pattern sets it
            check_method_options(method, options, with_sparsity=options.get("pattern") is None)
        except InputError as err:
            raise InputError(f"sweep: {label!r}: {err}") from None
        resolved[label] = (method, options)
    return resolved


def _variant(label: str, method_options: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(method, options) of a swept label: a method name, or a variant whose options name its ``method``."""
    options = dict(method_options.get(label, {}))
    method = options.pop("method", label)
    if not isinstance(method, str):
        raise InputError(f"sweep: method_options[{label!r}]['method'] must be a method name, got {method!r}")
    return method, options


def _check_mask_held(model: nn.Module, mask: Any, method: str, level: float) -> None:
    """Fail loudly if fine-tuning moved a pruned weight off zero (the mask must hold them)."""
    params = dict(model.named_parameters())
    for name, keep in mask.masks.items():
        revived = int((params[name].detach()[~keep.to(params[name].device)] != 0).sum())
        if revived:
            raise RuntimeError(f"sweep: fine-tuning {method} at {level} revived {revived} pruned weights of {name}")


# (model, dense top-1, [(reduction %, top-1), ...], fine-tuned?, how it was pruned) -- METHOD.md section 6
def _percent(level: float) -> str:
    """A level as a percent column name: ``30%``, or every digit (``12.5%``) when it is not a whole percent,
    so two levels never share a column."""
    text = f"{level:.0%}"
    return text if float(text[:-1]) == round(100.0 * float(level), 10) else f"{100.0 * float(level):.10g}%"


def level_table(results: pd.DataFrame, value: str = "top1_pruned") -> pd.DataFrame:
    """``value`` per method (rows) and target level (columns), the dense model's as a column.

    One sweep's table: rows of several models, or two rows of one (method, level) (sweeps
    concatenated), raise InputError instead of being averaged into one cell."""
    models = results["model"].dropna().unique() if "model" in results else []
    if len(models) > 1:
        raise InputError(
            f"level_table: the results hold {len(models)} models ({', '.join(map(str, models))}); pass one model's rows"
        )
    runs = results[results["method"] != "dense"]
    repeated = runs.groupby(["method", "target"], sort=False).size()
    if (repeated > 1).any():
        (method, level), times = next((key, n) for key, n in repeated.items() if n > 1)
        raise InputError(
            f"level_table: {method} at level {level:g} appears {times} times "
            "(several sweeps in one table?); pass one sweep's rows"
        )
    table = runs.pivot_table(index="method", columns="target", values=value, sort=False)
    table.columns = [_percent(c) for c in table.columns]
    dense = results.loc[results["method"] == "dense", "top1_dense"]
    if len(dense):
        table.insert(0, "dense", float(dense.iloc[0]))
    return table


def default_esd_layers(model: nn.Module, count: int = 3) -> list[str]:
    """A few representative layers: the first attention qkv, a middle MLP fc1 and the last MLP fc2
    of a ViT; otherwise the first, middle and last prunable layers."""

    names = [n for n, _ in prunable_layers(model)]
    if not names:
        raise InputError(f"model {type(model).__name__} has no prunable layers")
    qkv = [n for n in names if n.endswith("attn.qkv")]
    fc1 = [n for n in names if n.endswith("mlp.fc1")]
    fc2 = [n for n in names if n.endswith("mlp.fc2")]
    if qkv and fc1 and fc2:
        return [qkv[0], fc1[len(fc1) // 2], fc2[-1]][:count]
    picks = [names[0], names[len(names) // 2], names[-1]]
    return list(dict.fromkeys(picks))[:count]


def layer_spectra(
    model: nn.Module, layers: Sequence[str], *, fit_config: FitConfig = DEFAULT_FIT_CONFIG
) -> dict[str, Any]:
    """{layer: MPFit or None} for the named layers (a low-rank layer is read through its product
    matrix), fitted with ``fit_config``; None when the MP fit is impossible, e.g. a matrix of very low rank."""

    out: dict[str, Any] = {}
    for name in layers:
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise InputError(f"layer {name!r} is not in the model") from err
        matrix = weight_matrix(module)  # a FactoredLayer gives its effective matrix
        try:
            out[name] = fit_mp(matrix.detach().float().cpu(), fit_config=fit_config, name=name)
        except InputError:
            out[name] = None
    return out
