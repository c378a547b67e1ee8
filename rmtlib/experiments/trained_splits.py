"""Theorem T1 on trained networks (chapter 3, part 1): split each layer at its MP edge and follow the loss.

Networks ``[784, N, N, 10]`` are trained with each L2 strength from the same initial weights
(:func:`train_networks`); each layer large enough for an MP fit is split into ``S`` (the spikes) and
``R`` (the bulk) (:func:`split_table`); the loss is followed along ``S + theta R``
(:func:`theta_paths`) and after adding fresh noise (:func:`noise_paths`), and
:func:`monotonicity_table` / :func:`trained_findings` say whether it moves the way the theorem's
picture predicts. The numbers the chapter's prose quotes come from :func:`split_numbers` and
:func:`ce_rise_numbers`, so text and tables cannot disagree. :func:`certificate_table` checks the
authors' 2026 deterministic certificate on the same networks (:mod:`rmtlib.experiments.certificate`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rmtlib.errors import InputError
from rmtlib.experiments.certificate import data_path_certificate, magnitude_split
from rmtlib.experiments.randomness import (
    fittable_layers,
    monotonicity,
    noise_path,
    path_findings,
    run_decay_experiment,
    split_at_edge,
    theta_path,
)
from rmtlib.spectral.fit_config import FC_FIT_CONFIG, FitConfig
from rmtlib.spectral.layers import weight_matrix
from rmtlib.train.data import load_dataset, make_loader

__all__ = [
    "TrainedNetworks",
    "train_networks",
    "split_table",
    "split_numbers",
    "theta_paths",
    "accuracy_table",
    "noise_paths",
    "monotonicity_table",
    "trained_findings",
    "ce_rise_numbers",
    "certificate_table",
    "certificate_numbers",
]

#: evaluation batch size of the loss measurements (the training batch is the chapter's ``batch_size``)
EVAL_BATCH = 1000


@dataclass
class TrainedNetworks:
    """The networks of one run, by training L2 strength (eval mode), and the data they are measured on."""

    models: dict[float, nn.Module]
    loaders: dict[str, DataLoader]
    """``"train"``: the training subset (the objective), ``"test"``: the test split; batches of 1000."""
    train_set: Dataset
    seconds: float


def train_networks(
    data: str,
    *,
    width: int,
    l2_values: Sequence[float],
    epochs: int,
    train_subset: int | None,
    batch_size: int,
    lr: float,
    seed: int = 0,
    device: str | torch.device | None = None,
    fit_config: FitConfig = FC_FIT_CONFIG,
) -> TrainedNetworks:
    """Train ``[784, width, width, 10]`` once per L2 strength (same seed: same initial weights and batches).

    SGD with momentum 0.9 at a constant learning rate on the first ``train_subset`` training images
    of ``data`` (:func:`rmtlib.experiments.randomness.run_decay_experiment`).
    """
    if not l2_values:
        raise InputError("train_networks: l2_values is empty; give at least one L2 strength")
    train_set = load_dataset(data, "train", flatten=True)
    test_set = load_dataset(data, "test", flatten=True)
    train_loader = make_loader(train_set, batch_size, shuffle=True, seed=seed, subset=train_subset)
    loaders = {
        "train": make_loader(train_set, EVAL_BATCH, subset=train_subset),
        "test": make_loader(test_set, EVAL_BATCH),
    }
    start = time.perf_counter()
    trained = run_decay_experiment(
        [width], l2_values, epochs, train_loader, lr=lr, seed=seed, device=device, fit_config=fit_config,
        keep_models=True,
    )  # fmt: skip
    models = {l2: m.eval() for (_, l2), m in trained["models"].items()}
    return TrainedNetworks(models, loaders, train_set, time.perf_counter() - start)


def split_table(models: Mapping[float, nn.Module], *, fit_config: FitConfig = FC_FIT_CONFIG) -> pd.DataFrame:
    """Each fittable layer of each network split at its MP edge: one row per (l2, layer).

    Columns: l2, layer, shape, spikes, ``||S||_F^2``, ``||R||_F^2``, the bulk's share of the
    Frobenius energy and ``lambda ||R||_F^2`` (the regularization removing the bulk saves).
    """
    rows = []
    for l2, model in models.items():
        modules = dict(model.named_modules())
        for name in fittable_layers(model, fit_config=fit_config):
            S, R, fit = split_at_edge(weight_matrix(modules[name]), fit_config=fit_config, name=name)
            rows.append(
                {
                    "l2": l2,
                    "layer": name,
                    "shape": f"{fit.m} x {fit.n}",
                    "spikes": fit.n_spikes,
                    "||S||_F^2": float(S.pow(2).sum()),
                    "||R||_F^2": float(R.pow(2).sum()),
                    "bulk share of energy": float(R.pow(2).sum() / (S.pow(2).sum() + R.pow(2).sum())),
                    "lambda ||R||_F^2": l2 * float(R.pow(2).sum()),
                }
            )
    return pd.DataFrame(rows)


def split_numbers(splits: pd.DataFrame) -> dict[str, Any]:
    """The split with the smallest bulk share: ``split_share_min``, ``split_share_layer``, ``split_share_l2``."""
    if splits.empty:
        raise InputError("split_numbers: no layer was split (none is large enough for an MP fit)")
    lowest = splits.loc[splits["bulk share of energy"].idxmin()]
    layer = lowest["layer"]
    return {
        "split_share_min": float(lowest["bulk share of energy"]),
        "split_share_layer": int(layer) if str(layer).isdigit() else layer,
        "split_share_l2": float(lowest["l2"]),
    }


def theta_paths(
    models: Mapping[float, nn.Module],
    loaders: Mapping[str, DataLoader],
    thetas: Sequence[float],
    *,
    fit_config: FitConfig = FC_FIT_CONFIG,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """:func:`~rmtlib.experiments.randomness.theta_path` of every network on every loader.

    The loss's lambda is each network's training L2 strength; columns ``l2`` and ``data`` (the
    loader's name) are added.
    """
    paths = []
    for l2, model in models.items():
        for split_name, loader in loaders.items():
            df = theta_path(model, None, thetas, None, loader, l2, fit_config=fit_config, device=device)
            paths.append(df.assign(l2=l2, data=split_name))
    return pd.concat(paths, ignore_index=True)


def accuracy_table(paths: pd.DataFrame, thetas: Sequence[float] = (0.0, 0.5, 1.0)) -> pd.DataFrame:
    """Accuracy on the test split at a few ``thetas`` (those in the run), per (l2, target) of :func:`theta_paths`."""
    table = paths[paths["data"] == "test"].pivot_table(index=["l2", "target"], columns="theta", values="accuracy")
    table = table[[t for t in table.columns if t in tuple(thetas)]]
    table.columns = [f"test accuracy, theta = {t:g}" for t in table.columns]
    return table


def noise_paths(
    models: Mapping[float, nn.Module],
    loader: DataLoader,
    scales: Sequence[float],
    *,
    n_draws: int,
    seed: int = 0,
    fit_config: FitConfig = FC_FIT_CONFIG,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """:func:`~rmtlib.experiments.randomness.noise_path` of every network (all split layers), with column ``l2``."""
    noise = []
    for l2, model in models.items():
        df = noise_path(
            model, None, scales, None, loader, l2, n_draws=n_draws, seed=seed, fit_config=fit_config, device=device
        )
        noise.append(df.assign(l2=l2))
    return pd.concat(noise, ignore_index=True)


def monotonicity_table(paths: pd.DataFrame, noise: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(along theta, under noise): :func:`~rmtlib.experiments.randomness.monotonicity` of the training loss
    and cross-entropy of each curve.

    Both are expected to increase: in theta (removing more of the bulk lowers the loss), per (l2,
    target) on the training images, and in the added variance, per l2.
    """
    mono_theta = monotonicity(paths[paths["data"] == "train"], "theta", ["loss", "ce"], by=["l2", "target"])
    mono_noise = monotonicity(noise, "scale", ["loss", "ce"], by=["l2"])
    return mono_theta, mono_noise


def trained_findings(mono_theta: pd.DataFrame, mono_noise: pd.DataFrame) -> list[str]:
    """Sentences (Markdown) on the two monotonicity tables, per L2 strength, under two italic headings."""
    return (
        ["*Along S + theta R (training loss):*"]
        + [
            f"L2 = {l2:g}: " + line
            for l2, group in mono_theta.groupby("l2")
            for line in path_findings(group, x_name="theta")
        ]
        + ["*Adding noise (training loss):*"]
        + [
            f"L2 = {l2:g}: " + line
            for l2, group in mono_noise.groupby("l2")
            for line in path_findings(group, x_name="the added variance", keys=["l2"])
        ]
    )


def ce_rise_numbers(mono_theta: pd.DataFrame, top_l2: float) -> dict[str, Any]:
    """How much the cross-entropy rose when the bulk was removed (CE at theta 0 minus at theta 1).

    Keys: ``ce_rise_curves`` (curves where it rose), ``ce_curves``, ``ce_rise_min`` / ``ce_rise_max``
    over all curves, and ``ce_top_l2``, ``ce_rise_top_min`` / ``ce_rise_top_max`` at ``top_l2``.
    """
    ce_rise = -mono_theta[mono_theta["metric"] == "ce"].set_index(["l2", "target"])["change"]
    if top_l2 not in ce_rise.index.get_level_values("l2"):
        raise InputError(f"ce_rise_numbers: L2 strength {top_l2:g} has no theta path")
    return {
        "ce_rise_curves": int((ce_rise > 0).sum()),
        "ce_curves": len(ce_rise),
        "ce_rise_min": float(ce_rise.min()),
        "ce_rise_max": float(ce_rise.max()),
        "ce_top_l2": float(top_l2),
        "ce_rise_top_min": float(ce_rise.loc[top_l2].min()),
        "ce_rise_top_max": float(ce_rise.loc[top_l2].max()),
    }


def certificate_table(
    models: Mapping[float, nn.Module],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    fraction: float,
    fit_config: FitConfig = FC_FIT_CONFIG,
) -> pd.DataFrame:
    """The data-path certificate of every fittable layer of every network, for two splits.

    ``"MP bulk"`` removes the bulk (``S`` = the spikes, :func:`split_at_edge`), ``"magnitude 50%"``
    (for ``fraction`` 0.5) the smallest ``fraction`` of the layer's entries; ``lambda2`` is each
    network's training L2 strength. One row per (l2, layer, split): l2, split and the columns of
    :func:`~rmtlib.experiments.certificate.data_path_certificate`, plus ``guarantees a decrease``
    (the bound is below the penalty removed, so removing ``R`` provably lowers the loss).
    """
    rows = []
    for l2, model in models.items():
        modules = dict(model.named_modules())
        for name in fittable_layers(model, fit_config=fit_config):
            S, _, _ = split_at_edge(weight_matrix(modules[name]), fit_config=fit_config, name=name)
            S_mag, _ = magnitude_split(modules[name].weight, fraction)
            for split, signal in (("MP bulk", S), (f"magnitude {fraction:.0%}", S_mag)):
                rows.append(
                    {"l2": l2, "split": split, **data_path_certificate(model, name, signal, inputs, labels, lambda2=l2)}
                )
    certs = pd.DataFrame(rows)
    certs["guarantees a decrease"] = certs["bound"] < certs["penalty_removed"]
    return certs


def certificate_numbers(certs: pd.DataFrame) -> dict[str, Any]:
    """What the chapter's prose quotes from :func:`certificate_table` (keys ``cert_*``)."""
    return {
        "cert_cases": len(certs),
        "cert_holds": int(certs["holds"].sum()),
        "cert_guaranteed": int(certs["guarantees a decrease"].sum()),
        "cert_bound_min": float(certs["bound"].min()),
        "cert_bound_max": float(certs["bound"].max()),
        "cert_ce_change_max": float((certs["ce_S"] - certs["ce_A"]).abs().max()),
        "cert_lip_max": float(certs["certified_lipschitz"].max()),
        "cert_obs_min": float(certs["certified_observed"].min()),
        "cert_obs_max": float(certs["certified_observed"].max()),
        "cert_flipped": int(certs["certified_changed"].sum()),
    }
