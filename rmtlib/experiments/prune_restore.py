"""SER (prune-restore) and the hybrid magnitude-SER schedule: the authors' 2026 method with data
(METHOD.md section 7). It trains, so it sits above :mod:`rmtlib.pruning` and :mod:`rmtlib.train`.

SER, one step to target sparsity s: over-prune by the SEB score (:mod:`rmtlib.pruning.seb`, layer
weights w_l of the target s) to s + ``over``; the entries this step zeroed form the reservoir. They
start at zero (pruned) and are trained alone, every other parameter frozen (kept weights, biases,
norms, tokens), for ``reservoir_steps`` Adam steps; |delta| of an entry is then its trained value.
The reservoir entries with the largest |delta| * w_l (``restore_weight="inverse"``: |delta| / w_l)
are restored with their trained value until exactly s is met, the rest go back to zero; then the
mask is frozen and the model fine-tuned for ``finetune_steps`` (W <- W * M every step).

The authors over-prune 8 points and restore 3 per 5-point step: here the step prunes from the
previous level to s + ``over`` (0.05 + 0.03 = 0.08) and restores ``over`` (rho * s = s + over,
rho = 1 + over / s).

Budgets: the authors train the reservoir one ImageNet epoch and fine-tune one epoch per step
(about 10k steps of batch 128 each). The defaults here are ``reservoir_steps=10`` (Adam, lr 1e-3:
entries starting at zero need a few steps to reach a weight's scale) and ``finetune_steps=20``
(AdamW, lr 1e-4) of batch 128, about 1/40 and 1/20 of an MNIST epoch: a 16-level schedule to 80%
on the MNIST ViT took 12 minutes of wall time on the shared 2-core CPU, three schedules running at
once beside other jobs (``benchmarks/results/hybrid_ft20``).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rmtlib.errors import InputError, check_number
from rmtlib.nn.count import count_params
from rmtlib.pruning import prune
from rmtlib.pruning.common import Unit, check_stored_weights, elementwise_units, fit_units, smallest_mask, write_back
from rmtlib.pruning.core import check_method_options
from rmtlib.pruning.registry import METHODS
from rmtlib.pruning.seb import check_seb_options, seb_cut, seb_layer_weights
from rmtlib.runtime import get_device
from rmtlib.spectral.fit import MPFit
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.train.data import make_loader
from rmtlib.train.loops import finetune, train
from rmtlib.train.regularize import WeightMask

__all__ = [
    "RESTORE_WEIGHTS",
    "STRATEGIES",
    "ReservoirFreeze",
    "prune_restore",
    "select_restore",
    "schedule_levels",
    "prune_schedule",
    "per_sample_correct",
]

RESTORE_WEIGHTS = ("w", "inverse")
#: schedule strategies besides any registered element-wise method (``magnitude`` runs with scope global)
STRATEGIES = ("hybrid", "ser")


class ReservoirFreeze:
    """Train only masked entries: their gradients pass, every other entry of the weight is held at its
    value at creation. Duck-types :class:`rmtlib.train.regularize.WeightMask` for
    :func:`rmtlib.train.loops.train` (``zero_grads`` after backward, ``apply`` after each step)."""

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        self.masks = {name: m.detach().bool().to(params[name].device) for name, m in masks.items()}
        self.frozen = {name: params[name].detach().clone() for name in masks}

    def _pairs(self, model: nn.Module):
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            p = params[name]
            if mask.device != p.device:
                self.masks[name] = mask = mask.to(p.device)
                self.frozen[name] = self.frozen[name].to(p.device)
            yield name, p, mask

    @torch.no_grad()
    def zero_grads(self, model: nn.Module) -> None:
        for _, p, mask in self._pairs(model):
            if p.grad is not None:
                p.grad.masked_fill_(~mask, 0.0)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        for name, p, mask in self._pairs(model):
            p.copy_(torch.where(mask, p, self.frozen[name]))


def _steps(steps: int, loader: DataLoader) -> tuple[int, int]:
    """(epochs, steps per epoch) giving about ``steps`` optimizer steps over ``loader``."""
    if steps <= 0:
        return 0, 0
    epochs = math.ceil(steps / len(loader))
    return epochs, math.ceil(steps / epochs)


def _param_names(model: nn.Module, units: Sequence[Unit]) -> list[str]:
    names = {id(p): name for name, p in model.named_parameters()}
    out = []
    for unit in units:
        weight = unit.module._parameters["weight"]
        if unit.matrix.numel() != weight.numel():  # a part of a fused weight (split q/k/v)
            raise InputError(f"layer {unit.name}: SER prunes whole weights; a part of one is not supported")
        out.append(names[id(weight)])
    return out


def _check_budgets(where: str, **values: Any) -> None:
    for key, value in values.items():
        if key.endswith("_lr"):
            check_number(f"{where}: {key}", value, minimum=0, exclusive=True)
        elif key == "reservoir_steps" or key == "batch_size":
            check_number(f"{where}: {key}", value, minimum=1, integer=True)
        else:
            check_number(f"{where}: {key}", value, minimum=0, integer=True)


def _check_ser(
    sparsity: float, train_data: Any, over: float, restore_weight: str, seb_options: Mapping[str, Any] | None
) -> None:
    if train_data is None:
        raise InputError("prune_restore: train_data is required (SER trains the reservoir on data)")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 < float(sparsity) < 1.0:
        raise InputError(f"prune_restore: sparsity must be a number in (0, 1), got {sparsity!r}")
    check_number("prune_restore: over", over, minimum=0, exclusive=True)
    if float(sparsity) + float(over) >= 1.0:
        raise InputError(
            f"prune_restore: over={over} over-prunes to {float(sparsity) + float(over):.4f}; "
            "sparsity + over must stay below 1 (the restored fraction is over, within (0, 1 - sparsity))"
        )
    if restore_weight not in RESTORE_WEIGHTS:
        raise InputError(
            f"prune_restore: restore_weight must be one of {', '.join(RESTORE_WEIGHTS)}, got {restore_weight!r}"
        )
    check_seb_options("prune_restore: seb_options", dict(seb_options or {}))
    unknown = set(seb_options or {}) - {"b", "b_attn", "b_mlp", "s_d", "signal", "floor", "hill_k"}
    if unknown:
        raise InputError(f"prune_restore: seb_options has unknown key(s) {', '.join(sorted(unknown))}")


def prune_restore(
    model: nn.Module,
    sparsity: float,
    train_data: Dataset | None,
    *,
    over: float = 0.03,
    reservoir_steps: int = 10,
    reservoir_lr: float = 1e-3,
    finetune_steps: int = 20,
    finetune_lr: float = 1e-4,
    batch_size: int = 128,
    num_workers: int = 0,
    restore_weight: str = "w",
    seb_options: Mapping[str, Any] | None = None,
    fits: Mapping[str, MPFit | None] | None = None,
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    seed: int = 0,
    device: str | torch.device | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """One SER step to whole-model ``sparsity`` (see the module docstring); returns (model, record).

    ``fits`` (layer name -> :class:`rmtlib.spectral.fit.MPFit`) gives the MP fits the SEB weights come
    from; the schedule passes those of the dense model, fitted once, as the authors do. Without it the
    current weights are fitted (with ``fit_config``). The record holds counts (``reservoir``,
    ``restored``, ``nonzero_mask``: nonzeros the final mask allows, exactly the target), the reached
    sparsity and the SEB layer weights. Bad input raises :class:`InputError` before any change to the
    model. ``num_workers``: data-loading processes (the batches, and so the result, do not depend on it).
    """
    _check_ser(sparsity, train_data, over, restore_weight, seb_options)
    check_fit_config(fit_config)
    _check_budgets(
        "prune_restore",
        reservoir_steps=reservoir_steps,
        finetune_steps=finetune_steps,
        batch_size=batch_size,
        reservoir_lr=reservoir_lr,
        finetune_lr=finetune_lr,
    )
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if len(train_data) == 0:  # type: ignore[arg-type]
        raise InputError("prune_restore: train_data holds no samples")
    check_stored_weights(model, include, exclude)
    start = time.perf_counter()
    sparsity, over = float(sparsity), float(over)
    counts = count_params(model)
    dense = counts["dense"]
    target = math.floor((1.0 - sparsity) * dense + 1e-9)
    over_target = math.floor((1.0 - sparsity - over) * dense + 1e-9)
    if counts["nonzero"] <= target:
        raise InputError(
            f"prune_restore: the model is already at sparsity {1 - counts['nonzero'] / dense:.4f} >= {sparsity}"
        )
    work = model if inplace else copy.deepcopy(model)
    units = elementwise_units(work, include, exclude)
    if not units:
        raise InputError(f"prune_restore: model {type(model).__name__} has no prunable Linear/Conv layers")
    names = _param_names(work, units)
    fixed = counts["nonzero"] - sum(u.nnz for u in units)
    if over_target - fixed < 0:
        raise InputError(
            f"prune_restore: over={over} over-prunes below the {fixed} nonzeros outside the pruned layers; "
            f"the highest reachable sparsity is {1 - fixed / dense:.4f}"
        )

    with torch.no_grad():
        if fits is None:
            fit_units(units, fit_config=fit_config)
        else:
            for unit in units:
                unit.fit = fits.get(unit.name)
                unit.status = unit.fit.status if unit.fit is not None else "not_fitted"
        settings = seb_layer_weights(units, sparsity, tol=1.0 / dense, **dict(seb_options or {}))
        weights = settings["weights"]
        reservoir = seb_cut(units, weights, sum(u.nnz for u in units) - (over_target - fixed))
        write_back(units)
    kept = [unit.matrix != 0 for unit in units]
    shapes = {name: unit.module._parameters["weight"].shape for name, unit in zip(names, units)}

    loader = make_loader(train_data, batch_size, shuffle=True, seed=seed, num_workers=num_workers)
    freeze = ReservoirFreeze(work, {n: r.reshape(shapes[n]) for n, r in zip(names, reservoir)})
    trainable = {id(p) for name, p in work.named_parameters() if name in freeze.masks}
    flags = {name: p.requires_grad for name, p in work.named_parameters()}
    for _, p in work.named_parameters():
        p.requires_grad_(id(p) in trainable)
    epochs, per_epoch = _steps(reservoir_steps, loader)
    try:
        train(
            work,
            loader,
            epochs,
            optimizer=lambda params: torch.optim.Adam([p for p in params if p.requires_grad], lr=reservoir_lr),
            schedule="cosine",
            mask=freeze,
            device=device,
            seed=seed,
            progress=progress,
            max_steps_per_epoch=per_epoch,
        )
    finally:
        for name, p in work.named_parameters():
            p.requires_grad_(flags[name])

    params = dict(work.named_parameters())
    # reservoir entries started at 0, so |delta| is the trained value's magnitude
    deltas = [params[name].detach().reshape(res.shape).abs() for name, res in zip(names, reservoir)]
    restore = (target - fixed) - sum(int(k.sum()) for k in kept)
    chosen = select_restore(deltas, reservoir, weights, restore, restore_weight)
    keep_masks = {}
    with torch.no_grad():
        for name, res, k, restored in zip(names, reservoir, kept, chosen):
            p = params[name]
            drop = (res & ~restored).reshape(p.shape).to(p.device)
            p.masked_fill_(drop, 0.0)
            keep_masks[name] = (k | restored).reshape(p.shape)
    mask = WeightMask(keep_masks)
    nonzero_mask = fixed + sum(int(m.sum()) for m in keep_masks.values())
    epochs, per_epoch = _steps(finetune_steps, loader)
    if epochs:
        finetune(
            work,
            loader,
            epochs,
            lr=finetune_lr,
            mask=mask,
            device=device,
            seed=seed,
            progress=progress,
            max_steps_per_epoch=per_epoch,
        )
    else:
        mask.apply(work)
    work.eval()
    after = count_params(work)
    record = {
        "sparsity": sparsity,
        "over": over,
        "reservoir": int(sum(int(r.sum()) for r in reservoir)),
        "restored": int(restore),
        "nonzero_mask": int(nonzero_mask),
        "target_nonzero": int(target),
        "reached_sparsity": 1.0 - after["nonzero"] / dense,
        "restore_weight": restore_weight,
        "seb_signal": settings["signal"],
        "seb_weights": {u.name: float(w) for u, w in zip(units, weights)},
        "seconds": time.perf_counter() - start,
    }
    return work, record


def select_restore(
    deltas: Sequence[torch.Tensor],
    reservoir: Sequence[torch.Tensor],
    weights: Sequence[float],
    count: int,
    restore_weight: str = "w",
) -> list[torch.Tensor]:
    """Masks of the ``count`` reservoir entries with the largest |delta| * w_l (``"inverse"``: / w_l),
    over all layers together; entries outside the reservoir are never chosen (ties: lowest index)."""
    if restore_weight not in RESTORE_WEIGHTS:
        raise InputError(f"restore_weight must be one of {', '.join(RESTORE_WEIGHTS)}, got {restore_weight!r}")
    size = sum(int(r.sum()) for r in reservoir)
    if not 0 <= int(count) <= size:
        raise InputError(f"restore count {count} is outside [0, {size}] (the reservoir's size)")
    keys = []
    for delta, res, w in zip(deltas, reservoir, weights):
        score = delta.detach().abs().to(torch.float64).cpu()
        score = score * float(w) if restore_weight == "w" else score / float(w)
        keys.append(torch.where(res.cpu(), -score, torch.full_like(score, math.inf)).reshape(-1))
    chosen = smallest_mask(torch.cat(keys), int(count))
    out, offset = [], 0
    for res in reservoir:
        out.append(chosen[offset : offset + res.numel()].reshape(res.shape).to(res.device))
        offset += res.numel()
    return out


def schedule_levels(sparsity: float, step: float = 0.05, levels: Sequence[float] | None = None) -> list[float]:
    """The cumulative levels step, 2 step, ... up to ``sparsity`` (or the given ``levels``), checked to
    rise strictly inside (0, 1) and to end exactly at the target."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 < float(sparsity) < 1.0:
        raise InputError(f"schedule: sparsity must be a number in (0, 1), got {sparsity!r}")
    if levels is None:
        check_number("schedule: step", step, minimum=0, exclusive=True)
        count = round(float(sparsity) / float(step))
        if count < 1 or abs(count * float(step) - float(sparsity)) > 1e-9:
            raise InputError(
                f"schedule: steps of {step} do not reach the target sparsity {sparsity} "
                "(choose a step that divides it, or give levels=)"
            )
        return [round(float(step) * (i + 1), 12) for i in range(count)]
    levels = [float(v) for v in levels]
    if not levels or any(not 0.0 < v < 1.0 for v in levels) or any(b <= a for a, b in zip(levels, levels[1:])):
        raise InputError(f"schedule: levels must rise strictly within (0, 1), got {levels}")
    if abs(levels[-1] - float(sparsity)) > 1e-12:
        raise InputError(f"schedule: levels end at {levels[-1]}, not at the target sparsity {sparsity}")
    return levels


@torch.no_grad()
def per_sample_correct(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None) -> np.ndarray:
    """Boolean array, one per sample in loader order: top-1 prediction equals the label (for paired tests)."""
    dev = get_device(device)
    was_training = model.training
    model.eval().to(dev)
    out = []
    for x, y in loader:
        out.append((model(x.to(dev)).argmax(1).cpu() == y).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def _action(strategy: str, level: float, switch: float) -> str:
    if strategy == "hybrid":
        return "magnitude" if level <= switch + 1e-12 else "ser"
    return strategy


def prune_schedule(
    model: nn.Module,
    sparsity: float,
    train_data: Dataset | None,
    *,
    strategy: str = "hybrid",
    step: float = 0.05,
    levels: Sequence[float] | None = None,
    switch: float = 0.20,
    finetune_steps: int = 20,
    finetune_lr: float = 1e-4,
    batch_size: int = 128,
    num_workers: int = 0,
    reservoir_steps: int = 10,
    reservoir_lr: float = 1e-3,
    over: float = 0.03,
    restore_weight: str = "w",
    seb_options: Mapping[str, Any] | None = None,
    method_options: Mapping[str, Any] | None = None,
    eval_data: Dataset | None = None,
    evaluate_at: Sequence[float] | None = None,
    callback: Callable[[float, nn.Module, dict], None] | None = None,
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    fit_config: FitConfig = DEFAULT_FIT_CONFIG,
    seed: int = 0,
    device: str | torch.device | None = None,
    inplace: bool = False,
    progress: bool = False,
) -> tuple[nn.Module, pd.DataFrame]:
    """Prune to ``sparsity`` in cumulative levels (0.05, 0.10, ...), each from the previous fine-tuned model.

    ``strategy``: ``hybrid`` (global magnitude + fine-tuning up to ``switch``, SER from the next level
    on; the authors' hybrid), ``ser`` (SER at every level), or a registered element-wise method run by
    :func:`rmtlib.prune` at every level and fine-tuned with its zeros frozen (``magnitude`` means
    ``scope="global"`` unless ``method_options`` says otherwise; ``rmt``, ``seb``, ...). Every level
    gets the same ``finetune_steps``; SER levels spend ``reservoir_steps`` more on the reservoir (as
    the authors' one extra epoch). Budgets are optimizer steps of ``batch_size`` (see the module
    docstring for how they compare with the authors' epochs on ImageNet), loaded by ``num_workers``
    processes (the batches do not depend on them).

    SER levels take their SEB weights from the MP fit (``fit_config``) of the input model, fitted
    once (the authors fit the dense model); a registered method (``rmt``, ``seb``) fits the current
    weights at each level (with ``fit_config`` too), as :func:`rmtlib.prune` does. With ``eval_data``
    top-1 is measured after the levels in ``evaluate_at`` (default: every level);
    ``callback(level, model, record)`` runs after each level (records have ``correct``, the per-sample
    booleans, when evaluated). Returns the model and one row per level.
    """
    levels = schedule_levels(sparsity, step, levels)
    check_fit_config(fit_config)
    known = (*STRATEGIES, *(m for m, s in METHODS.items() if not s.structured))
    if strategy not in known:
        raise InputError(f"schedule: strategy must be one of {', '.join(known)}, got {strategy!r}")
    check_number("schedule: switch", switch, minimum=0)
    actions = [_action(strategy, level, float(switch)) for level in levels]
    options = dict(method_options or {})
    if strategy == "magnitude":
        options.setdefault("scope", "global")
    if strategy not in STRATEGIES:
        check_method_options(strategy, options, with_sparsity=True)
        if "fit_config" in options:
            raise InputError("schedule: pass fit_config= to prune_schedule itself, not in method_options")
    elif options:
        raise InputError(f"schedule: method_options are for a registered method, not strategy {strategy!r}")
    if "ser" in actions:
        _check_ser(levels[-1], train_data, over, restore_weight, seb_options)
        if levels[-1] + float(over) >= 1.0:
            raise InputError(f"schedule: over={over} over-prunes the last level past 1")
    if finetune_steps and train_data is None:
        raise InputError("schedule: train_data is required for fine-tuning (or set finetune_steps=0)")
    _check_budgets(
        "schedule",
        reservoir_steps=reservoir_steps,
        finetune_steps=finetune_steps,
        batch_size=batch_size,
        reservoir_lr=reservoir_lr,
        finetune_lr=finetune_lr,
    )
    marks = list(levels) if evaluate_at is None else [float(v) for v in evaluate_at]
    missing = [v for v in marks if not any(abs(v - level) < 1e-9 for level in levels)]
    if missing:
        raise InputError(f"schedule: evaluate_at {missing} are not levels of the schedule {levels}")
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_stored_weights(model, include, exclude)

    work = model if inplace else copy.deepcopy(model)
    dense_fits = None
    if "ser" in actions:  # SEB weights from the dense model's MP fit, once (METHOD.md section 7)
        with torch.no_grad():
            units = elementwise_units(work, include, exclude)
            fit_units(units, fit_config=fit_config)
        dense_fits = {unit.name: unit.fit for unit in units}
        del units
    eval_loader = make_loader(eval_data, 1000, num_workers=num_workers) if eval_data is not None else None
    rows = []
    for i, (level, action) in enumerate(zip(levels, actions)):
        start = time.perf_counter()
        record: dict[str, Any] = {"level": level, "action": action}
        if action == "ser":
            work, info = prune_restore(
                work,
                level,
                train_data,
                over=over,
                reservoir_steps=reservoir_steps,
                reservoir_lr=reservoir_lr,
                finetune_steps=finetune_steps,
                finetune_lr=finetune_lr,
                batch_size=batch_size,
                num_workers=num_workers,
                restore_weight=restore_weight,
                seb_options=seb_options,
                fits=dense_fits,
                fit_config=fit_config,
                include=include,
                exclude=exclude,
                seed=seed + i,
                device=device,
                inplace=True,
                progress=progress,
            )
            record.update(reservoir=info["reservoir"], restored=info["restored"])
        else:
            opts = {"scope": "global"} if action == "magnitude" and strategy == "hybrid" else options
            work = prune(
                work,
                action,
                sparsity=level,
                include=include,
                exclude=exclude,
                inplace=True,
                fit_config=fit_config,
                **opts,
            ).model
            if finetune_steps:
                loader = make_loader(train_data, batch_size, shuffle=True, seed=seed + i, num_workers=num_workers)
                epochs, per_epoch = _steps(finetune_steps, loader)
                finetune(
                    work,
                    loader,
                    epochs,
                    lr=finetune_lr,
                    mask=WeightMask.from_zeros(work, include, exclude),
                    device=device,
                    seed=seed + i,
                    progress=progress,
                    max_steps_per_epoch=per_epoch,
                )
            work.eval()
        after = count_params(work)
        record.update(reached_sparsity=1.0 - after["nonzero"] / after["dense"], seconds=time.perf_counter() - start)
        if eval_loader is not None and any(abs(level - v) < 1e-9 for v in marks):
            correct = per_sample_correct(work, eval_loader, device)
            record.update(accuracy=float(correct.mean()), correct=correct)
        if callback is not None:
            callback(level, work, record)
        rows.append(record)
    return work, pd.DataFrame(rows)
