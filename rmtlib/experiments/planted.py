"""Theorem T1 in its own setting: a planted random matrix on top of a low-rank signal.

The network is ``X = out_act(W3 act(W2 act(W1 s)))`` with Gaussian data ``s ~ N(0, I_d)`` and
``W2 = S2 + R2``:

* ``W1`` (N x d) has iid N(0, 1/d) entries, so the hidden units ``h1 = act(W1 s)`` are O(1);
* ``S2 = sum_k theta_k u_k v_k^T`` has rank ``r``, ``theta_k = strength * sqrt(g)`` (``strength``
  times the BBP threshold of the noise, so the spikes are visible), ``u_k`` random orthonormal and
  ``v_k`` orthonormal directions in the range of ``W1`` (so the signal reads the data):
  ``||S2||_F = strength sqrt(g r) = O(1) = o(sqrt N)``;
* ``W3 = c M U^T`` (``M`` a K x r Gaussian mixing, ``U = [u_k]``) reads the signal directions, with
  ``c = logit_scale / sd`` of the clean network's outputs at ``c = 1``, set once: with a linear
  output (``out_act="identity"``) the logits have standard deviation ``logit_scale``, with a
  squashing one less;
* the labels are the clean teacher's ``argmax`` (a fraction ``label_noise`` replaced by random
  classes, so the clean network is not trivially optimal);
* ``R2`` has iid N(0, g/N) entries, drawn independently of everything else: ``||R2||_F^2 ~ g N``.

The theorem says that, with high probability, ``L(S2) <= L(W2) - lambda ||R2||_F^2 + slack`` with a
slack that vanishes as N grows, where ``L = CE + lambda sum_i ||W_i||_F^2``. Here
``slack = L(S2) - L(W2) + lambda ||R2||_F^2 = CE(S2) - CE(W2) - 2 lambda <S2, R2>``: the randomness
is huge in norm but reaches the K outputs only through K directions, which a random matrix hits
with O(N^-1/2) weight.

The slack has two parts, reported separately: the cross-entropy part ``CE(S2) - CE(W2)`` and the
penalty part ``-2 lambda <S2, R2>``. "The inequality holds" (slack <= 0) is weak evidence on its own:
added noise usually raises the cross-entropy of a good teacher, which makes the CE part negative
whatever the regularizer does. The informative quantity is how fast ``|slack|`` shrinks with N
(:func:`slack_summary` fits the log-log slope, about -1 in this setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from rmtlib.errors import InputError
from rmtlib.experiments.randomness import split_at_edge
from rmtlib.spectral.fit_config import FC_FIT_CONFIG, FitConfig

__all__ = [
    "PlantedNet",
    "make_planted",
    "planted_noise",
    "planted_trial",
    "planted_experiment",
    "slack_summary",
    "planted_findings",
]

_ACTS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda x: x}
_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


@dataclass
class PlantedNet:
    """The clean network of the planted setting and its data (all float64 on the CPU)."""

    W1: torch.Tensor  # N x d
    S2: torch.Tensor  # N x N, rank r
    W3: torch.Tensor  # K x N
    U: torch.Tensor  # N x r left signal directions
    V: torch.Tensor  # N x r right signal directions
    thetas: torch.Tensor  # r signal singular values
    s: torch.Tensor  # n x d data
    y: torch.Tensor  # n labels
    g: float
    act: str = "relu"
    out_act: str = "identity"

    @property
    def N(self) -> int:  # noqa: N802 - the theorem's notation
        return self.S2.shape[0]

    def hidden(self) -> torch.Tensor:
        """``h1 = act(W1 s)``, n x N."""
        return _ACTS[self.act](self.s @ self.W1.T)

    def logits(self, pre2: torch.Tensor) -> torch.Tensor:
        """Network output from the second pre-activation ``W2 h1`` (n x N)."""
        return _ACTS[self.out_act](_ACTS[self.act](pre2) @ self.W3.T)

    def evaluate(self, W2: torch.Tensor, lambda_reg: float) -> dict[str, float]:
        """CE, accuracy and regularized loss ``CE + lambda (||W1||^2 + ||W2||^2 + ||W3||^2)`` with ``W2``."""
        pre2 = self.hidden() @ W2.to(torch.float64).T
        return self._score(pre2, W2.to(torch.float64).pow(2).sum().item(), lambda_reg)

    def _score(self, pre2: torch.Tensor, w2_sq: float, lambda_reg: float) -> dict[str, float]:
        out = self.logits(pre2)
        ce = F.cross_entropy(out, self.y).item()
        reg = lambda_reg * (self.W1.pow(2).sum().item() + w2_sq + self.W3.pow(2).sum().item())
        return {"ce": ce, "reg": reg, "loss": ce + reg, "accuracy": (out.argmax(1) == self.y).double().mean().item()}

    def as_module(self, W2: torch.Tensor) -> nn.Sequential:
        """The network as ``nn.Sequential`` of bias-free Linear layers (``0``, ``2``, ``4``) in float64."""
        layers = [
            nn.Linear(self.W1.shape[1], self.N, bias=False),
            _MODULES[self.act](),
            nn.Linear(self.N, self.N, bias=False),
            _MODULES[self.act](),
            nn.Linear(self.N, self.W3.shape[0], bias=False),
            _MODULES[self.out_act](),
        ]
        model = nn.Sequential(*layers).to(torch.float64)
        with torch.no_grad():
            for layer, w in zip(model[0::2], (self.W1, W2, self.W3)):
                layer.weight.copy_(w)
        return model


def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def make_planted(
    N: int,
    *,
    d: int = 32,
    classes: int = 10,
    rank: int = 8,
    strength: float = 3.0,
    g: float = 1.0,
    n_samples: int = 2000,
    logit_scale: float = 3.0,
    label_noise: float = 0.0,
    act: str = "relu",
    out_act: str = "identity",
    seed: int = 0,
) -> PlantedNet:
    """Draw the clean network (W1, S2, W3) and its labelled data for width ``N`` (see module docstring)."""
    if act not in _ACTS or out_act not in _ACTS:
        raise InputError(f"act and out_act must be among {sorted(_ACTS)}, got {act!r}, {out_act!r}")
    if not (1 <= rank <= min(d, N)):
        raise InputError(f"rank must be in [1, min(d, N)] = [1, {min(d, N)}], got {rank}")
    if g <= 0 or strength <= 0 or logit_scale <= 0:
        raise InputError(f"g, strength and logit_scale must be > 0, got {g}, {strength}, {logit_scale}")
    if not (0.0 <= label_noise <= 1.0):
        raise InputError(f"label_noise must be in [0, 1], got {label_noise}")
    if classes < 2 or n_samples < 1 or d < 1:
        raise InputError(f"need classes >= 2, n_samples >= 1, d >= 1; got {classes}, {n_samples}, {d}")
    gen = torch.Generator().manual_seed(int(seed))
    W1 = torch.randn(N, d, generator=gen, dtype=torch.float64) / math.sqrt(d)
    A = _orthonormal(d, rank, gen)
    V, _ = torch.linalg.qr(W1 @ A)  # directions in W1's range: v_k . h1 = O(sqrt N)
    U = _orthonormal(N, rank, gen)
    thetas = torch.full((rank,), strength * math.sqrt(g), dtype=torch.float64)
    S2 = (U * thetas) @ V.T
    M = torch.randn(classes, rank, generator=gen, dtype=torch.float64)
    s = torch.randn(n_samples, d, generator=gen, dtype=torch.float64)
    net = PlantedNet(W1, S2, M @ U.T, U, V, thetas, s, torch.zeros(n_samples, dtype=torch.long), float(g), act, out_act)
    raw = net.logits(net.hidden() @ S2.T)
    scale = logit_scale / float(raw.std())
    net.W3 = net.W3 * scale
    net.y = net.logits(net.hidden() @ S2.T).argmax(1)
    if label_noise > 0:
        flip = torch.rand(n_samples, generator=gen, dtype=torch.float64) < label_noise
        net.y = torch.where(flip, torch.randint(0, classes, (n_samples,), generator=gen), net.y)
    return net


def planted_noise(N: int, g: float = 1.0, *, seed: int = 0) -> torch.Tensor:
    """``R2``: an N x N matrix of iid N(0, g/N) entries (float64), from its own generator."""
    if N < 1 or g <= 0:
        raise InputError(f"planted_noise needs N >= 1 and g > 0, got N={N}, g={g}")
    gen = torch.Generator().manual_seed(int(seed) + 7_919)
    return torch.randn(N, N, generator=gen, dtype=torch.float64) * math.sqrt(g / N)


def planted_trial(
    N: int,
    seed: int,
    *,
    lambda_reg: float = 1e-4,
    thetas: Sequence[float] = (),
    split: bool = False,
    fit_config: FitConfig = FC_FIT_CONFIG,
    **planted: object,
) -> tuple[dict[str, float], pd.DataFrame]:
    """One draw of the planted setting at width ``N``: the T1 quantities, and the theta path.

    Returns ``(row, path)``. ``row`` holds N, seed, ce/accuracy/loss with S2 and with W2 = S2 + R2,
    ``r_energy = ||R2||_F^2``, ``r_var_ratio`` (empirical variance of R2's entries over g/N),
    ``cross = 2 lambda <S2, R2>``, ``slack = L(S2) - (L(W2) - lambda ||R2||_F^2)`` and ``holds``
    (slack <= 0); ``slack = slack_ce + slack_penalty`` with ``slack_ce = CE(S2) - CE(W2)`` and
    ``slack_penalty = -cross``. With ``split`` the MP split of W2 itself
    (:func:`rmtlib.experiments.randomness.split_at_edge` with ``fit_config``, the paper's FC setting) replaces
    the known S2 as well: ``n_spikes_found``, ``slack_split``. ``path`` has one row per theta in
    ``thetas`` with the loss at ``S2 + theta R2``.
    """
    if lambda_reg < 0:
        raise InputError(f"lambda_reg must be >= 0, got {lambda_reg}")
    net = make_planted(N, seed=seed, **planted)  # type: ignore[arg-type]
    R2 = planted_noise(N, net.g, seed=seed)
    h1 = net.hidden()
    z_s = ((h1 @ net.V) * net.thetas) @ net.U.T  # = h1 S2^T, through the factors
    z_r = h1 @ R2.T
    s_sq = float(net.thetas.pow(2).sum())
    r_sq = float(R2.pow(2).sum())
    inner = float((net.S2 * R2).sum())
    clean = net._score(z_s, s_sq, lambda_reg)
    noisy = net._score(z_s + z_r, s_sq + 2 * inner + r_sq, lambda_reg)
    slack = clean["loss"] - (noisy["loss"] - lambda_reg * r_sq)
    row: dict[str, float] = {
        "N": N,
        "seed": seed,
        "g": net.g,
        "lambda_reg": lambda_reg,
        "rank": int(net.thetas.numel()),
        "s_fro": math.sqrt(s_sq),
        "r_energy": r_sq,
        "r_energy_expected": net.g * N,
        "r_var_ratio": float(R2.var()) / (net.g / N),
        "ce_S": clean["ce"],
        "ce_W": noisy["ce"],
        "acc_S": clean["accuracy"],
        "acc_W": noisy["accuracy"],
        "loss_S": clean["loss"],
        "loss_W": noisy["loss"],
        "reg_removed": lambda_reg * r_sq,
        "cross": 2 * lambda_reg * inner,
        "ce_diff": clean["ce"] - noisy["ce"],
        "slack_ce": clean["ce"] - noisy["ce"],
        "slack_penalty": -2 * lambda_reg * inner,
        "slack": slack,
        "holds": slack <= 0,
    }
    if split:
        s_hat, r_hat, fit = split_at_edge(net.S2 + R2, fit_config=fit_config, name=f"planted W2 (N={N})")
        est = net._score(h1 @ s_hat.T, float(s_hat.pow(2).sum()), lambda_reg)
        row.update(
            n_spikes_found=fit.n_spikes,
            loss_split=est["loss"],
            acc_split=est["accuracy"],
            slack_split=est["loss"] - (noisy["loss"] - lambda_reg * float(r_hat.pow(2).sum())),
        )
    path = []
    for theta in thetas:
        res = net._score(z_s + theta * z_r, s_sq + 2 * theta * inner + theta**2 * r_sq, lambda_reg)
        path.append({"N": N, "seed": seed, "theta": float(theta), **res})
    return row, pd.DataFrame(path, columns=["N", "seed", "theta", "ce", "reg", "loss", "accuracy"])


def planted_experiment(
    widths: Sequence[int],
    seeds: Sequence[int],
    *,
    thetas: Sequence[float] = (),
    split_max_n: int = 0,
    **kwargs: object,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`planted_trial` for every width and seed; the MP split is also done for N <= ``split_max_n``.

    Returns ``(trials, paths)``: one row per (N, seed), and the theta paths stacked.
    """
    if not widths or not seeds:
        raise InputError("planted_experiment needs at least one width and one seed")
    rows, paths = [], []
    for N in widths:
        for seed in seeds:
            row, path = planted_trial(int(N), int(seed), thetas=thetas, split=int(N) <= split_max_n, **kwargs)
            rows.append(row)
            paths.append(path)
    return pd.DataFrame(rows), pd.concat(paths, ignore_index=True)


def _loglog_slope(n: pd.Series, values: pd.Series) -> tuple[float, float]:
    """Least-squares slope of log(values) on log(n) and its standard error (NaN with < 4 points)."""
    x, y = np.log(n.to_numpy(dtype=float)), values.to_numpy(dtype=float)
    if len(x) < 2 or not (y > 0).all():
        return float("nan"), float("nan")
    if len(x) < 4:
        return float(np.polyfit(x, np.log(y), 1)[0]), float("nan")
    coef, cov = np.polyfit(x, np.log(y), 1, cov=True)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def slack_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """Per width: mean / sd / max of the slack and of ``|slack|``, its CE and penalty parts (means of
    the signed parts and of their absolute values), the fraction of seeds where the inequality holds
    without slack and where the CE part alone is <= 0 (the noise raised the cross-entropy), the
    removed regularization ``lambda ||R2||^2`` for scale, and the log-log slopes against N (same value
    on every row; negative = shrinking) of mean ``|slack|`` and mean ``|CE part|``, with standard errors."""
    trials = trials.assign(
        abs_slack=trials["slack"].abs(),
        abs_slack_ce=trials["slack_ce"].abs(),
        abs_slack_penalty=trials["slack_penalty"].abs(),
        ce_raised=trials["slack_ce"] <= 0,
    )
    grouped = trials.groupby("N")
    out = pd.DataFrame(
        {
            "seeds": grouped.size(),
            "slack_mean": grouped["slack"].mean(),
            "slack_sd": grouped["slack"].std(ddof=1),
            "slack_max": grouped["slack"].max(),
            "abs_slack_mean": grouped["abs_slack"].mean(),
            "slack_ce_mean": grouped["slack_ce"].mean(),
            "slack_penalty_mean": grouped["slack_penalty"].mean(),
            "abs_slack_ce_mean": grouped["abs_slack_ce"].mean(),
            "abs_slack_penalty_mean": grouped["abs_slack_penalty"].mean(),
            "holds_fraction": grouped["holds"].mean(),
            "ce_raised_fraction": grouped["ce_raised"].mean(),
            "reg_removed": grouped["reg_removed"].mean(),
            "ce_S": grouped["ce_S"].mean(),
            "ce_W": grouped["ce_W"].mean(),
            "acc_S": grouped["acc_S"].mean(),
            "acc_W": grouped["acc_W"].mean(),
        }
    ).reset_index()
    slope, se = _loglog_slope(out["N"], out["abs_slack_mean"])
    slope_ce, se_ce = _loglog_slope(out["N"], out["abs_slack_ce_mean"])
    out["abs_slack_loglog_slope"], out["abs_slack_loglog_slope_se"] = slope, se
    out["abs_slack_ce_loglog_slope"], out["abs_slack_ce_loglog_slope_se"] = slope_ce, se_ce
    return out


def planted_findings(trials: pd.DataFrame) -> list[str]:
    """Sentences computed from :func:`planted_experiment` trials: how often the inequality holds
    without slack, how the slack compares with the removed regularization, and whether it shrinks."""
    summary = slack_summary(trials)
    lines = []
    held = int(trials["holds"].sum())
    lines.append(
        f"L(S2) <= L(W2) - lambda ||R2||_F^2 holds with zero slack in {held} of {len(trials)} draws "
        f"(widths {', '.join(str(int(n)) for n in summary['N'])}, {int(summary['seeds'].max())} seeds each)."
    )
    by_ce = int((trials["holds"] & (trials["slack_ce"] <= 0)).sum())
    ce_wins = int((trials["slack_ce"].abs() > trials["slack_penalty"].abs()).sum())
    first = summary.iloc[0]
    lines.append(
        f"In {by_ce} of these {held} draws the cross-entropy part CE(S2) - CE(W2) is itself <= 0 (the added noise "
        f"raised the cross-entropy), and in {ce_wins} of all {len(trials)} draws the CE part is larger in size than "
        f"the penalty part -2 lambda <S2, R2>: at N = {int(first['N'])} the mean slack {first['slack_mean']:+.3g} is "
        f"CE part {first['slack_ce_mean']:+.3g} plus penalty part {first['slack_penalty_mean']:+.3g}. That the "
        "inequality holds says mostly that noise hurts the fit, not that the regularizer pays for it."
    )
    worst = trials.iloc[int(np.nanargmax(trials["slack"].to_numpy(dtype=float)))]  # by position: the index may repeat
    if worst["slack"] > 0:
        lines.append(
            f"The largest positive slack is {worst['slack']:.2e} (N = {int(worst['N'])}, seed {int(worst['seed'])}), "
            f"{100 * worst['slack'] / worst['reg_removed']:.2f}% of the regularization removed there "
            f"(lambda ||R2||^2 = {worst['reg_removed']:.3g})."
        )
    ratio = summary["abs_slack_mean"] / summary["reg_removed"]
    reg_first, reg_last = summary["reg_removed"].iloc[0], summary["reg_removed"].iloc[-1]
    lines.append(
        f"Mean |slack| goes from {summary['abs_slack_mean'].iloc[0]:.2e} at N = {int(summary['N'].iloc[0])} to "
        f"{summary['abs_slack_mean'].iloc[-1]:.2e} at N = {int(summary['N'].iloc[-1])}, while the removed "
        f"regularization {_trend(reg_first, reg_last)} {reg_first:.3g} to {reg_last:.3g} "
        f"(|slack| / removed: {ratio.iloc[0]:.2g} -> {ratio.iloc[-1]:.2g})."
    )
    steps = np.diff(summary["abs_slack_mean"].to_numpy())
    if len(steps):
        pairs = list(zip(summary["N"][:-1], summary["N"][1:], steps))
        against = [
            f"it {'grows' if st > 0 else 'stays the same'} between N = {int(a)} and {int(b)}"
            for a, b, st in pairs
            if st >= 0
        ]
        shrink = (
            "shrinks at every step in N" if not against else f"does not shrink at every step ({'; '.join(against)})"
        )
        se = summary["abs_slack_loglog_slope_se"].iloc[0]
        lines.append(
            f"Mean |slack| {shrink}; its log-log slope against N is {summary['abs_slack_loglog_slope'].iloc[0]:.2f}"
            + (f" (standard error {se:.2f})" if np.isfinite(se) else "")
            + f", that of the CE part {summary['abs_slack_ce_loglog_slope'].iloc[0]:.2f}; the theorem needs only that "
            "it vanishes, the argument in exercise 2 predicts -1 (a 1/N decay)."
        )
    return lines


def _trend(first: float, last: float) -> str:
    """The words for a change from ``first`` to ``last``: "grows from", "shrinks from" or "stays the same, from"."""
    return "grows from" if last > first else "shrinks from" if last < first else "stays the same, from"
