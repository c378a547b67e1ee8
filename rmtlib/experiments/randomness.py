"""Randomness in trained layers: the checks of the paper's two theorems (METHOD.md section 5).

* :func:`split_at_edge` splits a weight matrix at its Marchenko-Pastur edge into the signal
  ``S`` (singular components above the edge, the spikes) and the random bulk ``R = W - S``.
* :class:`SpectralTracker` is a per-epoch hook of :func:`rmtlib.train.loops.train` recording each
  layer's BEMA ``sigma2``, edge, ``gamma``, spikes and bulk energy (theorem T2: these decay).
* :func:`theta_path` evaluates the regularized loss along ``W(theta) = S + theta R`` and
  :func:`noise_path` along ``W + sqrt(t sigma2) G`` (theorem T1: removing randomness lowers the
  regularized loss, adding it raises the loss).
* :func:`monotonicity` says, per curve, whether and where a metric is monotone;
  :func:`strength_ordering` whether a stronger penalty gives a larger decrease.
* :func:`run_decay_experiment` trains ``[d, N, N, K]`` nets with CE + L2 for several widths and
  strengths, tracking spectra (the T2 experiment of notebook 02); with ``control=True`` each L2 run
  gets its data-free twin (:func:`penalty_only_run`: the same penalty and optimizer, no data), the
  shrinkage weight decay alone causes, and :func:`control_comparison` sets the two side by side.
* :func:`stationary_run` trains a small net full-batch (L-BFGS) towards a stationary point of the
  regularized loss, recording the gradient norm beside the spectra (theorem T2's own hypothesis).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.models import fc_net
from rmtlib.spectral.analyze import layer_fits
from rmtlib.spectral.fit import MPFit, count_zero_lines, fit_mp
from rmtlib.spectral.fit_config import FC_FIT_CONFIG, FitConfig
from rmtlib.spectral.layers import FactoredLayer, prunable_layers, weight_matrix
from rmtlib.train.loops import evaluate, make_optimizer_factory, train
from rmtlib.train.regularize import L2

__all__ = [
    "split_at_edge",
    "bulk_energy",
    "SpectralTracker",
    "TRACK_COLUMNS",
    "gaussian_init_",
    "l2_term",
    "theta_path",
    "noise_path",
    "monotonicity",
    "strength_ordering",
    "run_decay_experiment",
    "fittable_layers",
    "decay_findings",
    "path_findings",
    "penalty_only_run",
    "control_comparison",
    "control_findings",
    "stationary_run",
]

TRACK_COLUMNS = [
    "epoch",
    "layer",
    "m",
    "n",
    "status",
    "sigma2",
    "lambda_plus",
    "sv_edge",
    "gamma",
    "n_spikes",
    "bulk_energy",
    "spike_energy",
    "total_energy",
    "top_sv",
]


# ---------------------------------------------------------------------------------------------
# splitting one matrix


def split_at_edge(
    weight: Any, *, fit_config: FitConfig = FC_FIT_CONFIG, name: str = "matrix"
) -> tuple[torch.Tensor, torch.Tensor, MPFit]:
    """Split ``weight`` (m x n) at its MP edge: ``weight = S + R``.

    ``S = U_k diag(s_k) V_k^T`` keeps the ``k = fit.n_spikes`` singular components above the
    fitted edge ``fit.sv_edge``; ``R = weight - S`` is the bulk, so ``||R||_F^2`` equals
    :func:`bulk_energy` of the fit. Computed in float64 from one SVD (the fit uses the same
    singular values); ``S`` and ``R`` are returned in float64 on the weight's device.

    Raises :class:`InputError` when the matrix is too small to fit (min(m, n) < ``fit_config.min_dim``).
    """
    if isinstance(weight, torch.Tensor):
        w = weight.detach().to(torch.float64)
    else:
        w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    if w.ndim != 2:
        raise InputError(f"{name}: expected a 2-D weight matrix, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise InputError(f"{name}: weight contains NaN or Inf entries")
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    fit = fit_mp(
        s.cpu().numpy(), shape=tuple(w.shape), fit_config=fit_config, name=name, zero_lines=count_zero_lines(w)
    )
    if not fit.ok:
        raise InputError(f"{name}: shape {tuple(w.shape)} {_unfit_reason(fit)} (status {fit.status})")
    k = fit.n_spikes
    signal = (u[:, :k] * s[:k]) @ vh[:k] if k else torch.zeros_like(w)
    return signal, w - signal, fit


def _unfit_reason(fit: MPFit) -> str:
    """Why a fit failed, in words (``too_small`` or ``rank_deficient``)."""
    if fit.status == "too_small":
        return "is too small for an MP fit"
    return "has too few nonzero singular values in BEMA's window for an MP fit"


def bulk_energy(fit: MPFit) -> float:
    """Sum of the squared singular values at or below the edge (``||R||_F^2`` of the split)."""
    if not fit.ok:
        return float("nan")
    sv = fit.singular_values
    return float(np.sum(sv[sv <= fit.sv_edge] ** 2))


def fittable_layers(
    model: nn.Module,
    *,
    fit_config: FitConfig = FC_FIT_CONFIG,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[str]:
    """Names of the layers whose matrix is large enough for an MP fit (min side >= ``fit_config.min_dim``)."""
    return [
        name
        for name, _, _, fit, status in layer_fits(
            model, include=include, exclude=exclude, fit_config=fit_config, progress=False
        )
        if status == "ok"
    ]


# ---------------------------------------------------------------------------------------------
# T2: tracking spectra during training


class SpectralTracker:
    """Per-epoch hook ``tracker(epoch, model, record)`` for :func:`rmtlib.train.loops.train`.

    Each call fits MP to every analysable layer and stores one row per layer with the columns
    :data:`TRACK_COLUMNS` plus the ``tags`` (e.g. width and L2 strength); :meth:`frame` returns
    them as a DataFrame. Call :meth:`observe` with ``epoch=0`` before training to record the
    initialisation. Layers too small to fit get NaN metrics (status ``too_small``).
    """

    def __init__(
        self,
        *,
        fit_config: FitConfig = FC_FIT_CONFIG,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        every: int = 1,
        tags: Mapping[str, Any] | None = None,
    ):
        if every < 1:
            raise InputError(f"SpectralTracker every must be >= 1, got {every}")
        self.fit_config, self.include, self.exclude, self.every = fit_config, include, exclude, every
        self.tags = dict(tags or {})
        self.rows: list[dict[str, Any]] = []

    def observe(self, epoch: int, model: nn.Module) -> list[dict[str, Any]]:
        """Fit every layer of ``model`` now and store (and return) the rows for ``epoch``."""
        nan = float("nan")
        rows = []
        for name, _, (m, n), fit, status in layer_fits(
            model, include=self.include, exclude=self.exclude, fit_config=self.fit_config, progress=False
        ):
            row: dict[str, Any] = {**self.tags, "epoch": epoch, "layer": name, "m": m, "n": n, "status": status}
            if fit is not None and fit.ok:
                sv = fit.singular_values
                bulk = bulk_energy(fit)
                total = float(np.sum(sv**2))
                row.update(
                    sigma2=fit.sigma2,
                    lambda_plus=fit.lambda_plus,
                    sv_edge=fit.sv_edge,
                    gamma=fit.gamma,
                    n_spikes=fit.n_spikes,
                    bulk_energy=bulk,
                    spike_energy=total - bulk,
                    total_energy=total,
                    top_sv=float(sv[0]),
                )
            else:
                sv = fit.singular_values if fit is not None else np.zeros(1)
                total = float(np.sum(sv**2))
                row.update(
                    sigma2=nan,
                    lambda_plus=nan,
                    sv_edge=nan,
                    gamma=nan,
                    n_spikes=0,
                    bulk_energy=nan,
                    spike_energy=nan,
                    total_energy=total,
                    top_sv=float(sv[0]),
                )
            rows.append(row)
        self.rows.extend(rows)
        return rows

    def __call__(self, epoch: int, model: nn.Module, record: dict | None = None) -> None:
        if epoch % self.every == 0:
            self.observe(epoch, model)

    def frame(self) -> pd.DataFrame:
        """All rows recorded so far."""
        return pd.DataFrame(self.rows, columns=[*self.tags, *TRACK_COLUMNS])


def gaussian_init_(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Re-initialise every Linear/Conv weight with iid N(0, 1/fan_in) entries and zero biases.

    For the N x N layer of ``[d, N, N, K]`` this is the N(0, 1/N) start of theorem T2: a pure
    Marchenko-Pastur matrix with sigma^2 = 1/N.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in prunable_layers(model):
            if isinstance(module, FactoredLayer):
                raise InputError(f"layer {name}: gaussian_init_ supports plain Linear/Conv layers only")
            w = module.weight
            fan_in = w[0].numel()
            w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float32) / math.sqrt(fan_in))
            if module.bias is not None:
                module.bias.zero_()
    return model


def run_decay_experiment(
    widths: Sequence[int],
    l2_values: Sequence[float],
    epochs: int,
    train_loader: Any,
    *,
    input_dim: int = 784,
    classes: int = 10,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    device: str | None = None,
    fit_config: FitConfig = FC_FIT_CONFIG,
    test_loader: Any = None,
    keep_models: bool = False,
    progress: bool = False,
    control: bool = False,
) -> dict[str, Any]:
    """Train ``[input_dim, N, N, classes]`` with CE + ``l2 * sum ||W||_F^2`` for every (N, l2).

    Same seed (same initial weights and batches) for every strength, so the curves differ only
    by the penalty. SGD with momentum, constant learning rate (a schedule would shrink the steps
    and mix its effect with the penalty's). Returns ``{"spectra": DataFrame (TRACK_COLUMNS + width,
    l2), "history": DataFrame (per epoch losses), "models": {(N, l2): model}}`` (models only with
    ``keep_models``).
    """

    spectra, history, models = [], [], {}
    for width in widths:
        for l2 in l2_values:
            model = gaussian_init_(fc_net([input_dim, width, width, classes]), seed=seed)
            tags = {"width": int(width), "l2": float(l2)}
            tracker = SpectralTracker(fit_config=fit_config, tags={**tags, "run": "trained"})
            tracker.observe(0, model)
            penalty = L2(l2) if l2 > 0 else None
            records = train(
                model,
                train_loader,
                epochs,
                optimizer=make_optimizer_factory("sgd", lr, momentum=momentum),
                schedule="constant",
                penalty=penalty,
                hooks=[tracker],
                device=device,
                seed=seed,
                progress=progress,
            )
            for rec in records:
                row = {
                    "width": int(width),
                    "l2": float(l2),
                    **{k: v for k, v in rec.items() if not isinstance(v, (dict, list))},
                }
                row["reg"] = float(l2) * float(l2_term(model)) if rec is records[-1] else float("nan")
                history.append(row)
            if test_loader is not None:
                res = evaluate(model, test_loader, device)
                history[-1].update(test_loss=res["loss"], test_accuracy=res["accuracy"])
            spectra.append(tracker.frame())
            if keep_models:
                models[(int(width), float(l2))] = model.cpu()
            if control and l2 > 0:
                twin = gaussian_init_(fc_net([input_dim, width, width, classes]), seed=seed)
                ghost = SpectralTracker(fit_config=fit_config, tags={**tags, "run": "data-free"})
                ghost.observe(0, twin)
                penalty_only_run(twin, L2(l2), epochs, len(train_loader), lr=lr, momentum=momentum, hook=ghost)
                spectra.append(ghost.frame())
    return {"spectra": pd.concat(spectra, ignore_index=True), "history": pd.DataFrame(history), "models": models}


def penalty_only_run(
    model: nn.Module,
    penalty: Callable[[nn.Module], torch.Tensor],
    epochs: int,
    steps_per_epoch: int,
    *,
    lr: float,
    momentum: float = 0.9,
    hook: Callable[[int, nn.Module], Any] | None = None,
) -> nn.Module:
    """The data-free control: SGD (same ``lr``, ``momentum``) on ``penalty(model)`` alone, no data term.

    What weight decay does without any learning: with the L2 penalty every weight shrinks by the same
    factor, so the singular values shrink together and a pure-MP start stays pure MP. ``hook(epoch,
    model)`` runs after each of the ``epochs`` blocks of ``steps_per_epoch`` steps (e.g. a
    :class:`SpectralTracker`). Modifies and returns ``model``.
    """
    if epochs < 0 or steps_per_epoch < 1:
        raise InputError(
            f"penalty_only_run needs epochs >= 0 and steps_per_epoch >= 1, got {epochs}, {steps_per_epoch}"
        )
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            opt.zero_grad(set_to_none=True)
            penalty(model).backward()
            opt.step()
        if hook is not None:
            hook(epoch, model)
    return model


def control_comparison(spectra: pd.DataFrame) -> pd.DataFrame:
    """Trained run against its data-free twin, per (width, l2, layer), at the last epoch.

    Columns: width, l2, layer, bulk_trained and bulk_data_free (bulk energy at the end over its value at
    initialisation), bulk_vs_control (their ratio: 1 = the decay weight decay alone predicts, < 1 =
    training removed more), total_trained / total_data_free (the same for the total energy),
    spike_energy_init, spike_energy_trained, spike_energy_data_free (absolute), n_spikes_trained.
    """
    if "run" not in spectra.columns or not (spectra["run"] == "data-free").any():
        raise InputError("control_comparison needs spectra from run_decay_experiment(..., control=True)")
    ok = spectra[spectra["status"] == "ok"]
    rows = []
    for (width, l2, layer), group in ok[ok["l2"] > 0].groupby(["width", "l2", "layer"], sort=True):
        runs = {}
        for run, part in group.groupby("run"):
            part = part.sort_values("epoch")
            runs[run] = (part.iloc[0], part.iloc[-1])
        if set(runs) != {"trained", "data-free"}:
            continue
        (t0, t1), (d0, d1) = runs["trained"], runs["data-free"]
        bulk_t, bulk_d = t1["bulk_energy"] / t0["bulk_energy"], d1["bulk_energy"] / d0["bulk_energy"]
        rows.append(
            {
                "width": width,
                "l2": l2,
                "layer": layer,
                "bulk_trained": bulk_t,
                "bulk_data_free": bulk_d,
                "bulk_vs_control": bulk_t / bulk_d,
                "total_trained": t1["total_energy"] / t0["total_energy"],
                "total_data_free": d1["total_energy"] / d0["total_energy"],
                "spike_energy_init": t0["spike_energy"],
                "spike_energy_trained": t1["spike_energy"],
                "spike_energy_data_free": d1["spike_energy"],
                "n_spikes_trained": int(t1["n_spikes"]),
            }
        )
    return pd.DataFrame(rows)


def control_findings(table: pd.DataFrame) -> list[str]:
    """Sentences on :func:`control_comparison`: does the bulk fall faster with data than without, and
    do the spikes grow while it falls?"""
    if table.empty:
        return ["No (width, L2 > 0, layer) case has both a trained and a data-free run."]
    ratio = table["bulk_vs_control"]
    lines = [
        f"Bulk energy at the end relative to the data-free twin (1 = exactly the shrinkage weight decay alone "
        f"causes): median {ratio.median():.2f}, range {ratio.min():.3g} to {ratio.max():.3g} over {len(table)} "
        f"(width, L2, layer) cases; below 0.8 in {int((ratio < 0.8).sum())}, within 20% of 1 in "
        f"{int(((ratio >= 0.8) & (ratio <= 1.25)).sum())}, above 1.25 in {int((ratio > 1.25).sum())}."
    ]
    grew = table["spike_energy_trained"] > table["spike_energy_init"]
    lines.append(
        f"Spike energy grew over training in {int(grew.sum())} of {len(table)} cases while the bulk shrank "
        f"(median {table['spike_energy_init'].median():.3g} at initialisation, "
        f"{table['spike_energy_trained'].median():.3g} at the end; data-free twin "
        f"{table['spike_energy_data_free'].median():.3g}): training with data builds "
        "spikes, weight decay alone does not."
    )
    return lines


def stationary_run(
    widths: Sequence[int],
    l2: float,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    checkpoints: Sequence[int] = (0, 10, 30, 100, 300),
    seed: int = 0,
    fit_config: FitConfig = FC_FIT_CONFIG,
    history_size: int = 20,
) -> pd.DataFrame:
    """Full-batch L-BFGS (float64) on ``CE + l2 * sum ||W||_F^2`` from the N(0, 1/fan_in) start, towards a
    stationary point of the regularized loss: T2's hypothesis, as far as a CPU reaches it.

    At each iteration count in ``checkpoints`` every fittable layer is fitted. Returns one row per
    (iteration, layer): iteration, grad_norm (Euclidean norm of the gradient of the regularized loss
    over all parameters), grad_norm_rel (over its value at initialisation), ce, reg, accuracy (on the
    training samples), restarts (how often L-BFGS was restarted because its line search found no
    step, at a kink of the ReLUs) and the :class:`SpectralTracker` columns (bulk_energy, spike_energy, ...).
    """
    if l2 <= 0:
        raise InputError(f"stationary_run needs l2 > 0 (the regularized loss has a stationary point), got {l2}")
    points = sorted({int(c) for c in checkpoints})
    if not points or points[0] < 0:
        raise InputError(f"checkpoints must be iteration counts >= 0, got {list(checkpoints)}")
    model = gaussian_init_(fc_net(list(widths)), seed=seed).to(torch.float64)
    x, y = inputs.to(torch.float64), labels.to(torch.long)
    penalty = L2(l2)
    params = [p for p in model.parameters() if p.requires_grad]

    def new_optimizer() -> torch.optim.LBFGS:
        return torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=1,
            history_size=history_size,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

    opt = new_optimizer()

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y) + penalty(model)
        loss.backward()
        return loss

    def measure() -> dict[str, float]:
        model.zero_grad(set_to_none=True)
        out = model(x)
        ce = nn.functional.cross_entropy(out, y)
        reg = penalty(model)
        (ce + reg).backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))
        model.zero_grad(set_to_none=True)
        return {
            "grad_norm": norm,
            "ce": ce.item(),
            "reg": reg.item(),
            "accuracy": float((out.argmax(1) == y).double().mean()),
        }

    tracker = SpectralTracker(fit_config=fit_config, tags={"l2": float(l2), "width": int(widths[1])})
    rows, done, first = [], 0, None
    restarts = 0
    for point in points:
        for _ in range(point - done):
            before = torch.cat([p.detach().flatten() for p in params])
            opt.step(closure)
            if torch.equal(before, torch.cat([p.detach().flatten() for p in params])):
                opt = new_optimizer()  # the line search found no step (a ReLU kink): drop the curvature history
                restarts += 1
        done = point
        state = measure()
        first = state["grad_norm"] if first is None else first
        for row in tracker.observe(point, model):
            rows.append(
                {"iteration": point, **state, "grad_norm_rel": state["grad_norm"] / first, "restarts": restarts, **row}
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# T1: loss along S + theta R, and with added noise


def l2_term(model: nn.Module) -> torch.Tensor:
    """``sum_l ||W_l||_F^2`` over the Linear/Conv weights (biases excluded), in float64."""
    total = torch.zeros((), dtype=torch.float64)
    for _, module in prunable_layers(model):
        total = total + weight_matrix(module).detach().to(torch.float64).pow(2).sum().cpu()
    return total


def _default_loss(device: str | torch.device | None) -> Callable[[nn.Module, Any], dict]:

    return lambda model, loader: evaluate(model, loader, device)


def _modules(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    found = dict(prunable_layers(model))
    out = {}
    for name in layers:
        if name not in found:
            raise InputError(f"layer {name!r} is not a Linear/Conv layer of the model (have: {sorted(found)})")
        if isinstance(found[name], FactoredLayer):
            raise InputError(f"layer {name!r} is a factorized layer; split its dense weight instead")
        out[name] = found[name]
    return out


def _set_weight(module: nn.Module, matrix: torch.Tensor) -> None:
    with torch.no_grad():
        module.weight.copy_(matrix.reshape(module.weight.shape).to(module.weight.dtype))


def _evaluate_point(model: nn.Module, loader: Any, loss_fn: Callable, lambda_reg: float) -> dict[str, float]:
    res = loss_fn(model, loader)
    reg = lambda_reg * float(l2_term(model))
    return {"ce": float(res["loss"]), "reg": reg, "loss": float(res["loss"]) + reg, "accuracy": float(res["accuracy"])}


def theta_path(
    model: nn.Module,
    layers: Sequence[str] | None,
    thetas: Sequence[float],
    loss_fn: Callable[[nn.Module, Any], Mapping[str, float]] | None,
    loader: Any,
    lambda_reg: float,
    *,
    fit_config: FitConfig = FC_FIT_CONFIG,
    per_layer: bool = True,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Loss along ``W_l(theta) = S_l + theta R_l`` (theorem T1), per layer and all layers at once.

    Args:
        model: the trained network (not modified; a copy is evaluated).
        layers: layer names to split (default: every layer large enough for an MP fit).
        thetas: fractions of the bulk kept; ``theta = 1`` is the unmodified model, 0 keeps the spikes only.
        loss_fn: ``loss_fn(model, loader) -> {"loss": mean CE, "accuracy": fraction}``
            (default :func:`rmtlib.train.loops.evaluate`).
        loader: the data the loss is measured on.
        lambda_reg: the regularized loss is ``CE + lambda_reg * sum_l ||W_l||_F^2`` over all layers.
        per_layer: also vary each layer alone (the others at theta = 1).

    Returns one row per (target, theta): target (a layer name or ``"all"``), theta, ce, reg,
    loss (= ce + reg), accuracy, bulk_energy (``||R||_F^2`` of the target's layers) and
    n_spikes. Because S and R have orthogonal singular subspaces, ``reg(theta) = reg(1) -
    lambda_reg (1 - theta^2) bulk_energy`` exactly.
    """
    if lambda_reg < 0 or not math.isfinite(lambda_reg):
        raise InputError(f"lambda_reg must be finite and >= 0, got {lambda_reg}")
    thetas = [float(t) for t in thetas]
    if not thetas:
        raise InputError("theta_path needs at least one theta")
    loss_fn = loss_fn or _default_loss(device)
    work = copy.deepcopy(model)
    names = list(layers) if layers is not None else fittable_layers(model, fit_config=fit_config)
    if not names:
        raise InputError("theta_path: no layer to split (none is large enough for an MP fit)")
    modules = _modules(work, names)
    splits = {
        name: split_at_edge(weight_matrix(mod), fit_config=fit_config, name=name) for name, mod in modules.items()
    }
    originals = {name: mod.weight.detach().clone() for name, mod in modules.items()}
    targets = [(n, [n]) for n in names] if per_layer else []
    if len(names) > 1 or not per_layer:
        targets.append(("all", names))
    rows = []
    for label, target in targets:
        energy = sum(float(splits[n][1].pow(2).sum()) for n in target)
        spikes = sum(splits[n][2].n_spikes for n in target)
        for theta in thetas:
            for name in target:
                s, r, _ = splits[name]
                _set_weight(modules[name], s + theta * r)
            rows.append(
                {
                    "target": label,
                    "theta": theta,
                    **_evaluate_point(work, loader, loss_fn, lambda_reg),
                    "bulk_energy": energy,
                    "n_spikes": spikes,
                }
            )
            for name in target:
                with torch.no_grad():
                    modules[name].weight.copy_(originals[name])
    return pd.DataFrame(rows)


def noise_path(
    model: nn.Module,
    layers: Sequence[str] | None,
    scales: Sequence[float],
    loss_fn: Callable[[nn.Module, Any], Mapping[str, float]] | None,
    loader: Any,
    lambda_reg: float,
    *,
    n_draws: int = 3,
    seed: int = 0,
    fit_config: FitConfig = FC_FIT_CONFIG,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Loss after adding fresh noise ``W_l + sqrt(t * sigma2_l) G_l`` to all ``layers`` at once.

    ``G_l`` has iid N(0, 1) entries and ``sigma2_l`` is the layer's BEMA scale, so ``t = 1`` adds
    as much variance as the fitted bulk already has. Each ``t`` in ``scales`` is drawn
    ``n_draws`` times (draw ``j`` uses the same G for every t, so the curves are comparable).
    Returns one row per (t, draw): scale, draw, ce, reg, loss, accuracy, added_energy
    (``sum ||sqrt(t sigma2) G||_F^2``). ``t = 0`` is the unmodified model.
    """
    if n_draws < 1:
        raise InputError(f"n_draws must be >= 1, got {n_draws}")
    if any(t < 0 or not math.isfinite(t) for t in scales):
        raise InputError(f"noise scales must be finite and >= 0, got {list(scales)}")
    loss_fn = loss_fn or _default_loss(device)
    work = copy.deepcopy(model)
    names = list(layers) if layers is not None else fittable_layers(model, fit_config=fit_config)
    if not names:
        raise InputError("noise_path: no layer to add noise to (none given, or none large enough for an MP fit)")
    modules = _modules(work, names)
    sigma2 = {}
    for name, mod in modules.items():
        fit = fit_mp(weight_matrix(mod), fit_config=fit_config, name=name)
        if not fit.ok:
            raise InputError(
                f"layer {name}: {_unfit_reason(fit)} (status {fit.status}), cannot scale noise to its bulk"
            )
        sigma2[name] = fit.sigma2
    originals = {name: mod.weight.detach().clone() for name, mod in modules.items()}
    rows = []
    for draw in range(n_draws):
        gen = torch.Generator().manual_seed(seed * 100_003 + draw)
        noise = {n: torch.randn(originals[n].shape, generator=gen, dtype=torch.float64) for n in names}
        for t in scales:
            added = 0.0
            for name in names:
                delta = math.sqrt(t * sigma2[name]) * noise[name]
                added += float(delta.pow(2).sum())
                _set_weight(modules[name], originals[name].to(torch.float64).cpu() + delta)
            rows.append(
                {
                    "scale": float(t),
                    "draw": draw,
                    **_evaluate_point(work, loader, loss_fn, lambda_reg),
                    "added_energy": added,
                }
            )
            for name in names:
                with torch.no_grad():
                    modules[name].weight.copy_(originals[name])
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# summaries


def monotonicity(
    df: pd.DataFrame,
    x: str,
    metrics: Sequence[str],
    by: Sequence[str] | str | None = None,
    *,
    expect: str = "increasing",
    rtol: float = 1e-9,
) -> pd.DataFrame:
    """Is each metric monotone in ``x`` within each group? One row per (group, metric).

    Values at equal ``x`` are averaged first, NaN left out (an unfit layer); an ``x`` with no value
    at all is dropped, so ``n_points`` counts the points that remain. A step counts as a violation when it goes against
    ``expect`` (``"increasing"`` or ``"decreasing"``) by more than ``rtol`` times the metric's
    range. Columns: the ``by`` keys, metric, expect, n_points, first (value at the smallest x),
    last, change (last - first), rel_change (change / |first|), n_violations, worst_violation
    (largest step against ``expect``, 0 when none), monotone (no violation), spearman (rank
    correlation with x), holds (monotone in the expected direction).
    """
    if expect not in {"increasing", "decreasing"}:
        raise InputError(f"expect must be 'increasing' or 'decreasing', got {expect!r}")
    by = [by] if isinstance(by, str) else list(by or [])
    missing = [c for c in [x, *metrics, *by] if c not in df.columns]
    if missing:
        raise InputError(f"monotonicity: columns {missing} not in the table (have {list(df.columns)})")
    sign = 1.0 if expect == "increasing" else -1.0
    groups = df.groupby(by, sort=True) if by else [((), df)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            curve = group.groupby(x, sort=True)[metric].mean().dropna()
            values = curve.to_numpy(dtype=float)
            steps = sign * np.diff(values)
            span = float(np.ptp(values)) if len(values) else 0.0
            bad = steps < -rtol * max(span, 1e-300)
            first, last = (float(values[0]), float(values[-1])) if len(values) else (float("nan"),) * 2
            rho = (
                float(stats.spearmanr(curve.index, values).statistic) if len(values) > 2 and span > 0 else float("nan")
            )
            rows.append(
                {
                    **dict(zip(by, key)),
                    "metric": metric,
                    "expect": expect,
                    "n_points": len(values),
                    "first": first,
                    "last": last,
                    "change": last - first,
                    "rel_change": (last - first) / abs(first) if first else float("nan"),
                    "n_violations": int(bad.sum()),
                    "worst_violation": float(-steps[bad].min()) if bad.any() else 0.0,
                    "monotone": not bool(bad.any()),
                    "spearman": rho,
                    "holds": (not bool(bad.any())) and len(values) > 1 and sign * (last - first) > 0,
                }
            )
    return pd.DataFrame(rows)


def strength_ordering(
    summary: pd.DataFrame, by: Sequence[str], strength: str = "l2", value: str = "rel_change"
) -> pd.DataFrame:
    """Does a larger ``strength`` give a smaller (more negative) ``value`` within each group?

    Meant for :func:`monotonicity` output of per-epoch tracks: ``rel_change`` should fall as the
    L2 strength grows (faster decay). Columns: the ``by`` keys, strengths, values (in strength
    order), spearman (rank correlation of value with strength; -1 is a perfect ordering),
    ordered (values strictly decreasing with strength).
    """
    rows = []
    for key, group in summary.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values(strength)
        vals = group[value].to_numpy(dtype=float)
        if len(vals) > 2:
            rho = float(stats.spearmanr(group[strength], vals).statistic)
        else:
            rho = float(np.sign(vals[-1] - vals[0])) if len(vals) == 2 else float("nan")
        rows.append(
            {
                **dict(zip(by, key)),
                "strengths": group[strength].tolist(),
                "values": vals.tolist(),
                "spearman": rho,
                "ordered": bool(len(vals) > 1 and np.all(np.diff(vals) < 0)),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# plain-language findings, computed from the tables (the notebooks print these)


def _case(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row[k]:g}" if isinstance(row[k], (float, np.floating)) else f"{k}={row[k]}" for k in keys)


def decay_findings(
    mono: pd.DataFrame,
    ordering: pd.DataFrame | None = None,
    *,
    strength: str = "l2",
    keys: Sequence[str] = ("width", "layer"),
) -> list[str]:
    """Sentences on a :func:`monotonicity` table of per-epoch tracks (``expect="decreasing"``).

    For each metric: with a penalty, how many curves decrease monotonically and which do not
    (with their change); without (``strength == 0``), how many end lower than they started; and,
    with ``ordering`` (:func:`strength_ordering`), where a stronger penalty does not decay faster.
    """
    keys = list(keys)
    if "expect" in mono and (mono["expect"] != "decreasing").any():
        raise InputError("decay_findings reads a monotonicity table computed with expect='decreasing'")
    lines = []
    for metric, group in mono.groupby("metric", sort=False):
        reg, ctrl = group[group[strength] > 0], group[group[strength] == 0]
        if len(reg):
            bad = reg[~reg["holds"]]
            text = (
                f"**{metric}** with L2 > 0: {len(reg) - len(bad)} of {len(reg)} curves fall over training "
                "without rising at any epoch"
            )
            if len(bad):
                text += "; not in " + "; ".join(
                    f"({_case(r, keys + [strength])}: {r['n_violations']} rising epoch(s), "
                    f"net change {100 * r['rel_change']:+.1f}%)"
                    for _, r in bad.iterrows()
                )
            lines.append(text + ".")
        if len(ctrl):
            down = ctrl[ctrl["change"] < 0]
            text = (
                f"**{metric}** without L2 (control): ends lower than at initialisation in {len(down)} of "
                f"{len(ctrl)} cases"
            )
            for word, part in (
                ("rises", ctrl[ctrl["change"] > 0]),
                ("is unchanged", ctrl[ctrl["change"] == 0]),
                ("has no value", ctrl[ctrl["change"].isna()]),
            ):
                if len(part):
                    text += f"; {word} in " + "; ".join(
                        f"({_case(r, keys)}: {100 * r['rel_change']:+.1f}%)"
                        if word == "rises"
                        else f"({_case(r, keys)})"
                        for _, r in part.iterrows()
                    )
            lines.append(text + ".")
    if ordering is not None and len(ordering):
        bad = ordering[~ordering["ordered"]]
        text = (
            f"A stronger L2 gives a larger relative decrease in {len(ordering) - len(bad)} of {len(ordering)} "
            f"(width, layer, metric) cases"
        )
        if len(bad):
            text += "; not in " + "; ".join(
                f"({_case(r, keys + ['metric'])}: changes {', '.join(f'{100 * v:+.1f}%' for v in r['values'])} "
                f"for L2 = {', '.join(f'{s:g}' for s in r['strengths'])})"
                for _, r in bad.iterrows()
            )
        rising = [
            r
            for _, r in ordering[ordering["ordered"]].iterrows()
            if any(v >= 0 for s, v in zip(r["strengths"], r["values"]) if s > 0)
        ]
        if rising:
            text += (
                f"; in {len(rising)} of the ordered cases a run with L2 > 0 does not decrease (up to that strength "
                "a stronger L2 means a smaller rise, not a larger decrease): "
                + "; ".join(
                    f"({_case(r, keys + ['metric'])}: changes {', '.join(f'{100 * v:+.1f}%' for v in r['values'])} "
                    f"for L2 = {', '.join(f'{s:g}' for s in r['strengths'])})"
                    for r in rising
                )
            )
        lines.append(text + ".")
    return lines


def path_findings(mono: pd.DataFrame, *, x_name: str, keys: Sequence[str] = ("target",)) -> list[str]:
    """Sentences on a :func:`monotonicity` table of loss paths: per metric, which curves are
    monotone in the expected direction and, for the others, how large the worst step against it is."""
    keys = list(keys)
    lines = []
    for metric, group in mono.groupby("metric", sort=False):
        good = group[group["holds"]]
        text = (
            f"**{metric}** is {group['expect'].iloc[0]} in {x_name} (at every step) for "
            f"{len(good)} of {len(group)} curves"
        )
        bad = group[~group["holds"]]
        if len(bad):
            text += "; not for " + "; ".join(
                f"({_case(r, keys)}: {r['n_violations']} step(s) against, worst {r['worst_violation']:.3g}, "
                f"end-to-end change {r['change']:+.3g})"
                for _, r in bad.iterrows()
            )
        lines.append(text + ".")
    return lines
