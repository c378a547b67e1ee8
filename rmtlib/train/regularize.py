"""Regularization and training-time pruning.

* Composable penalties ``L1``, ``L2``, ``GroupLasso``: ``penalty = L1(1e-6) + L2(1e-6)`` is a callable
  ``penalty(model) -> scalar tensor`` over the weights of the prunable layers (METHOD.md section 4).
* :class:`WeightMask` keeps pruned weights exactly zero while fine-tuning.
* :class:`MPSplitScheduler`: every ``k`` epochs each hidden Linear keeps its singular components
  above the Marchenko-Pastur edge plus a fraction ``f(epoch) = max(0, 1 - epoch / T)`` of the bulk
  ones, stored as two factors when that saves parameters (the paper's "BEMA scheduler").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.lowrank import LowRankLinear, factorize_linear, replace_module
from rmtlib.spectral.fit import fit_mp
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, FC_FIT_CONFIG, FitConfig, check_fit_config
from rmtlib.spectral.layers import FactoredLayer, prunable_layers, weight_matrix


def layer_weights(
    model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> Iterator[tuple[str, str, torch.Tensor]]:
    """(layer name, parameter name, weight) of each prunable layer; a low-rank layer yields its factors.

    A weight shared by several layers (tied) is yielded once, under its name in
    ``model.named_parameters()``: a penalty counts it once, as weight decay would, and a mask keyed
    by that name finds it in the model.
    """
    names = {id(p): pname for pname, p in model.named_parameters()}
    seen: set[int] = set()

    def once(name: str, pname: str, weight: torch.Tensor) -> Iterator[tuple[str, str, torch.Tensor]]:
        if id(weight) not in seen:
            seen.add(id(weight))
            yield name, names.get(id(weight), pname), weight

    for name, module in prunable_layers(model, include, exclude):
        if isinstance(module, FactoredLayer):
            for sub_name, sub in module.named_modules():
                if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    yield from once(name, f"{name}.{sub_name}.weight", sub.weight)
        else:
            yield from once(name, f"{name}.weight", module.weight)


class Penalty:
    """A weight penalty ``coef * sum_l scale_l * term(W_l)`` over the prunable layers of a model.

    ``include``/``exclude`` are fnmatch patterns on layer names; ``scales`` maps a layer name to a
    factor (default 1), e.g. the per-layer ``s_l = 1 / (1 + 1e4 mu_l / i)`` of METHOD.md section 3.
    Penalties add: ``L1(a) + L2(b)`` is their sum.
    """

    def __init__(
        self,
        coef: float,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        scales: Mapping[str, float] | None = None,
    ):
        if not math.isfinite(coef) or coef < 0:
            raise InputError(f"{type(self).__name__} coefficient must be finite and >= 0, got {coef}")
        self.coef = float(coef)
        self.include, self.exclude = include, exclude
        self.scales = dict(scales or {})
        self._checked_model: int | None = None  # the model whose layer names ``scales`` was checked against

    def term(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module) -> torch.Tensor:
        if self.scales and id(model) != self._checked_model:
            unknown = sorted(set(self.scales) - {name for name, _ in prunable_layers(model)})
            if unknown:  # a typo would otherwise leave that layer at scale 1 without a word
                raise InputError(
                    f"{type(self).__name__} scales name no prunable layer of the model: {', '.join(unknown)}"
                )
            self._checked_model = id(model)
        total = None
        for layer, _, weight in layer_weights(model, self.include, self.exclude):
            value = self.scales.get(layer, 1.0) * self.term(weight)
            total = value if total is None else total + value
        if total is None:
            return torch.zeros((), device=next(model.parameters()).device)
        return self.coef * total

    def __add__(self, other: "Penalty") -> "SumPenalty":
        return SumPenalty([self, other])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.coef:g})"


class SumPenalty(Penalty):
    """The sum of several penalties."""

    def __init__(self, parts: Sequence[Penalty]):
        self.parts: list[Penalty] = []
        for part in parts:
            self.parts.extend(part.parts if isinstance(part, SumPenalty) else [part])

    def __call__(self, model: nn.Module) -> torch.Tensor:
        return sum((part(model) for part in self.parts[1:]), self.parts[0](model))

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.parts))


class L1(Penalty):
    """``coef * sum |w|``."""

    def term(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.abs().sum()


class L2(Penalty):
    """``coef * sum w^2`` (no factor 1/2)."""

    def term(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.pow(2).sum()


class GroupLasso(Penalty):
    """``coef * sum_g ||w_g||_2`` over the rows (output units, default) or columns (inputs) of each
    weight matrix; its gradient at an all-zero group is taken as 0."""

    def __init__(self, coef: float, groups: str = "rows", **kwargs):
        if groups not in {"rows", "cols"}:
            raise InputError(f"GroupLasso groups must be 'rows' or 'cols', got {groups!r}")
        super().__init__(coef, **kwargs)
        self.groups = groups

    def term(self, weight: torch.Tensor) -> torch.Tensor:
        matrix = weight.reshape(weight.shape[0], -1)
        squares = matrix.pow(2).sum(dim=1 if self.groups == "rows" else 0)
        nonzero = squares > 0
        safe = torch.where(nonzero, squares, torch.ones_like(squares))
        return torch.where(nonzero, safe.sqrt(), torch.zeros_like(squares)).sum()


class WeightMask:
    """Boolean keep-masks by parameter name; masked entries are held at exactly zero.

    Use ``zero_grads`` after ``backward()`` and ``apply`` after ``optimizer.step()`` (momentum
    and weight decay would otherwise move them); :func:`rmtlib.train.loops.train` does both.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self.masks = {name: m.detach().bool() for name, m in masks.items()}

    @classmethod
    def from_zeros(
        cls, model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> "WeightMask":
        """Freeze the weights of the prunable layers that are exactly zero now."""
        return cls({pname: w.detach() != 0 for _, pname, w in layer_weights(model, include, exclude)})

    def _params(self, model: nn.Module) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        """(parameter, mask) pairs, all checked before any is returned: a bad entry raises and leaves
        the model untouched (not half masked)."""
        params = dict(model.named_parameters())
        pairs = []
        for name, mask in self.masks.items():
            if name not in params:
                raise InputError(f"WeightMask: parameter {name!r} is not in the model")
            p = params[name]
            if p.shape != mask.shape:
                raise InputError(f"WeightMask: {name!r} has shape {tuple(p.shape)}, mask {tuple(mask.shape)}")
            pairs.append((name, p, mask))
        out = []
        for name, p, mask in pairs:
            if mask.device != p.device:
                mask = self.masks[name] = mask.to(p.device)
            out.append((p, mask))
        return out

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Set the masked weights to zero."""
        for p, mask in self._params(model):
            p.masked_fill_(~mask, 0.0)

    @torch.no_grad()
    def zero_grads(self, model: nn.Module) -> None:
        """Set the gradients of the masked weights to zero."""
        for p, mask in self._params(model):
            if p.grad is not None:
                p.grad.masked_fill_(~mask, 0.0)

    def sparsity(self) -> float:
        """Fraction of masked (zeroed) entries."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)


def bulk_fraction(epoch: float, T: float) -> float:
    """``f(epoch) = max(0, 1 - epoch / T)``: the share of bulk components kept at ``epoch``."""
    if not T > 0:  # also refuses NaN, which would silently give f = 0
        raise InputError(f"MP schedule horizon T must be > 0, got {T}")
    return max(0.0, 1.0 - epoch / T)


@dataclass(frozen=True)
class SplitDecision:
    """Outcome of one MP split: ranks before/after, spikes above the edge, the edge and the fit status."""

    layer: str
    rank_before: int
    rank: int
    n_spikes: int
    sv_edge: float
    status: str


def mp_split_rank(
    matrix: torch.Tensor, fraction: float, *, fit_config: FitConfig = DEFAULT_FIT_CONFIG
) -> tuple[int, object]:
    """Rank kept by an MP split: components above the MP edge (fitted with ``fit_config``) plus
    ``floor(fraction * bulk)``, at least 1.

    The product is nudged up by 1e-9 before rounding down, so that an integer such as
    ``bulk_fraction(3, 13) * 117 = 90`` is not lost to binary round-off (89.99999...). A layer
    with no spike and no kept bulk keeps its top component: rank 0 is no layer at all.
    """

    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"bulk fraction must be in [0, 1], got {fraction}")
    fit = fit_mp(matrix.detach().float().cpu(), fit_config=fit_config)
    if fit.status != "ok":
        return min(matrix.shape), fit
    spikes = int((fit.singular_values > fit.sv_edge).sum())
    return max(1, spikes + int(math.floor(fraction * (min(matrix.shape) - spikes) + 1e-9))), fit


def _current_rank(module: nn.Module) -> int:
    if hasattr(module, "rank"):
        return int(module.rank)
    if hasattr(module, "down"):
        return int(module.down.weight.shape[0])
    return min(module.weight.shape)


def mp_split_layer(
    module: nn.Module, fraction: float, name: str = "", *, fit_config: FitConfig = DEFAULT_FIT_CONFIG
) -> tuple[nn.Module, SplitDecision]:
    """Split one Linear (or low-rank Linear) at its MP edge (fitted with ``fit_config``); returns the new
    module and the decision.

    The new module is :func:`rmtlib.nn.lowrank.factorize_linear` of the (product) weight at the kept
    rank: two factors when ``rank < m n / (m + n)``, else a dense Linear holding the truncated weight.
    Layers too small for an MP fit are returned unchanged.
    """

    if not 0.0 <= fraction <= 1.0:  # checked here: the fit's InputError below is read as "unfit"
        raise InputError(f"bulk fraction must be in [0, 1], got {fraction}")
    check_fit_config(fit_config)
    matrix = weight_matrix(module).detach()
    before = _current_rank(module)
    try:
        rank, fit = mp_split_rank(matrix, fraction, fit_config=fit_config)
    except InputError:  # e.g. a low-rank layer whose central spectrum is all zeros: nothing to fit
        return module, SplitDecision(name, before, before, 0, float("nan"), "unfit")
    decision = SplitDecision(
        name, before, min(rank, before), int(getattr(fit, "n_spikes", 0) or 0), float(fit.sv_edge), fit.status
    )
    if fit.status != "ok" or rank >= before:
        return module, SplitDecision(name, before, before, decision.n_spikes, decision.sv_edge, fit.status)
    if isinstance(module, nn.Linear):
        dense = module
    else:
        bias = getattr(getattr(module, "up", None), "bias", None)
        dense = nn.Linear(matrix.shape[1], matrix.shape[0], bias=bias is not None).to(matrix.device, matrix.dtype)
        with torch.no_grad():
            dense.weight.copy_(matrix)
            if bias is not None:
                dense.bias.copy_(bias)
    return factorize_linear(dense, rank), decision


class MPSplitScheduler:
    """Per-epoch hook (for :func:`rmtlib.train.loops.train`) that MP-splits the hidden Linear layers.

    Every ``every`` epochs each hidden layer keeps the components above its MP edge plus
    ``f(epoch) = max(0, 1 - epoch / T)`` of its bulk. ``skip_last`` leaves the output layer alone.
    The MP fits use ``fit_config``, by default the paper's FC setting
    (:data:`rmtlib.spectral.fit_config.FC_FIT_CONFIG`: beta 0.1). Only Linear layers (dense or
    :class:`rmtlib.nn.lowrank.LowRankLinear`) are split.
    The output layer is the model's last Linear, whatever ``include``/``exclude`` select.
    The hook returns ``{"mp_ranks": {layer: rank}, "mp_spikes": {layer: n}}`` for the epoch record.
    """

    def __init__(
        self,
        every: int = 4,
        T: float = 300.0,
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        skip_last: bool = True,
        fit_config: FitConfig = FC_FIT_CONFIG,
    ):
        if every < 1:
            raise InputError(f"MP split period must be >= 1 epoch, got {every}")
        bulk_fraction(0, T)
        self.every, self.T = int(every), float(T)
        self.include, self.exclude, self.skip_last = include, exclude, skip_last
        self.fit_config = check_fit_config(fit_config)
        self.decisions: list[tuple[int, SplitDecision]] = []

    def layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:

        linear = (nn.Linear, LowRankLinear)  # a low-rank conv must not be rebuilt as a Linear
        layers = [(n, m) for n, m in prunable_layers(model, self.include, self.exclude) if isinstance(m, linear)]
        if not self.skip_last:
            return layers
        every = [n for n, m in prunable_layers(model) if isinstance(m, linear)]
        return [(n, m) for n, m in layers if n != every[-1]]

    def __call__(self, epoch: int, model: nn.Module, record: dict | None = None) -> dict | None:
        if epoch % self.every:
            return None
        return self.split(model, bulk_fraction(epoch, self.T), epoch)

    @torch.no_grad()
    def split(self, model: nn.Module, fraction: float, epoch: int = 0) -> dict:
        """Split every hidden layer now, keeping ``fraction`` of the bulk."""

        ranks, spikes = {}, {}
        for name, module in self.layers(model):
            new, decision = mp_split_layer(module, fraction, name, fit_config=self.fit_config)
            if new is not module:
                replace_module(model, name, new)
            self.decisions.append((epoch, decision))
            ranks[name], spikes[name] = decision.rank, decision.n_spikes
        return {"mp_ranks": ranks, "mp_spikes": spikes}
