"""Low-rank factorized layers: W (m x n) stored as two factors up (m x r) @ down (r x n).

A factorized layer stores r (m + n) weights instead of m n, and costs r (m + n) multiply-adds
per output position instead of m n, so it pays exactly when r < m n / (m + n). The factors come
from a float64 SVD (W_r = U_r S_r V_r^T, split as U_r S_r^(1/2) and S_r^(1/2) V_r^T, which keeps
the two factors equally scaled); at full rank the layer reproduces the original outputs.
Computing a factorization (:func:`low_rank_factors`) is separate from applying it to a module
(:func:`factorize`, :func:`replace_module`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.spectral.gram import gram
from rmtlib.spectral.layers import FactoredLayer

__all__ = [
    "LowRankLinear",
    "LowRankConv2d",
    "low_rank_factors",
    "gram_eigh",
    "factors_from_gram",
    "saves_params",
    "max_useful_rank",
    "can_factorize",
    "factorize",
    "factorize_linear",
    "replace_module",
    "lowrank_structure",
    "apply_lowrank_structure",
]


def saves_params(m: int, n: int, rank: int) -> bool:
    """True when rank r factors (r (m + n) weights) are smaller than the dense m x n matrix."""
    return rank * (m + n) < m * n


def max_useful_rank(m: int, n: int) -> int:
    """The largest rank whose factorization still saves parameters (0 when none does)."""
    return max(0, math.ceil(m * n / (m + n)) - 1)


def low_rank_factors(
    matrix: torch.Tensor, rank: int, *, device: str | torch.device | None = None, method: str = "gram"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors (up: m x r, down: r x n, float64) of ``matrix``.

    ``method="gram"`` (default) diagonalises the smaller Gram matrix (p x p, float64) and
    projects: W_r = U_r (U_r^T W), several times faster than an SVD on the CPU and exact at full
    rank (U U^T = I); ``method="svd"`` uses ``torch.linalg.svd``. Either way the factors are
    balanced (column j of up and row j of down both have norm sqrt(s_j)). Runs on ``device``
    (default: the matrix's device); results stay there.
    """
    if matrix.ndim != 2:
        raise InputError(f"expected a 2-D matrix, got shape {tuple(matrix.shape)}")
    m, n = matrix.shape
    rank = _positive_rank(rank)
    if not 1 <= rank <= min(m, n):
        raise InputError(f"rank must be in [1, {min(m, n)}] for a {m} x {n} matrix, got {rank}")
    if method not in ("gram", "svd"):
        raise InputError(f"method must be 'gram' or 'svd', got {method!r}")
    w = matrix.detach().to(device=device if device is not None else matrix.device, dtype=torch.float64)
    if not w.is_meta and not bool(torch.isfinite(w).all()):  # a meta tensor has shapes only: meta factors
        raise InputError("matrix contains NaN or Inf entries")
    if method == "svd":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        root = s[:rank].sqrt()
        return u[:, :rank] * root, root[:, None] * vh[:rank]
    return factors_from_gram(w, *gram_eigh(w), rank)


def gram_eigh(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition (ascending) of the smaller Gram matrix of ``w``: W W^T if m <= n, else W^T W."""
    return torch.linalg.eigh(gram(w))


def factors_from_gram(
    w: torch.Tensor, eigval: torch.Tensor, eigvec: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-``rank`` factors of ``w`` from its Gram eigen-decomposition (see :func:`gram_eigh`)."""
    left = w.shape[0] <= w.shape[1]
    w = w.to(eigvec.dtype)
    basis = eigvec[:, -rank:].flip(1)  # top eigenvectors, descending
    quarter = eigval[-rank:].flip(0).clamp(min=0).pow(0.25)  # sqrt(s)
    scale = torch.where(quarter > 0, 1.0 / quarter, torch.zeros_like(quarter))
    if left:  # W_r = U_r (U_r^T W)
        return basis * quarter, scale[:, None] * (basis.T @ w)
    return (w @ basis) * scale, quarter[:, None] * basis.T  # W_r = (W V_r) V_r^T


def _positive_rank(rank: Any) -> int:
    """``rank`` as an int >= 1; a fractional rank (2.5) is an InputError, not silently truncated."""
    try:
        value = float(rank)
    except (TypeError, ValueError) as err:
        raise InputError(f"rank must be a whole number >= 1, got {rank!r}") from err
    if not value.is_integer() or value < 1:
        raise InputError(f"rank must be a whole number >= 1, got {rank!r}")
    return int(value)


def _checked_factors(
    factors: tuple[torch.Tensor, torch.Tensor], m: int, n: int, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``factors`` (up, down) if they are m x rank and rank x n; else InputError (copying them into the
    layer would broadcast a rank-1 pair into every column, or fail with a bare size mismatch)."""
    up, down = factors
    if tuple(up.shape) != (m, rank) or tuple(down.shape) != (rank, n):
        raise InputError(
            f"factors of a rank-{rank} {m} x {n} layer must be {m} x {rank} and {rank} x {n}, "
            f"got {tuple(up.shape)} and {tuple(down.shape)}"
        )
    return up, down


class LowRankLinear(FactoredLayer):
    """y = up(down(x)): a Linear layer of rank ``rank`` stored as two factors.

    ``down = nn.Linear(in_features, rank, bias=False)``, ``up = nn.Linear(rank, out_features, bias)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        rank = _positive_rank(rank)
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def rmt_matrix(self) -> torch.Tensor:
        """The effective out x in weight matrix up.weight @ down.weight (a new tensor)."""
        return (self.up.weight @ self.down.weight).detach()

    def dense_numel(self) -> int:
        """Parameters of the equivalent dense Linear (weight plus bias)."""
        return self.in_features * self.out_features + (self.out_features if self.up.bias is not None else 0)

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        rank: int,
        *,
        device: Any = None,
        factors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> "LowRankLinear":
        """Rank-``rank`` truncation of ``linear`` (bias copied); same dtype and device as ``linear``.

        ``factors`` (up, down) computed elsewhere are used as given instead of a new factorization.
        """
        weight = linear.rmt_matrix() if isinstance(linear, FactoredLayer) else linear.weight
        bias = linear.bias
        layer = cls(
            weight.shape[1], weight.shape[0], rank, bias=bias is not None, device=weight.device, dtype=weight.dtype
        )
        m, n = weight.shape
        up, down = (
            _checked_factors(factors, m, n, rank)
            if factors is not None
            else low_rank_factors(weight, rank, device=device)
        )
        with torch.no_grad():
            layer.up.weight.copy_(up)
            layer.down.weight.copy_(down)
            if bias is not None:
                layer.up.bias.copy_(bias)
        return layer

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"bias={self.up.bias is not None}"
        )


class LowRankConv2d(FactoredLayer):
    """A Conv2d of rank ``rank``: a k x k conv to ``rank`` channels, then a 1 x 1 conv to the outputs.

    Its matrix is the C_out x (C_in k k) unfolding used for MP fitting; only ``groups=1`` convs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        rank: int,
        *,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        rank = _positive_rank(rank)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.rank = rank
        self.down = nn.Conv2d(
            in_channels,
            rank,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.up = nn.Conv2d(rank, out_channels, 1, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def rmt_matrix(self) -> torch.Tensor:
        return (self.up.weight.reshape(self.out_channels, self.rank) @ self.down.weight.reshape(self.rank, -1)).detach()

    def dense_numel(self) -> int:
        return self.out_channels * self.down.weight[0].numel() + (self.out_channels if self.up.bias is not None else 0)

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, rank: int, *, device: Any = None, factors: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> "LowRankConv2d":
        """Rank-``rank`` truncation of a groups=1 ``conv`` (bias copied); same dtype and device.

        ``factors`` (up: C_out x r, down: r x C_in k k) computed elsewhere are used as given.
        """
        if conv.groups != 1:
            raise InputError(f"only groups=1 convolutions can be factorized, got groups={conv.groups}")
        weight = conv.weight
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            rank,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=weight.device,
            dtype=weight.dtype,
        )
        matrix = weight.reshape(weight.shape[0], -1)
        up, down = (
            _checked_factors(factors, *matrix.shape, rank)
            if factors is not None
            else low_rank_factors(matrix, rank, device=device)
        )
        with torch.no_grad():
            layer.up.weight.copy_(up.reshape(layer.up.weight.shape))
            layer.down.weight.copy_(down.reshape(layer.down.weight.shape))
            if conv.bias is not None:
                layer.up.bias.copy_(conv.bias)
        return layer

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, rank={self.rank}"


def can_factorize(module: nn.Module) -> bool:
    """Whether :func:`factorize` handles ``module``: a plain Linear, a groups=1 Conv2d, or a low-rank layer.

    Subclasses of Linear are refused on purpose: some (e.g. the out_proj of
    ``nn.MultiheadAttention``) are read by their parent as raw weights, not called.
    """
    if isinstance(module, (LowRankLinear, LowRankConv2d)):
        return True
    if type(module) is nn.Linear:
        return True
    return type(module) is nn.Conv2d and module.groups == 1


def factorize(
    module: nn.Module, rank: int, *, device: Any = None, factors: tuple[torch.Tensor, torch.Tensor] | None = None
) -> nn.Module:
    """A rank-``rank`` low-rank replacement for a Linear, Conv2d or low-rank layer (always factorized).

    Always factorized means: a rank with r (m + n) >= m n gives a layer larger and slower than the
    dense one (see :func:`saves_params`, :func:`factorize_linear`). Only the modules
    :func:`can_factorize` accepts: a subclass may pad in its forward (timm's ``Conv2dSame``) or
    be read as raw weights by its parent, so its factorization would not be equivalent.
    ``factors`` (up, down) of the layer's matrix, when already computed, skip the factorization.
    """
    rank = _positive_rank(rank)
    if not can_factorize(module):
        groups = getattr(module, "groups", 1)
        why = f"groups={groups}" if type(module) is nn.Conv2d else "only plain Linear/Conv2d and low-rank layers"
        raise InputError(f"cannot factorize a {type(module).__name__} ({why})")
    if isinstance(module, LowRankConv2d):
        template = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.down.kernel_size,
            stride=module.down.stride,
            padding=module.down.padding,
            dilation=module.down.dilation,
            bias=module.up.bias is not None,
            padding_mode=module.down.padding_mode,
            device=module.up.weight.device,
            dtype=module.up.weight.dtype,
        )
        with torch.no_grad():
            template.weight.copy_(module.rmt_matrix().reshape(template.weight.shape))
            if module.up.bias is not None:
                template.bias.copy_(module.up.bias)
        return LowRankConv2d.from_conv(template, rank, device=device, factors=factors)
    if isinstance(module, (nn.Linear, LowRankLinear)):
        return LowRankLinear.from_linear(module, rank, device=device, factors=factors)  # type: ignore[arg-type]
    return LowRankConv2d.from_conv(module, rank, device=device, factors=factors)  # type: ignore[arg-type]


def factorize_linear(linear: nn.Module, rank: int, *, device: Any = None) -> nn.Module:
    """Rank-``rank`` approximation of a Linear (or LowRankLinear) layer.

    Returns a :class:`LowRankLinear` when that saves parameters (rank < m n / (m + n)); otherwise
    a dense ``nn.Linear`` holding the rank-truncated weight (same dtype, device and bias). The
    rank is capped at the layer's own (min(m, n), or a low-rank layer's ``rank``): a higher one
    keeps the same matrix, and must not turn a low-rank layer into a larger dense one.
    """
    weight = linear.rmt_matrix() if isinstance(linear, FactoredLayer) else linear.weight
    m, n = weight.shape
    rank = min(_positive_rank(rank), m, n, int(getattr(linear, "rank", min(m, n))))
    if saves_params(m, n, rank):
        return LowRankLinear.from_linear(linear, rank, device=device)  # type: ignore[arg-type]
    dense = nn.Linear(n, m, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    up, down = low_rank_factors(weight, rank, device=device)
    with torch.no_grad():
        dense.weight.copy_(up @ down)
        if linear.bias is not None:
            dense.bias.copy_(linear.bias)
    return dense


def replace_module(model: nn.Module, name: str, new_module: nn.Module) -> None:
    """Put ``new_module`` at the dotted path ``name`` of ``model`` (in place)."""
    if not name:
        raise InputError("cannot replace the root module")
    parent_name, _, child = name.rpartition(".")
    try:
        model.get_submodule(name)
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError as err:
        raise InputError(f"model has no submodule {name!r}") from err
    setattr(parent, child, new_module)


def lowrank_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The low-rank layers of ``model``: {path: {"type": class name, "rank": r}} (for checkpoints)."""
    return {
        name: {"type": type(module).__name__, "rank": int(module.rank)}
        for name, module in model.named_modules()
        if isinstance(module, (LowRankLinear, LowRankConv2d))
    }


def _empty_lowrank(module: nn.Module, kind: str, rank: int, name: str) -> nn.Module:
    """An uninitialised low-rank layer shaped like ``module`` (a dense or low-rank layer)."""
    ref = next(module.parameters(), None)
    kw = dict(device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None)
    if kind == "LowRankLinear" and isinstance(module, (nn.Linear, LowRankLinear)):
        return LowRankLinear(module.in_features, module.out_features, rank, bias=module.bias is not None, **kw)
    if kind == "LowRankConv2d" and isinstance(module, (nn.Conv2d, LowRankConv2d)):
        conv = module.down if isinstance(module, LowRankConv2d) else module
        return LowRankConv2d(
            module.in_channels,
            module.out_channels,
            conv.kernel_size,
            rank,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=module.bias is not None,
            padding_mode=conv.padding_mode,
            **kw,
        )
    raise InputError(f"layer {name}: cannot hold a {kind} (model has a {type(module).__name__} there)")


def apply_lowrank_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> None:
    """Swap in empty low-rank layers at the paths and ranks of ``structure`` (weights loaded later).

    All entries are checked and their layers built before the first swap, so a bad entry raises
    :class:`InputError` and leaves ``model`` as it was.
    """
    new: dict[str, nn.Module] = {}
    for name, spec in structure.items():
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise InputError(f"layer {name}: not in the model") from err
        try:
            kind, rank = spec["type"], int(spec["rank"])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"layer {name}: expected {{'type': ..., 'rank': int}}, got {spec!r}") from err
        if type(module).__name__ == kind and int(module.rank) == rank:
            continue
        new[name] = _empty_lowrank(module, kind, rank, name)
    for name, module in new.items():
        replace_module(model, name, module)
