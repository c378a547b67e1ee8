"""SEB, spectral-edge budgets (the authors' 2026 successor, METHOD.md section 7): data-free global
magnitude pruning in which each layer's weights are divided by a layer weight w_l set by its MP edge.

z_l is the standardised signal of layer l over all target layers (population sd), the signal being
the MP edge s_+ (``sv_edge`` of the fit) or, at low sparsity, the Hill alpha of the spectrum;
w_l = max(floor, 1 + b d(s) z_l) with d(s) = max(0, 1 - s / s_d); every weight is scored
|W_ij| / w_l and the smallest go, globally, to the exact target. A layer with a high signal gets
a large w_l, hence small scores, and is cut harder. With b = 0 SEB is global magnitude pruning.

Layers whose MP fit failed (too small, rank-deficient) or whose Hill alpha cannot be estimated
(fewer than k + 1 singular values) get z_l = 0 (w_l = 1) and take no part in the mean and sd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from rmtlib.errors import InputError, check_number
from rmtlib.pruning.common import Budget, Unit, cut_smallest_keys
from rmtlib.pruning.elementwise import removal_needed
from rmtlib.pruning.registry import PruneContext, register_method
from rmtlib.spectral.heavy_tail import hill_alpha

__all__ = [
    "SebRegime",
    "SEB_REGIMES",
    "SIGNALS",
    "seb_regime",
    "layer_group",
    "seb_signal",
    "seb_layer_weights",
    "seb_keys",
    "seb_cut",
    "seb",
    "target_sparsity",
]

SIGNALS = ("edge", "hill")


@dataclass(frozen=True)
class SebRegime:
    """SEB's defaults for targets up to ``upper``: signal, b per layer group, s_d."""

    upper: float
    signal: str
    b_attn: float
    b_mlp: float
    b_other: float
    s_d: float


#: The authors' regimes by target sparsity s (METHOD.md section 7), in increasing ``upper``.
SEB_REGIMES: tuple[SebRegime, ...] = (
    SebRegime(0.20, "hill", 0.5, 0.5, 0.5, 0.3),
    SebRegime(0.40, "edge", 1.0, 1.0, 1.0, 0.5),
    SebRegime(0.55, "edge", 1.25, 1.25, 1.25, 0.7),
    SebRegime(1.00, "edge", 1.0, 2.0, 1.5, 0.85),
)


def seb_regime(sparsity: float, tol: float = 0.0) -> SebRegime:
    """The regime of target ``sparsity`` (s <= 0.2, <= 0.4, <= 0.55, above); ``tol`` absorbs the
    rounding of a target to a whole count of weights (s = 0.2 stays in the first regime)."""
    for regime in SEB_REGIMES:
        if sparsity <= regime.upper + tol:
            return regime
    return SEB_REGIMES[-1]


def layer_group(name: str) -> str:
    """``attn`` (a timm block's ``attn.qkv``, ``attn.proj``, or split q/k/v), ``mlp`` (``fc1``, ``fc2``)
    or ``other`` (patch embedding, head, anything else): the groups of the high-sparsity regime."""
    parts = name.split(".")
    if "attn" in parts or "qkv" in parts:
        return "attn"
    if "mlp" in parts or parts[-1] in ("fc1", "fc2"):
        return "mlp"
    return "other"


def target_sparsity(budget: Budget) -> float:
    """The whole-model sparsity the budget's target count stands for."""
    if budget.target_nonzero is None:
        raise InputError("seb: sparsity= is required")
    return (budget.dense - budget.target_nonzero) / budget.dense


def seb_signal(units: Sequence[Unit], signal: str, *, hill_k: int = 20) -> np.ndarray:
    """Per-unit signal (s_+ or Hill alpha of the fitted singular values); NaN where it is unavailable."""
    values = np.full(len(units), np.nan)
    for i, unit in enumerate(units):
        if not unit.ok:
            continue
        if signal == "edge":
            values[i] = unit.fit.sv_edge
        else:
            sv = unit.fit.singular_values
            if sv.size > hill_k and np.sort(sv)[::-1][hill_k] > 0:
                values[i] = hill_alpha(sv, k=hill_k)
    values[~np.isfinite(values)] = np.nan
    return values


def _zscores(values: np.ndarray) -> np.ndarray:
    """Standardised values (population sd) over the finite ones; 0 elsewhere and when all are equal."""
    z = np.zeros_like(values)
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return z
    sd = float(np.std(values[ok]))
    if sd > 0:
        z[ok] = (values[ok] - float(np.mean(values[ok]))) / sd
    return z


def seb_layer_weights(
    units: Sequence[Unit],
    sparsity: float,
    *,
    b: float | None = None,
    b_attn: float | None = None,
    b_mlp: float | None = None,
    s_d: float | None = None,
    signal: str | None = None,
    floor: float = 0.1,
    hill_k: int = 20,
    tol: float = 0.0,
) -> dict[str, Any]:
    """w_l of each unit for target ``sparsity`` with the regime's defaults, each overridable.

    ``b`` sets the coefficient of every layer group; ``b_attn`` / ``b_mlp`` override it for
    attention / MLP layers. Returns ``weights`` (array, one per unit), ``z``, ``signal_values``,
    ``d`` and the settings used.
    """
    regime = seb_regime(sparsity, tol)
    signal = regime.signal if signal is None else signal
    s_d = regime.s_d if s_d is None else float(s_d)
    coeff = {
        "attn": b_attn if b_attn is not None else b if b is not None else regime.b_attn,
        "mlp": b_mlp if b_mlp is not None else b if b is not None else regime.b_mlp,
        "other": b if b is not None else regime.b_other,
    }
    values = seb_signal(units, signal, hill_k=hill_k)
    z = _zscores(values)
    d = max(0.0, 1.0 - sparsity / s_d)
    bs = np.array([float(coeff[layer_group(u.name)]) for u in units])
    weights = np.maximum(float(floor), 1.0 + bs * d * z)
    return {
        "weights": weights,
        "z": z,
        "signal_values": values,
        "d": d,
        "signal": signal,
        "s_d": s_d,
        "b": coeff,
        "floor": float(floor),
        "regime_upper": regime.upper,
    }


def seb_keys(units: Sequence[Unit], weights: Sequence[float]) -> list[torch.Tensor]:
    """Flat float32 score |W_ij| / w_l of each unit's entries; entries already zero get -1 (cut first, free)."""
    keys = []
    for unit, w in zip(units, weights):
        flat = unit.matrix.reshape(-1).detach()
        key = flat.abs().to(torch.float32)
        if float(w) != 1.0:  # with w = 1 the key is |W| itself, bit for bit (b = 0 is global magnitude)
            key = key / float(w)
        key[flat == 0] = -1.0
        keys.append(key)
    return keys


def seb_cut(units: Sequence[Unit], weights: Sequence[float], remove: int) -> list[torch.Tensor]:
    """Zero the ``remove`` lowest-scored nonzero entries over all units, in place; returns the per-unit
    boolean masks (unit shape) of the entries this call zeroed."""
    _, cut = cut_smallest_keys(units, [k.cpu() for k in seb_keys(units, weights)], remove)
    for unit in units:
        unit.nnz = int(torch.count_nonzero(unit.matrix))
    return cut


def check_seb_options(name: str, options: Mapping[str, Any]) -> None:
    """InputError naming the option for a bad SEB setting, before any change."""
    for key in ("b", "b_attn", "b_mlp"):
        if options.get(key) is not None:
            check_number(f"{name}: {key}", options[key], minimum=-np.inf)
    if options.get("s_d") is not None:
        check_number(f"{name}: s_d", options["s_d"], minimum=0, exclusive=True)
    if "floor" in options:
        check_number(f"{name}: floor", options["floor"], minimum=0, exclusive=True)
    if "hill_k" in options:
        check_number(f"{name}: hill_k", options["hill_k"], minimum=1, integer=True)
    signal = options.get("signal")
    if signal is not None and signal not in SIGNALS:
        raise InputError(f"{name}: signal must be one of {', '.join(SIGNALS)} (or None: the regime's), got {signal!r}")


@register_method("seb", needs_fit=True, requires_sparsity=True, check=check_seb_options)
def seb(
    ctx: PruneContext,
    *,
    b: float | None = None,
    b_attn: float | None = None,
    b_mlp: float | None = None,
    s_d: float | None = None,
    signal: str | None = None,
    floor: float = 0.1,
    hill_k: int = 20,
) -> dict[str, Any]:
    """SEB (2026): global magnitude on |W| / w_l, w_l = max(floor, 1 + b d(s) z_l) from the layers' MP edges.

    Defaults follow the target's regime (:data:`SEB_REGIMES`); ``b``, ``b_attn``, ``b_mlp``, ``s_d``,
    ``signal`` (``edge`` or ``hill``), ``floor`` and ``hill_k`` override them.
    """
    units, budget = ctx.units, ctx.budget
    sparsity = target_sparsity(budget)
    settings = seb_layer_weights(
        units,
        sparsity,
        b=b,
        b_attn=b_attn,
        b_mlp=b_mlp,
        s_d=s_d,
        signal=signal,
        floor=floor,
        hill_k=int(hill_k),
        tol=1.0 / budget.dense,
    )
    seb_cut(units, settings["weights"], removal_needed(units, budget))
    return {
        "seb_signal": settings["signal"],
        "seb_s_d": settings["s_d"],
        "seb_b": settings["b"],
        "seb_d": settings["d"],
        "seb_weights": {u.name: float(w) for u, w in zip(units, settings["weights"])},
        "seb_z": {u.name: float(z) for u, z in zip(units, settings["z"])},
    }
