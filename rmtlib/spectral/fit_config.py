"""The settings of an MP fit as one frozen, validated value: :class:`FitConfig`.

Every function that fits MP (``fit_mp``, ``analyze``, ``prune``, the sweeps, the training hooks and the
chapters' experiments) takes one ``fit_config`` instead of loose ``alpha``/``beta``/... keywords, so a
new setting is added here once, checked here once, and written to metadata as one dict
(:meth:`FitConfig.to_dict`, read back with :meth:`FitConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from rmtlib.errors import InputError, check_number
from rmtlib.theory.tracy_widom import EDGE_CENTRINGS

__all__ = [
    "FitConfig",
    "DEFAULT_FIT_CONFIG",
    "FC_FIT_CONFIG",
    "ALPHA_RANGE",
    "BETA_RANGE",
    "MIN_DIM",
    "BEMA_QUANTILES",
    "check_alpha",
    "check_beta",
    "check_fit_config",
    "with_fit_config",
]

ALPHA_RANGE = (0.0, 0.5)
"""BEMA's trimming fraction alpha lies in [0, 0.5): its window floor(alpha p) .. floor((1 - alpha) p) is
then never empty (alpha = 0 keeps all but the largest eigenvalue, losing the robustness to spikes);
at 0.5 and above the window is empty or reversed, so no scale can be fitted."""

BETA_RANGE = (1e-9, 1.0 - 1e-9)
"""The Tracy-Widom level beta (the edge is TW1's 1 - beta quantile) lies in [1e-9, 1 - 1e-9]: further
out the TW1 tail (1 - F(10) = 1.7e-11) is at the quadrature's round-off and outside the quantile
search's bracket [-10, 10], and 1 - beta itself loses its digits."""

MIN_DIM = 16
"""Smallest min(m, n) for which a fit is attempted; smaller layers get status ``too_small``."""

BEMA_QUANTILES = {"midpoint": 0.5, "paper": 0.0, "reference": 1.0}
"""Quantile conventions of BEMA: the k-th smallest eigenvalue is matched with the MP quantile at
(k - offset)/p: ``midpoint`` (default), the paper's text ``paper`` (k/p), its code ``reference``."""


def check_alpha(alpha: Any, what: str = "alpha") -> float:
    """``alpha`` as a float in :data:`ALPHA_RANGE` ([0, 0.5)), else an InputError naming ``what``."""
    return check_number(what, alpha, minimum=ALPHA_RANGE[0], maximum=ALPHA_RANGE[1], exclusive_maximum=True)


def check_beta(beta: Any, what: str = "beta") -> float:
    """``beta`` as a float in :data:`BETA_RANGE` ([1e-9, 1 - 1e-9]), else an InputError naming ``what``."""
    return check_number(what, beta, minimum=BETA_RANGE[0], maximum=BETA_RANGE[1])


@dataclass(frozen=True)
class FitConfig:
    """How MP is fitted to a matrix (:func:`rmtlib.fit_mp`); the defaults are the paper's ViT setting.

    Attributes:
        alpha: BEMA trims the lowest and highest ``alpha`` fraction of eigenvalues (:data:`ALPHA_RANGE`).
        beta: the edge is TW1's (1 - beta) quantile (:data:`BETA_RANGE`; the paper: 0.8 for its ViT,
            0.1 for its fully connected nets, :data:`FC_FIT_CONFIG`).
        edge_centring: finite-size centring of the edge (:data:`rmtlib.theory.tracy_widom.EDGE_CENTRINGS`):
            ``paper`` (the paper's (1 + sqrt c)^2), or ``ma`` / ``johnstone``, whose false-alarm rate is
            closer to ``beta`` at finite size (chapter 1 measures all three).
        min_dim: matrices with min(m, n) below this get status ``too_small`` (an integer >= 2).
        bema_quantile: BEMA's quantile convention (:data:`BEMA_QUANTILES`): ``midpoint`` ((k - 1/2)/p,
            nearly unbiased), ``paper`` (k/p) or ``reference`` ((k - 1)/p); see :mod:`rmtlib.spectral.fit`.

    Checked when made (an :class:`~rmtlib.errors.InputError` names the setting and its range), and
    frozen: a configuration passed down a call chain cannot change on the way.
    """

    alpha: float = 0.25
    beta: float = 0.8
    edge_centring: str = "paper"
    min_dim: int = MIN_DIM
    bema_quantile: str = "midpoint"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the checked values (plain float / int) replace the given ones
        set_(self, "alpha", check_alpha(self.alpha))
        set_(self, "beta", check_beta(self.beta))
        if not isinstance(self.edge_centring, str) or self.edge_centring not in EDGE_CENTRINGS:
            raise InputError(f"edge_centring must be one of {', '.join(EDGE_CENTRINGS)}, got {self.edge_centring!r}")
        min_dim = self.min_dim
        if isinstance(min_dim, (bool, np.bool_)) or not isinstance(min_dim, (int, np.integer)) or min_dim < 2:
            raise InputError(
                f"min_dim must be an integer >= 2 (a fit needs a window of singular values), got {min_dim!r}"
            )
        set_(self, "min_dim", int(min_dim))
        if not isinstance(self.bema_quantile, str) or self.bema_quantile not in BEMA_QUANTILES:
            raise InputError(f"bema_quantile must be one of {', '.join(BEMA_QUANTILES)}, got {self.bema_quantile!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (every field, in declaration order)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "fit_config") -> FitConfig:
        """The configuration a :meth:`to_dict` dict describes; missing settings take their defaults.

        ``source`` names where the dict came from (a file, a metadata key) in the InputError raised for
        something that is not a dict, an unknown setting or a bad value.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: a fit configuration must be a mapping of settings, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise InputError(
                f"{source}: unknown fit setting(s) {', '.join(unknown)}; the settings are {', '.join(known)}"
            )
        try:
            return cls(**dict(data))
        except InputError as err:
            raise InputError(f"{source}: {err}") from None


DEFAULT_FIT_CONFIG = FitConfig()
"""The paper's ViT setting (alpha 0.25, beta 0.8, its edge, BEMA's midpoint quantiles, min_dim 16)."""

FC_FIT_CONFIG = FitConfig(beta=0.1)
"""The paper's setting for its fully connected nets (METHOD.md section 2): beta 0.1, a high edge."""


def check_fit_config(value: Any, what: str = "fit_config") -> FitConfig:
    """``value`` when it is a :class:`FitConfig`, else an InputError naming ``what`` (a dict or loose
    keywords are refused: :meth:`FitConfig.from_dict` reads a dict)."""
    if not isinstance(value, FitConfig):
        raise InputError(
            f"{what} must be a FitConfig (rmtlib.FitConfig(alpha=..., beta=...)), got {type(value).__name__}"
        )
    return value


def with_fit_config(record: Mapping[str, Any], *, source: str, default: FitConfig | None = None) -> dict[str, Any]:
    """A copy of a metadata ``record`` whose fit settings are one complete ``fit_config`` dict
    (:meth:`FitConfig.to_dict`), whether it holds them so or, written before that key existed, as loose
    ``alpha``/``beta``/``edge_centring`` keys (settings it lacks take their defaults); a record with
    neither gets ``default``'s dict, or is returned as it is without one. Bad settings raise an
    InputError naming ``source``."""
    out = dict(record)
    names = [f.name for f in fields(FitConfig)]
    if "fit_config" in out:
        config = FitConfig.from_dict(out["fit_config"], source=f"{source}: fit_config")
    elif any(name in out for name in names):
        config = FitConfig.from_dict({name: out.pop(name) for name in names if name in out}, source=source)
    elif default is not None:
        config = default
    else:
        return out
    out["fit_config"] = config.to_dict()
    return out
