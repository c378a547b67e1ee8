"""Count a model's parameters (dense / stored / nonzero) and multiply-adds.

- ``dense``: parameters of the model with every low-rank layer replaced by its dense equivalent,
  i.e. the size of the unpruned architecture; sparsity is always stated against it.
- ``stored``: parameters actually held (low-rank factors count as their two factors).
- ``nonzero``: stored parameters that are not exactly zero.
Shared (tied) parameters are counted once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from rmtlib.errors import InputError
from rmtlib.spectral.layers import prunable_layers, weight_matrix

__all__ = ["count_params", "count_macs", "example_input", "sparsity", "layer_sparsity"]


def count_params(model: nn.Module) -> dict[str, int]:
    """``{"dense", "stored", "nonzero"}`` parameter counts of ``model`` (see module docstring)."""
    seen: set[int] = set()
    stored = nonzero = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.is_meta:
            raise InputError(
                f"parameter {name} is on the meta device: it has a shape but no values, "
                "so its nonzeros cannot be counted (load real weights first)"
            )
        if id(p) in seen:
            continue
        seen.add(id(p))
        stored += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    dense = stored
    for module in model.modules():
        if hasattr(module, "dense_numel"):
            factors = {id(p): p.numel() for p in module.parameters()}
            dense += int(module.dense_numel()) - sum(factors.values())
    return {"dense": dense, "stored": stored, "nonzero": nonzero}


def sparsity(model: nn.Module, dense: int | None = None) -> float:
    """1 - nonzero / dense, against ``dense`` (default: the model's own dense count)."""
    counts = count_params(model)
    return 1.0 - counts["nonzero"] / float(dense if dense is not None else counts["dense"])


def layer_sparsity(model: nn.Module) -> pd.DataFrame:
    """Per Linear/Conv layer (low-rank layers as one): weights held, nonzeros, and the fraction
    of the dense layer's weights that are gone (1 - nonzero / dense m*n). Shows where a method
    put its pruning budget."""

    rows = []
    for name, module in prunable_layers(model):
        weights = [p for n, p in module.named_parameters() if n.endswith("weight")]
        with torch.no_grad():
            dense = int(weight_matrix(module).numel())
        nonzero = sum(int(torch.count_nonzero(w.detach())) for w in weights)
        rows.append(
            {
                "layer": name,
                "dense": dense,
                "stored": sum(w.numel() for w in weights),
                "nonzero": nonzero,
                "sparsity": 1.0 - nonzero / dense,
            }
        )
    return pd.DataFrame(rows, columns=["layer", "dense", "stored", "nonzero", "sparsity"])


def count_macs(model: nn.Module, example_input: Any) -> int:
    """Multiply-adds of one forward pass on ``example_input`` (a tensor or a tuple of them).

    Counted by torch's FlopCounterMode (matmuls, convolutions, attention; FLOPs / 2), so
    attention products count too, and zeros in unstructured-sparse weights do not reduce it.
    The fused fast path of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (taken in
    eval mode without grad, e.g. by torchvision's ViT) is one op the counter does not know, so it
    is switched off while counting: the same layers then run as ordinary matmuls and count.
    """
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
            model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops()) // 2


def _sdpa_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _extra_formulas() -> dict[Any, Any]:
    """Formulas torch's counter lacks: the CPU fused attention kernel (counted like the GPU ones)."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _sdpa_flops} if op is not None else {}


def example_input(model: nn.Module, batch: int = 1) -> torch.Tensor | None:
    """A zero input batch for ``model``, from timm's ``pretrained_cfg['input_size']`` or the first
    Linear layer's width; None when neither tells the input shape."""
    ref = next(model.parameters(), None)
    kw = dict(device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None)
    patch = getattr(model, "patch_embed", None)
    proj = getattr(patch, "proj", None)
    if getattr(patch, "img_size", None) is not None and isinstance(proj, nn.Conv2d):  # timm ViT-like
        return torch.zeros(batch, proj.in_channels, *tuple(patch.img_size), **kw)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if size is not None:
        return torch.zeros(batch, *tuple(size), **kw)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return torch.zeros(batch, module.in_features, **kw)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            return None
    return None
