"""The paper's regularization table (METHOD.md section 4): FC nets trained five ways.

Each row switches two ingredients on or off: L1/L2 weight penalties (:mod:`rmtlib.train.regularize`)
and MP-scheduled splitting of the hidden layers during training
(:class:`rmtlib.train.regularize.MPSplitScheduler`). Training is :func:`rmtlib.train.loops.train` with the
paper's recipe: SGD with momentum 0.9, learning rate 0.01 x 0.96 every 4 epochs.
Widths, epochs and data are parameters, so the same function runs the paper's size on a GPU and
a reduced one on a laptop CPU; :data:`PAPER_FC_TABLE` holds the paper's own numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.count import count_params
from rmtlib.nn.models import fc_net
from rmtlib.spectral.fit_config import FC_FIT_CONFIG, FitConfig
from rmtlib.train.data import load_dataset, make_loader, with_label_noise
from rmtlib.train.loops import evaluate, seed_everything
from rmtlib.train.loops import train as train_loop
from rmtlib.train.regularize import L1, L2, MPSplitScheduler

__all__ = [
    "FCRow",
    "FC_ROWS",
    "PAPER_FC_TABLE",
    "PAPER_WIDTHS",
    "row_penalty",
    "row_scheduler",
    "train_fc_row",
    "run_fc_table",
    "summarize_seeds",
    "compare_with_paper",
]

#: The paper's network (Fashion-MNIST, 100 epochs).
PAPER_WIDTHS: tuple[int, ...] = (784, 3000, 3000, 3000, 3000, 500, 10)


@dataclass(frozen=True)
class FCRow:
    """One training configuration of the table: which of MP splitting, L1 and L2 are on."""

    name: str
    mp_pruning: bool
    l1: bool
    l2: bool


#: The five rows, in the paper's order.
FC_ROWS: tuple[FCRow, ...] = (
    FCRow("no pruning, no regularization", mp_pruning=False, l1=False, l2=False),
    FCRow("MP pruning only", mp_pruning=True, l1=False, l2=False),
    FCRow("L1 + L2 only", mp_pruning=False, l1=True, l2=True),
    FCRow("MP pruning + L1 + L2", mp_pruning=True, l1=True, l2=True),
    FCRow("MP pruning + L2", mp_pruning=True, l1=False, l2=True),
)

#: The paper's reported accuracies (%, Fashion-MNIST, network :data:`PAPER_WIDTHS`, 100 epochs).
PAPER_FC_TABLE = pd.DataFrame(
    [
        {"row": r.name, "test_accuracy": test, "train_accuracy": train}
        for r, (test, train) in zip(
            FC_ROWS, [(71.64, 78.03), (81.22, 88.12), (81.70, 87.57), (90.53, 99.82), (90.16, 99.98)]
        )
    ]
).assign(source="paper", dataset="Fashion-MNIST", widths="-".join(map(str, PAPER_WIDTHS)), epochs=100)


def _row(row: FCRow | str) -> FCRow:
    if isinstance(row, FCRow):
        return row
    for candidate in FC_ROWS:
        if candidate.name == row:
            return candidate
    raise InputError(f"unknown FC table row {row!r}; rows are {[r.name for r in FC_ROWS]}")


def row_penalty(row: FCRow | str, l1: float = 5e-6, l2: float = 5e-6):
    """The weight penalty of a row (``L1(l1)``, ``L2(l2)``, their sum) or None when it has none."""

    row = _row(row)
    parts = ([L1(l1)] if row.l1 else []) + ([L2(l2)] if row.l2 else [])
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def row_scheduler(row: FCRow | str, *, every: int = 4, T: float = 300.0, fit_config: FitConfig = FC_FIT_CONFIG):
    """The row's MP-splitting hook (every ``every`` epochs, bulk fraction ``max(0, 1 - epoch/T)``, MP fits
    with ``fit_config``) or None."""

    row = _row(row)
    return MPSplitScheduler(every=every, T=T, fit_config=fit_config) if row.mp_pruning else None


def _datasets(data: str | tuple[Any, Any], train_subset: int | None):

    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise InputError("data must be a spec string or a (train_set, test_set) pair")
        train_set, test_set = data
    else:
        train_set = load_dataset(data, "train", flatten=True)
        test_set = load_dataset(data, "test", flatten=True)
    if train_subset is not None:
        train_set = torch.utils.data.Subset(train_set, range(min(int(train_subset), len(train_set))))
    return train_set, test_set


def train_fc_row(
    row: FCRow | str,
    train_set: Any,
    test_set: Any,
    *,
    widths: Sequence[int],
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.01,
    schedule: str = "step",
    l1: float = 5e-6,
    l2: float = 5e-6,
    split_every: int = 4,
    T: float | None = None,
    fit_config: FitConfig = FC_FIT_CONFIG,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], nn.Module, list[dict]]:
    """Train one row's FC net from a seeded init; return (result row, model, per-epoch history).

    ``schedule="step"`` is the paper's learning rate, x 0.96 every 4 epochs (see
    :func:`rmtlib.train.loops.lr_schedule`). ``T`` defaults to ``3 * epochs`` (the paper's 300 for 100
    epochs), so a shortened run ends with the same bulk fraction (2/3) as the paper's.
    """

    row = _row(row)
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    T = float(3 * epochs if T is None else T)
    seed_everything(seed)
    model = fc_net(widths)
    scheduler = row_scheduler(row, every=split_every, T=T, fit_config=fit_config)
    loader = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    start = time.perf_counter()
    history = train_loop(
        model,
        loader,
        epochs,
        optimizer="sgd",
        lr=lr,
        schedule=schedule,
        penalty=row_penalty(row, l1, l2),
        hooks=[scheduler] if scheduler is not None else [],
        device=device,
        seed=seed,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    eval_bs = 1000
    test = evaluate(model, make_loader(test_set, eval_bs), device)
    train_eval = evaluate(model, make_loader(train_set, eval_bs), device)
    counts = count_params(model)
    ranks = history[-1].get("mp_ranks") if scheduler is not None else None
    if scheduler is not None and ranks is None:  # last epoch was not a split epoch
        ranks = next((h["mp_ranks"] for h in reversed(history) if "mp_ranks" in h), None)
    result = {
        "row": row.name,
        "mp_pruning": row.mp_pruning,
        "l1": l1 if row.l1 else 0.0,
        "l2": l2 if row.l2 else 0.0,
        "test_accuracy": 100.0 * test["accuracy"],
        "train_accuracy": 100.0 * train_eval["accuracy"],
        "test_loss": test["loss"],
        "params_dense": counts["dense"],
        "params_stored": counts["stored"],
        "param_reduction": 1.0 - counts["stored"] / counts["dense"],
        "ranks": ",".join(str(r) for r in ranks.values()) if ranks else "",
        "seconds": seconds,
        "epochs": epochs,
        "widths": "-".join(map(str, widths)),
        "seed": seed,
    }
    return result, model, history


def run_fc_table(
    *,
    widths: Sequence[int] = (784, 512, 512, 512, 10),
    epochs: int = 20,
    data: str | tuple[Any, Any] = "mnist",
    rows: Sequence[FCRow | str] | None = None,
    train_subset: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    **train_kwargs: Any,
) -> pd.DataFrame:
    """Train every row (default: all five) once per seed; one result row each (accuracies in %).

    ``seeds`` (default ``[seed]``) each fix the initial network, the batch order, the MP fits and the
    label noise; within one seed all rows start from the same network and see the same batches, so
    rows can be compared seed by seed (:func:`summarize_seeds`).

    ``data`` is ``"mnist"`` (offline, default), ``"fashion-mnist:FOLDER"`` or a folder of
    Fashion-MNIST IDX files (the paper's data), or a ``(train_set, test_set)`` pair of datasets.
    ``train_subset`` keeps the first samples of the training split (a CPU budget).
    ``label_noise`` gives that fraction of the training images a wrong label
    (:func:`rmtlib.train.data.with_label_noise`, drawn per seed; the test split stays clean), a
    memorization stress test; ``train_accuracy`` is then measured against the labels trained on.
    Other keywords go to :func:`train_fc_row` (``batch_size``, ``lr``, ``schedule``, ``l1``, ``l2``,
    ``split_every``, ``T``, ``fit_config``).
    Columns: row, mp_pruning, l1, l2, test_accuracy, train_accuracy, test_loss, params_dense,
    params_stored, param_reduction, ranks (final hidden ranks), seconds, epochs, widths, seed,
    dataset, label_noise, source (``measured``).
    """

    widths = [int(w) for w in widths]
    if len(widths) < 3:
        raise InputError(f"widths must have at least one hidden layer, got {widths}")
    seeds = [int(seed)] if seeds is None else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    base_train, test_set = _datasets(data, train_subset)
    dim = int(base_train[0][0].numel())
    if widths[0] != dim:
        raise InputError(f"widths[0] = {widths[0]} but the data {data!r} has {dim} input features")
    chosen = [_row(r) for r in (rows if rows is not None else FC_ROWS)]
    results = []
    for run_seed in seeds:
        train_set = with_label_noise(base_train, label_noise, seed=run_seed) if label_noise else base_train
        for row in chosen:
            result, _, _ = train_fc_row(
                row,
                train_set,
                test_set,
                widths=widths,
                epochs=epochs,
                seed=run_seed,
                device=device,
                progress=progress,
                **train_kwargs,
            )
            results.append(result)
    dataset = (
        "MNIST"
        if data == "mnist"
        else "custom"
        if not isinstance(data, str)
        else "synthetic"
        if data == "synthetic"
        else f"Fashion-MNIST ({data})"
    )
    return pd.DataFrame(results).assign(dataset=dataset, label_noise=float(label_noise), source="measured")


def summarize_seeds(measured: pd.DataFrame, baseline: str = FC_ROWS[0].name) -> pd.DataFrame:
    """Per row: mean and standard deviation over seeds, and the *paired* gain over ``baseline``.

    The gain is computed seed by seed (row minus baseline, same initial network and batches), then
    averaged, which cancels the seed-to-seed variation the rows share. ``test_gain_ci95`` is the
    half-width of its 95% Student-t interval (with 3 seeds t = 4.30, so twice the standard error
    would claim far more than three runs show). Standard deviations and intervals are NaN for a
    single seed. Rows keep the paper's order.
    """
    cols = ["test_accuracy", "train_accuracy", "param_reduction"]
    repeated = measured.duplicated(["row", "seed"])
    if repeated.any():
        first = measured.loc[repeated, ["row", "seed"]].iloc[0]
        raise InputError(
            f"summarize_seeds: row {first['row']!r} has seed {first['seed']} more than once "
            "(several configurations in one table?); pairing by seed needs one run per (row, seed)"
        )
    grouped = measured.groupby("row")
    out = grouped[cols].mean().add_suffix("_mean").join(grouped[cols[:2]].std(ddof=1).add_suffix("_sd"))
    out["n_seeds"] = grouped["seed"].nunique()
    if baseline in set(measured["row"]):
        base = measured[measured["row"] == baseline].set_index("seed")["test_accuracy"]
        gain = measured["test_accuracy"] - measured["seed"].map(base)
        paired = gain.groupby(measured["row"])
        out["test_gain_mean"], out["test_gain_sd"] = paired.mean(), paired.std(ddof=1)
        n = paired.count()
        quantile = stats.t.ppf(0.975, (n - 1).where(n > 1))
        out["test_gain_ci95"] = quantile * out["test_gain_sd"] / np.sqrt(n)
    order = [r.name for r in FC_ROWS if r.name in out.index]
    columns = [
        "test_accuracy_mean",
        "test_accuracy_sd",
        "test_gain_mean",
        "test_gain_sd",
        "test_gain_ci95",
        "train_accuracy_mean",
        "train_accuracy_sd",
        "param_reduction_mean",
        "n_seeds",
    ]
    out = out.reindex(index=order, columns=[c for c in columns if c in out.columns])
    out.index.name = "row"
    return out


def compare_with_paper(measured: pd.DataFrame) -> pd.DataFrame:
    """The paper's and our accuracies side by side, one line per row (ours: mean over seeds)."""
    paper = PAPER_FC_TABLE.set_index("row")[["test_accuracy", "train_accuracy"]]
    ours = measured.groupby("row")[["test_accuracy", "train_accuracy"]].mean()
    order = [r.name for r in FC_ROWS if r.name in ours.index or r.name in paper.index]
    out = pd.concat(
        {"paper (Fashion-MNIST, 784-3000x4-500-10, 100 epochs)": paper, "measured here": ours}, axis=1
    ).reindex(order)
    out.index.name = "training"
    return out
