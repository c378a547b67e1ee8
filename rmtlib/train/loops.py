"""Seeded train / fine-tune / evaluate loops, used by the CLI and the notebooks.

* AMP (bfloat16 autocast) on CUDA, plain float32 on the CPU.
* Per-epoch hooks ``hook(epoch, model, record) -> dict | None`` (e.g. record spectra, or the
  MP-scheduled splitting of :class:`rmtlib.train.regularize.MPSplitScheduler`, which may replace layers:
  the optimizer is then rebuilt for the new parameters, keeping the state of those that remain).
* An optional :class:`rmtlib.train.regularize.WeightMask` keeps pruned weights exactly zero.
* Under ``torchrun`` (``torch.distributed`` initialized, see :func:`init_distributed`) the model is
  wrapped in DDP and loaders from :func:`rmtlib.train.data.make_loader` shard the data; evaluation sums
  counts over processes, so its accuracy equals the single-process one (not with ``max_batches``:
  each process then takes its first batches of its own shard).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rmtlib.errors import DivergenceError, InputError
from rmtlib.runtime import get_device
from rmtlib.train.distributed import is_distributed, is_main_process, unwrap
from rmtlib.train.regularize import WeightMask

Hook = Callable[[int, nn.Module, dict], "dict | None"]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(device: torch.device, amp: bool | None):
    enabled = device.type == "cuda" if amp is None else amp and device.type == "cuda"
    return (
        torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)
        if device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device | None = None,
    *,
    amp: bool | None = None,
    progress: bool = False,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Mean cross-entropy ``loss``, top-1 ``accuracy`` (fraction) and sample count ``n`` over ``loader``.

    Under ``torch.distributed`` the sums are all-reduced, so every process returns the global values.
    """
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    # tqdm is handed an iterator, not the loader: tqdm.auto would open (and discard) an iterator of its own,
    # which draws from the loader's generator and starts its worker processes twice
    batches = tqdm(
        iter(loader), desc="eval", total=len(loader), disable=not progress or not is_main_process(), leave=False
    )
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        totals[0] += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += len(y)
    if is_distributed():
        dist.all_reduce(totals)
    model.train(was_training)
    n = totals[2].item()
    if n == 0:
        raise InputError("evaluate: the loader yielded no samples")
    return {"loss": totals[0].item() / n, "accuracy": totals[1].item() / n, "n": int(n)}


def lr_schedule(
    name: str,
    total_steps: int,
    *,
    warmup: float = 0.1,
    steps_per_epoch: int = 1,
    step_epochs: int = 4,
    gamma: float = 0.96,
) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step ``t`` (0-based).

    ``constant``; ``cosine`` (to 0); ``onecycle`` (linear warm-up over ``warmup`` of the steps,
    then cosine to 0); ``step`` (x ``gamma`` every ``step_epochs`` epochs, the paper's FC schedule).
    """
    total_steps = max(1, total_steps)
    if name == "constant":
        return lambda t: 1.0
    if name == "cosine":
        return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))
    if name == "onecycle":
        n_warm = max(1, int(warmup * total_steps))

        def onecycle(t: int) -> float:
            if t < n_warm:
                return (t + 1) / n_warm
            return 0.5 * (1 + math.cos(math.pi * (t - n_warm) / max(1, total_steps - n_warm)))

        return onecycle
    if name == "step":
        return lambda t: gamma ** ((t // max(1, steps_per_epoch)) // step_epochs)
    raise InputError(f"unknown lr schedule {name!r}: use constant, cosine, onecycle or step")


def make_optimizer_factory(
    name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9
) -> OptimizerFactory:
    """A function params -> optimizer (``adamw``, ``adam`` or ``sgd`` with momentum)."""
    if name == "adamw":
        return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise InputError(f"unknown optimizer {name!r}: use adamw, adam or sgd")


DIVERGENCE_CHECK_EVERY = 20
"""Steps between checks that the training loss is finite (each check waits for the device)."""


def _check_finite(total: torch.Tensor, epoch: int, batch: int) -> None:
    """Stop at a non-finite loss (cross-entropy + penalty) rather than train on NaN weights."""
    if not bool(torch.isfinite(total.detach()).item()):
        raise DivergenceError(
            f"train: the loss (cross-entropy + penalty) is {total.item()} at epoch {epoch}, batch {batch}; "
            "lower the learning rate or the penalty coefficients"
        )


def _step(opt: torch.optim.Optimizer, epoch: int, batch: int) -> None:
    """``opt.step()``, with torch's overflow of a huge step size (e.g. Adam at lr 3.4e38, whose first
    step divides by 1 - beta1) reported as a divergence instead of a traceback."""
    try:
        opt.step()
    except RuntimeError as err:
        if "overflow" not in str(err):
            raise
        rates = sorted({g["lr"] for g in opt.param_groups})
        raise DivergenceError(
            f"train: the optimizer step overflowed at epoch {epoch}, batch {batch} (learning rate "
            f"{', '.join(f'{r:g}' for r in rates)}); lower the learning rate"
        ) from None


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    """Stop when a weight became NaN/Inf during the epoch (between two loss checks)."""
    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param.detach()).all()):
            raise DivergenceError(
                f"train: parameter {name!r} is not finite after epoch {epoch}; "
                "lower the learning rate or the penalty coefficients"
            )


def train(
    model: nn.Module,
    loader: DataLoader,
    epochs: int = 1,
    *,
    optimizer: str | OptimizerFactory = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    schedule: str = "onecycle",
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    hooks: Sequence[Hook] = (),
    mask: Any = None,
    val_loader: DataLoader | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    seed: int | None = 0,
    progress: bool = True,
    max_steps_per_epoch: int | None = None,
    grad_clip: float | None = None,
) -> list[dict]:
    """Train ``model`` in place with cross-entropy (+ ``penalty(model)``); return one record per epoch.

    ``optimizer`` is a name (see :func:`make_optimizer_factory`, with ``lr``/``weight_decay``) or a
    factory params -> optimizer whose learning rates are the base rates; ``schedule`` scales them
    per step (:func:`lr_schedule`). ``mask`` (a :class:`rmtlib.train.regularize.WeightMask`) zeroes the
    masked gradients before and the masked weights after every step. Records hold epoch,
    train_loss, train_accuracy, lr, seconds, val_loss/val_accuracy (with ``val_loader``) and what
    hooks return.
    """
    if epochs < 0:
        raise InputError(f"epochs must be >= 0, got {epochs}")
    if seed is not None:
        seed_everything(seed)
        reseed_loader(loader, seed)  # the same batches on every call, also with a loader used before
    device = get_device(device)
    model.to(device).train()
    if mask is not None:
        mask.apply(unwrap(model))
    factory = make_optimizer_factory(optimizer, lr, weight_decay) if isinstance(optimizer, str) else optimizer
    steps_per_epoch = len(loader) if max_steps_per_epoch is None else min(len(loader), max_steps_per_epoch)
    if epochs > 0 and steps_per_epoch < 1:
        raise InputError(
            f"train: the loader yields no batch ({len(loader.dataset)} samples, batch size "
            f"{loader.batch_size}{', incomplete batches dropped' if getattr(loader, 'drop_last', False) else ''}); "
            "use more samples or a smaller batch"
        )
    scale = lr_schedule(schedule, epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch)
    net = _wrap(model, device)
    opt = factory(list(unwrap(net).parameters()))
    base_lrs = [g["lr"] for g in opt.param_groups]
    history: list[dict] = []
    step = 0
    for epoch in range(1, epochs + 1):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        start = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64, device=device)
        bar = tqdm(
            iter(loader),
            desc=f"epoch {epoch}/{epochs}",
            total=steps_per_epoch,
            disable=not progress or not is_main_process(),
            leave=False,
        )  # one iterator per epoch (see evaluate)
        for i, (x, y) in enumerate(bar):
            if i >= steps_per_epoch:
                break
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * scale(step)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = net(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
            total = loss + penalty(unwrap(net)) if penalty is not None else loss
            opt.zero_grad(set_to_none=True)
            total.backward()
            if mask is not None:
                mask.zero_grads(unwrap(net))
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            _step(opt, epoch, i)
            if mask is not None:
                mask.apply(unwrap(net))
            step += 1
            with torch.no_grad():
                totals += torch.stack(
                    [
                        loss.detach().double() * len(y),
                        (logits.argmax(1) == y).sum().double(),
                        torch.tensor(len(y), device=device, dtype=torch.float64),
                    ]
                )
            if i % DIVERGENCE_CHECK_EVERY == 0:  # one host sync per check, not per step
                _check_finite(total, epoch, i)
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if is_distributed():
            dist.all_reduce(totals)
        _check_finite_weights(unwrap(net), epoch)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": totals[0].item() / max(1, totals[2].item()),
            "train_accuracy": totals[1].item() / max(1, totals[2].item()),
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - start,
        }
        if val_loader is not None:
            val = evaluate(unwrap(net), val_loader, device, amp=amp)  # not through DDP: no buffer broadcast to hang on
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        params_before = [id(p) for p in unwrap(net).parameters()]
        for hook in hooks:
            extra = hook(epoch, unwrap(net), record)
            if extra:
                record.update(extra)
        if [id(p) for p in unwrap(net).parameters()] != params_before:  # a hook replaced layers
            unwrap(net).to(device)
            net = _wrap(unwrap(net), device)
            opt = _rebuilt_optimizer(opt, factory, list(unwrap(net).parameters()))
            base_lrs = [g["lr"] for g in opt.param_groups]
        history.append(record)
        if progress and is_main_process():
            shown = {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in record.items()
                if not isinstance(v, (dict, list))
            }
            tqdm.write(str(shown))
    return history


def reseed_loader(loader: Any, seed: int) -> None:
    """Reset a loader's shuffling generator(s) to ``seed``, so a run draws the same batches however often
    the loader was iterated before (a fresh :func:`rmtlib.train.data.make_loader` with that seed is unchanged)."""
    for owner in (
        loader,
        getattr(loader, "sampler", None),
        getattr(loader, "batch_sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed)


def _rebuilt_optimizer(
    old: torch.optim.Optimizer, factory: OptimizerFactory, params: list[nn.Parameter]
) -> torch.optim.Optimizer:
    """A new optimizer for ``params`` (after a hook replaced layers) that keeps the old one's state
    (momentum, Adam moments, step counts) for every parameter still in the model: only the new
    layers start from zero, so a model split during training is not also slowed down everywhere else."""
    new = factory(params)
    for p in params:
        if p in old.state:  # tensors hash by identity: the parameters a hook did not replace
            new.state[p] = old.state[p]
    return new


def _wrap(model: nn.Module, device: torch.device) -> nn.Module:
    model = unwrap(model)
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def finetune(
    model: nn.Module,
    loader: DataLoader,
    epochs: int = 1,
    *,
    lr: float = 1e-4,
    optimizer: str | OptimizerFactory = "adamw",
    schedule: str = "cosine",
    freeze_zeros: bool = True,
    mask: Any = None,
    **kwargs: Any,
) -> list[dict]:
    """Fine-tune a (pruned) model: like :func:`train` with a small learning rate, cosine decay and,
    by default, a mask freezing every weight of a prunable layer that is exactly zero now."""
    if mask is None and freeze_zeros:
        mask = WeightMask.from_zeros(unwrap(model))
    return train(model, loader, epochs, optimizer=optimizer, lr=lr, schedule=schedule, mask=mask, **kwargs)
