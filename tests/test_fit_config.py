"""FitConfig: checked when made, frozen, carried by the fit, and read back from metadata."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from torch import nn

from rmtlib import FitConfig, InputError, fit_mp
from rmtlib.nn.checkpoints import read_checkpoint, save_checkpoint
from rmtlib.spectral.fit_config import (
    DEFAULT_FIT_CONFIG,
    FC_FIT_CONFIG,
    check_fit_config,
    with_fit_config,
)
from rmtlib.theory.mp import mp_ppf
from rmtlib.theory.tracy_widom import tw1_ppf, tw_centre_scale


def test_defaults_are_the_papers_settings():
    assert DEFAULT_FIT_CONFIG.to_dict() == {
        "alpha": 0.25,
        "beta": 0.8,
        "edge_centring": "paper",
        "min_dim": 16,
        "bema_quantile": "midpoint",
    }
    assert FC_FIT_CONFIG == FitConfig(beta=0.1)
    import rmtlib.spectral

    assert rmtlib.spectral.FitConfig is FitConfig and "FitConfig" in __import__("rmtlib").__all__


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0.5}, "alpha must be a finite number >= 0 and < 0.5, got 0.5"),
        ({"alpha": -0.1}, "alpha must be a finite number >= 0 and < 0.5"),
        ({"alpha": "0.2"}, "alpha must be a finite number"),
        ({"alpha": float("nan")}, "alpha must be a finite number"),
        ({"beta": 1.0}, "beta must be a finite number >= 1e-09 and <= 0.999999999, got 1.0"),
        ({"beta": None}, "beta must be a finite number"),
        ({"edge_centring": "Ma"}, "edge_centring must be one of paper, johnstone, ma, got 'Ma'"),
        ({"edge_centring": None}, "edge_centring must be one of"),
        ({"min_dim": 1}, "min_dim must be an integer >= 2"),
        ({"min_dim": 2.5}, "min_dim must be an integer >= 2"),
        ({"min_dim": True}, "min_dim must be an integer >= 2"),
        ({"bema_quantile": "k/p"}, "bema_quantile must be one of midpoint, paper, reference, got 'k/p'"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting_and_its_range(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        FitConfig(**kwargs)


def test_numbers_are_stored_as_plain_floats_and_ints():
    config = FitConfig(alpha=np.float32(0.25), beta=np.float64(0.8), min_dim=np.int64(20))
    assert type(config.alpha) is float and type(config.beta) is float and type(config.min_dim) is int
    assert config == FitConfig(min_dim=20) and hash(config) == hash(FitConfig(min_dim=20))
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


def test_it_is_frozen():
    config = FitConfig()
    for name, value in (("alpha", 0.3), ("edge_centring", "ma"), ("min_dim", 4)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, name, value)
    assert config == DEFAULT_FIT_CONFIG
    # a changed copy is checked like a new one
    assert dataclasses.replace(config, beta=0.1) == FC_FIT_CONFIG
    with pytest.raises(InputError, match="beta"):
        dataclasses.replace(config, beta=2.0)


def test_dict_round_trip_and_what_from_dict_refuses():
    config = FitConfig(alpha=0.2, beta=0.3, edge_centring="johnstone", min_dim=8, bema_quantile="paper")
    assert FitConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert FitConfig.from_dict({"beta": 0.1}) == FC_FIT_CONFIG  # missing settings take their defaults
    with pytest.raises(InputError, match=r"run\.json: unknown fit setting\(s\) gamma; the settings are alpha"):
        FitConfig.from_dict({"beta": 0.1, "gamma": 1}, source="run.json")
    with pytest.raises(InputError, match=r"run\.json: alpha must be a finite number >= 0 and < 0\.5, got 0\.7"):
        FitConfig.from_dict({"alpha": 0.7}, source="run.json")
    with pytest.raises(InputError, match="run.json: a fit configuration must be a mapping"):
        FitConfig.from_dict([0.25, 0.8], source="run.json")
    with pytest.raises(InputError, match="fit_config must be a FitConfig"):
        check_fit_config({"alpha": 0.25})


def test_records_with_one_dict_or_the_older_loose_keys_read_the_same():
    config = FitConfig(alpha=0.2, edge_centring="ma")
    new = {"seed": 0, "fit_config": config.to_dict()}
    old = {"seed": 0, "alpha": 0.2, "beta": 0.8, "edge_centring": "ma"}
    assert with_fit_config(new, source="s.json") == with_fit_config(old, source="s.json") == new
    assert with_fit_config({"seed": 0, "alpha": 0.25}, source="s.json") == {
        "seed": 0,
        "fit_config": FitConfig().to_dict(),
    }
    assert with_fit_config({"seed": 0}, source="s.json") == {"seed": 0}  # no fit settings at all
    assert old == {"seed": 0, "alpha": 0.2, "beta": 0.8, "edge_centring": "ma"}  # the record is not changed
    with pytest.raises(InputError, match="s.json: fit_config: beta must be"):
        with_fit_config({"fit_config": {"beta": 0}}, source="s.json")
    with pytest.raises(InputError, match="s.json: alpha must be"):
        with_fit_config({"alpha": 0.9}, source="s.json")


def test_checkpoint_metadata_round_trip(tmp_path):
    config = FitConfig(beta=0.1, edge_centring="johnstone")
    save_checkpoint(nn.Linear(4, 3), tmp_path / "m.safetensors", {"method": "rmt", "fit_config": config.to_dict()})
    metadata = read_checkpoint(tmp_path / "m.safetensors")[1]["metadata"]
    assert FitConfig.from_dict(metadata["fit_config"], source="m.safetensors") == config


def _direct_fit(sv: np.ndarray, m: int, n: int, config: FitConfig) -> tuple[float, float]:
    """BEMA's sigma^2 and the Tracy-Widom edge lambda_+ written out from the definitions (METHOD.md
    section 2), independently of rmtlib.spectral.fit: least squares through the origin between the
    window's order statistics and MP(c, 1) quantiles at (k - offset)/p, then sigma^2 (centre + t scale)."""
    p, N = min(m, n), max(m, n)
    eig = np.sort(sv**2 / N)
    ranks = np.arange(
        max(int(np.floor(config.alpha * p + 1e-9)), 1), min(int(np.floor((1 - config.alpha) * p + 1e-9)), p - 1) + 1
    )
    offset = {"midpoint": 0.5, "paper": 0.0, "reference": 1.0}[config.bema_quantile]
    q = mp_ppf((ranks - offset) / p, p / N, 1.0)
    lam = eig[ranks - 1]
    sigma2 = float(q @ lam / (q @ q))
    centre, scale = tw_centre_scale(N, p, config.edge_centring)
    return sigma2, sigma2 * (centre + float(tw1_ppf(1 - config.beta)) * scale)


@pytest.mark.parametrize(
    "config",
    [
        FitConfig(),
        FitConfig(alpha=0.1, beta=0.1),
        FitConfig(beta=0.5, edge_centring="ma"),
        FitConfig(alpha=0.3, beta=0.05, edge_centring="johnstone", bema_quantile="reference"),
        FitConfig(alpha=0.0, beta=0.9, bema_quantile="paper", min_dim=100),
    ],
)
def test_the_fit_follows_every_setting_of_its_config(config, rng):
    m, n = 150, 400
    w = rng.standard_normal((m, n)) * 0.3
    sv = np.linalg.svd(w, compute_uv=False)
    fit = fit_mp(w, fit_config=config)
    assert fit.fit_config is config
    assert (fit.alpha, fit.beta, fit.edge_centring) == (config.alpha, config.beta, config.edge_centring)
    sigma2, edge = _direct_fit(sv, m, n, config)
    assert fit.sigma2 == pytest.approx(sigma2, rel=1e-10)
    assert fit.lambda_plus == pytest.approx(edge, rel=1e-10)
    assert fit.n_spikes == int(np.sum(sv > np.sqrt(n * edge) * (1 + 1e-12)))
    summary = fit.summary()
    assert {k: summary[k] for k in config.to_dict()} == config.to_dict() and "config" not in summary
    # min_dim decides whether the matrix is fitted at all
    assert fit_mp(w, fit_config=dataclasses.replace(config, min_dim=151)).status == "too_small"


@pytest.mark.parametrize("centring", ["ma", "johnstone"])
def test_a_matrix_where_the_centring_decides_a_spike(edge_decides, centring):
    w, paper, other = edge_decides(centring)
    counts = {fit_mp(w, fit_config=c).n_spikes for c in (paper, other)}
    assert counts == {1, 2}
