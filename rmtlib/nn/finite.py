"""Refuse a model with NaN/Inf parameters or buffers before anything is changed or written."""

from __future__ import annotations

import torch

from rmtlib.errors import InputError


def check_finite_model(model: torch.nn.Module, what: str) -> None:
    """Every floating-point parameter and buffer finite, else an InputError naming the first bad one
    (a NaN bias was pruned and saved silently: the MP fit only reads weights)."""
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in items:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                layer, _, own = name.rpartition(".")
                raise InputError(
                    f"{what}: layer {layer or '(top)'}: {own} contains {bad} NaN or Inf value(s) (a {kind}); refused "
                    "before any change"
                )
