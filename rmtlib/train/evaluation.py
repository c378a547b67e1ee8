"""Per-sample evaluation: what each sample scored, so two models can be compared sample by sample.

:func:`predict` runs a model over a loader and keeps every sample's logits and label;
:func:`sample_metrics` turns a pruned model's logits and the dense model's into per-sample
correctness, cross-entropy, KL divergence from the dense model's predictive distribution and the
"label certified" flag of the authors' 2026 data-path certificate (METHOD.md section 7): the dense
margin (top logit minus runner-up) exceeds ``2 * ||z_pruned - z_dense||_inf``, so the pruned
model's top class is the dense model's whatever the logits did below that bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from rmtlib.errors import InputError
from rmtlib.runtime import get_device
from rmtlib.train.distributed import is_distributed
from rmtlib.train.loops import _autocast

__all__ = ["Predictions", "predict", "sample_metrics"]


@dataclass(frozen=True)
class Predictions:
    """Logits (``n x classes``, float32) and integer labels (``n``) of every evaluated sample, in loader order."""

    logits: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device | None = None,
    *,
    amp: bool | None = None,
    max_batches: int | None = None,
) -> Predictions:
    """Every sample's logits and label over ``loader`` (its first ``max_batches`` batches when given).

    Under ``torch.distributed`` each process's shard is gathered, so every process holds the same
    arrays; a sampler that lists its ``indices`` (:class:`rmtlib.train.data.ShardSampler`) puts the
    samples back in dataset order, the order of a single process, so paired statistics match it.
    """
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    logits, labels = [], []
    for i, (x, y) in enumerate(iter(loader)):
        if max_batches is not None and i >= max_batches:
            break
        with _autocast(device, amp):
            z = model(x.to(device, non_blocking=True))
        logits.append(z.float().cpu())
        labels.append(torch.as_tensor(y).cpu())
    model.train(was_training)
    if not labels:
        raise InputError("predict: the loader yielded no samples")
    out = (torch.cat(logits).numpy(), torch.cat(labels).long().numpy())
    if is_distributed():
        indices = getattr(getattr(loader, "sampler", None), "indices", None)
        mine = None if indices is None else np.asarray(indices[: len(out[1])])
        shards: list = [None] * dist.get_world_size()
        dist.all_gather_object(shards, (*out, mine))
        out = (np.concatenate([s[0] for s in shards]), np.concatenate([s[1] for s in shards]))
        if all(s[2] is not None for s in shards):
            order = np.argsort(np.concatenate([s[2] for s in shards]), kind="stable")
            out = (out[0][order], out[1][order])
    return Predictions(logits=out[0], labels=out[1])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def sample_metrics(pred: Predictions, dense: Predictions) -> dict[str, np.ndarray]:
    """Per-sample ``correct`` (bool), ``ce`` (cross-entropy, nats), ``kl_to_dense`` (KL(p_dense || p), nats)
    and ``certified`` (bool: dense margin > 2 max_k |z_k - z_dense,k|) of ``pred`` against the dense model.

    ``dense`` must hold the same samples in the same order (checked by their labels and shape).
    """
    if pred.logits.shape != dense.logits.shape or not np.array_equal(pred.labels, dense.labels):
        raise InputError(
            f"sample_metrics: the predictions ({pred.logits.shape}) and the dense model's ({dense.logits.shape}) "
            "are not of the same samples in the same order"
        )
    if dense.logits.shape[1] < 2:
        raise InputError("sample_metrics: a margin needs at least two classes")
    logp, logq = _log_softmax(pred.logits), _log_softmax(dense.logits)
    rows = np.arange(len(pred.labels))
    top2 = np.sort(dense.logits.astype(np.float64), axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    shift = np.abs(pred.logits.astype(np.float64) - dense.logits.astype(np.float64)).max(axis=1)
    return {
        "correct": pred.logits.argmax(axis=1) == pred.labels,
        "ce": -logp[rows, pred.labels],
        "kl_to_dense": np.maximum((np.exp(logq) * (logq - logp)).sum(axis=1), 0.0),
        "certified": margin > 2.0 * shift,
    }
