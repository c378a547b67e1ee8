"""The authors' 2026 data-path certificate for removing part of one layer (METHOD.md section 7).

Split a layer ``A = S + R`` and let ``psi(s)`` be the layer's input for sample ``s``. For a chain of
Linear layers and 1-Lipschitz elementwise activations, the logits move by at most
``L ||R psi(s)||_inf`` in the sup norm, where ``L`` is the product of the induced inf-norms (largest
absolute row sum) of the later Linear weights (:func:`rest_lipschitz`; biases cancel). The
softmax cross-entropy is 2-Lipschitz in the sup norm of the logits: its gradient in ``z`` is
``softmax(z) - e_y``, whose l1 norm is ``2 (1 - p_y) < 2`` (:data:`CE_LINF_LIPSCHITZ`). Hence, with
``J = mean CE + lambda2 ||.||_F^2 + lambda1 ||.||_1`` and ``B_T(R) = (2 / |T|) sum_s L ||R psi(s)||_inf``,

    J(S) <= J(A) - lambda2 ||R||_F^2 - lambda1 ||R||_1 + B_T(R),

deterministically, whenever ``||A||_F^2 = ||S||_F^2 + ||R||_F^2`` and ``||A||_1 = ||S||_1 + ||R||_1``:
true for disjoint supports (magnitude pruning: :func:`magnitude_split`), and for the MP split at the
edge (orthogonal singular subspaces) when ``lambda1 = 0``. A sample's label cannot change if its
dense margin (top logit minus the runner-up) exceeds ``2 ||z_S(s) - z_A(s)||_inf``, and so if it
exceeds ``2 L ||R psi(s)||_inf``, a check that needs no pass through the pruned network.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rmtlib.errors import InputError

__all__ = ["CE_LINF_LIPSCHITZ", "rest_lipschitz", "magnitude_split", "data_path_certificate"]

CE_LINF_LIPSCHITZ = 2.0
"""l-inf Lipschitz constant of ``z -> CE(z, y)``: sup_z ||softmax(z) - e_y||_1 = sup 2 (1 - p_y) = 2."""

_ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Identity, nn.Dropout, nn.Hardtanh)


def _chain(model: nn.Module, layer: str) -> tuple[list[nn.Module], int]:
    """The model's modules as a flat chain and the position of ``layer`` in it."""
    if not isinstance(model, nn.Sequential):
        raise InputError(f"the certificate needs an nn.Sequential chain of layers, got {type(model).__name__}")
    names = [name for name, _ in model.named_children()]
    if layer not in names:
        raise InputError(f"layer {layer!r} is not a child of the model (have: {names})")
    index = names.index(layer)
    if not isinstance(model[index], nn.Linear):
        raise InputError(f"layer {layer!r} is a {type(model[index]).__name__}, not a Linear layer")
    return list(model.children()), index


def rest_lipschitz(model: nn.Module, layer: str) -> float:
    """Sup-norm Lipschitz bound of the network from ``layer``'s output to the logits.

    The product of ``max_i sum_j |W_ij|`` over the Linear layers after ``layer``; ReLU, Tanh,
    Hardtanh, Dropout (in eval) and Identity are 1-Lipschitz elementwise and add nothing. Any
    other module after ``layer`` raises :class:`InputError` (no bound is known for it here).
    """
    chain, index = _chain(model, layer)
    bound = 1.0
    for module in chain[index + 1 :]:
        if isinstance(module, nn.Linear):
            bound *= float(module.weight.detach().to(torch.float64).abs().sum(dim=1).max())
        elif not isinstance(module, _ONE_LIPSCHITZ):
            raise InputError(f"no sup-norm Lipschitz bound for a {type(module).__name__} after layer {layer!r}")
    return bound


def magnitude_split(weight: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight = S + R`` with disjoint supports: ``R`` holds the ``fraction`` of entries smallest in magnitude."""
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"magnitude_split: fraction must be in [0, 1], got {fraction}")
    w = weight.detach().to(torch.float64)
    k = int(round(fraction * w.numel()))
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    if k:
        mask[torch.argsort(w.abs().flatten(), stable=True)[:k]] = True
    mask = mask.reshape(w.shape)
    return torch.where(mask, 0.0, w), torch.where(mask, w, 0.0)


def _penalty(model: nn.Module, lambda2: float, lambda1: float) -> float:
    """``lambda2 sum ||W||_F^2 + lambda1 sum ||W||_1`` over the Linear weights (biases excluded)."""
    total = 0.0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            w = module.weight.detach().to(torch.float64)
            total += lambda2 * float(w.pow(2).sum()) + lambda1 * float(w.abs().sum())
    return total


def data_path_certificate(
    model: nn.Module,
    layer: str,
    signal: Any,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    lambda2: float = 0.0,
    lambda1: float = 0.0,
) -> dict[str, float]:
    """Check ``J(S) <= J(A) - lambda2 ||R||_F^2 - lambda1 ||R||_1 + B_T(R)`` on the samples ``T``.

    Args:
        model: an ``nn.Sequential`` of Linear layers and 1-Lipschitz activations (e.g.
            :func:`rmtlib.nn.models.fc_net`); not modified (a float64 copy is evaluated).
        layer: the child name of the split Linear layer (``"3"`` for fc_net's second layer).
        signal: ``S``, same shape as the layer's weight; ``R = A - S``.
        inputs, labels: the samples ``T`` (inputs as the model takes them).
        lambda2, lambda1: the penalties of ``J`` (over all Linear weights; only the split layer changes).

    Returns a dict: n_samples, lipschitz_rest (``L``), ce_A, ce_S, j_A, j_S, r_fro2, r_l1, bound
    (``B_T(R)``), rhs, holds (``j_S <= rhs``), margin_to_bound (``rhs - j_S``), and per-sample checks:
    certified_lipschitz (fraction with margin > 2 L ||R psi||_inf), certified_observed (margin >
    2 ||z_S - z_A||_inf), label_changed (fraction whose argmax differs), certified_changed (samples
    certified by the observed check whose label changed; 0 by construction), and max_ce_ratio (the
    largest |CE_s(S) - CE_s(A)| / (2 L ||R psi(s)||_inf), <= 1).
    """
    chain, index = _chain(model, layer)
    if lambda2 < 0 or lambda1 < 0:
        raise InputError(f"lambda2 and lambda1 must be >= 0, got {lambda2}, {lambda1}")
    work = copy.deepcopy(model).to(torch.float64).eval()
    target = work[index]
    a = target.weight.detach().clone()
    s = torch.as_tensor(np.asarray(signal) if not isinstance(signal, torch.Tensor) else signal).to(torch.float64)
    if s.shape != a.shape:
        raise InputError(f"signal has shape {tuple(s.shape)}, layer {layer!r} has {tuple(a.shape)}")
    r = a - s
    disjoint = bool(((s != 0) & (r != 0)).sum() == 0)
    inner = float((s * r).sum())
    orthogonal = abs(inner) <= 1e-9 * max(float(s.norm() * r.norm()), 1e-300)
    if not (disjoint or (orthogonal and lambda1 == 0)):
        raise InputError(
            f"layer {layer!r}: S and R must have disjoint supports (or be Frobenius-orthogonal with lambda1 = 0) "
            f"for the certificate's norm identities; <S, R> = {inner:.3g}"
        )
    x = inputs.to(torch.float64)
    y = labels.to(torch.long)
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"inputs and labels must be non-empty and of equal length, got {len(x)} and {len(y)}")
    captured: dict[str, torch.Tensor] = {}
    handle = target.register_forward_pre_hook(lambda _m, args: captured.__setitem__("psi", args[0].detach()))
    with torch.no_grad():
        z_a = work(x)
        handle.remove()
        psi = captured["psi"]
        target.weight.copy_(s)
        z_s = work(x)
        pen_s = _penalty(work, lambda2, lambda1)
        target.weight.copy_(a)
        pen_a = _penalty(work, lambda2, lambda1)
    lip = rest_lipschitz(work, layer)
    r_psi = (psi @ r.T).abs().amax(dim=1)  # ||R psi(s)||_inf per sample
    ce_a_s = F.cross_entropy(z_a, y, reduction="none")
    ce_s_s = F.cross_entropy(z_s, y, reduction="none")
    per_bound = CE_LINF_LIPSCHITZ * lip * r_psi
    bound = float(per_bound.mean())
    r_fro2, r_l1 = float(r.pow(2).sum()), float(r.abs().sum())
    j_a = float(ce_a_s.mean()) + pen_a
    j_s = float(ce_s_s.mean()) + pen_s
    rhs = j_a - lambda2 * r_fro2 - lambda1 * r_l1 + bound
    top2 = z_a.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    moved = (z_s - z_a).abs().amax(dim=1)
    changed = z_s.argmax(1) != z_a.argmax(1)
    cert_obs = margin > 2 * moved
    diff = (ce_s_s - ce_a_s).abs()
    ratio = torch.where(per_bound > 0, diff / per_bound, torch.zeros_like(diff))
    return {
        "layer": layer,
        "n_samples": len(x),
        "lambda2": float(lambda2),
        "lambda1": float(lambda1),
        "lipschitz_rest": lip,
        "ce_A": float(ce_a_s.mean()),
        "ce_S": float(ce_s_s.mean()),
        "j_A": j_a,
        "j_S": j_s,
        "r_fro2": r_fro2,
        "r_l1": r_l1,
        "penalty_removed": lambda2 * r_fro2 + lambda1 * r_l1,
        "bound": bound,
        "rhs": rhs,
        "holds": j_s <= rhs,
        "margin_to_bound": rhs - j_s,
        "certified_lipschitz": float((margin > 2 * lip * r_psi).double().mean()),
        "certified_observed": float(cert_obs.double().mean()),
        "label_changed": float(changed.double().mean()),
        "certified_changed": int((cert_obs & changed).sum()),
        "max_ce_ratio": float(ratio.max()),
    }
