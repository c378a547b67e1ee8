"""Chapter 3, part 1: trained networks split at their MP edge, the loss along S + theta R and under noise."""

import math

import pandas as pd
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.experiments.randomness import fittable_layers
from rmtlib.experiments.trained_splits import (
    accuracy_table,
    ce_rise_numbers,
    certificate_numbers,
    certificate_table,
    monotonicity_table,
    noise_paths,
    split_numbers,
    split_table,
    theta_paths,
    train_networks,
    trained_findings,
)
from rmtlib.spectral.fit import fit_mp
from rmtlib.spectral.fit_config import FitConfig
from rmtlib.train.data import make_loader
from rmtlib.train.loops import evaluate

L2S = [0.0, 1e-3]
SETTINGS = dict(width=64, l2_values=L2S, epochs=2, train_subset=200, batch_size=50, lr=0.05, seed=0)


@pytest.fixture(scope="module")
def nets():
    return train_networks("synthetic", **SETTINGS)


@pytest.fixture(scope="module")
def paths(nets):
    return theta_paths(nets.models, nets.loaders, [0.0, 0.5, 1.0])


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().double() for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def test_networks_are_seeded_in_eval_mode_and_measured_on_the_training_subset(nets):
    assert list(nets.models) == L2S
    assert all(not model.training for model in nets.models.values())
    assert len(nets.loaders["train"].dataset) == SETTINGS["train_subset"] and nets.seconds >= 0
    again = train_networks("synthetic", **SETTINGS)
    for l2 in L2S:
        a, b = _weights(nets.models[l2]), _weights(again.models[l2])
        assert all(torch.equal(a[name], b[name]) for name in a)
    # the penalty is the only difference between the runs: without it the weights end elsewhere
    assert not torch.equal(_weights(nets.models[0.0])["1"], _weights(nets.models[1e-3])["1"])
    with pytest.raises(InputError, match="l2_values"):
        train_networks("synthetic", **{**SETTINGS, "l2_values": []})


def test_split_table_splits_every_fittable_layer_orthogonally(nets):
    splits = split_table(nets.models)
    assert list(zip(splits["l2"], splits["layer"])) == [
        (l2, name) for l2, model in nets.models.items() for name in fittable_layers(model)
    ]
    for _, row in splits.iterrows():
        w = _weights(nets.models[row["l2"]])[row["layer"]]
        total = float(w.pow(2).sum())  # ||W||^2 = ||S||^2 + ||R||^2: S and R have orthogonal singular subspaces
        assert row["||S||_F^2"] + row["||R||_F^2"] == pytest.approx(total, rel=1e-5)
        assert row["bulk share of energy"] == pytest.approx(row["||R||_F^2"] / total, rel=1e-5)
        assert row["lambda ||R||_F^2"] == pytest.approx(row["l2"] * row["||R||_F^2"], rel=1e-12)
        assert row["spikes"] == fit_mp(w, fit_config=FitConfig(alpha=0.25, beta=0.1)).n_spikes
        assert row["shape"] == f"{w.shape[0]} x {w.shape[1]}"


def test_split_numbers_name_the_smallest_bulk_share():
    splits = pd.DataFrame(
        {"l2": [0.0, 1e-3, 1e-3], "layer": ["1", "3", "head"], "bulk share of energy": [0.9, 0.4, 0.6]}
    )
    assert split_numbers(splits) == {"split_share_min": 0.4, "split_share_layer": 3, "split_share_l2": 1e-3}
    assert split_numbers(splits.assign(**{"bulk share of energy": [0.9, 0.8, 0.1]}))["split_share_layer"] == "head"
    with pytest.raises(InputError, match="no layer"):
        split_numbers(splits.iloc[:0])


def test_theta_paths_end_at_the_trained_network_on_each_loader(nets, paths):
    targets = {l2: len(fittable_layers(model)) + 1 for l2, model in nets.models.items()}  # each layer, and "all"
    assert len(paths) == sum(targets.values()) * len(nets.loaders) * 3
    for (l2, data), group in paths[paths["theta"] == 1.0].groupby(["l2", "data"]):
        model, loader = nets.models[l2], nets.loaders[data]
        penalty = l2 * sum(float(w.pow(2).sum()) for w in _weights(model).values())
        expected = evaluate(model, loader)["loss"] + penalty
        assert group["loss"].to_numpy() == pytest.approx([expected] * len(group), rel=1e-5)
    # the penalty along the path: reg(theta) = reg(1) - l2 (1 - theta^2) ||R||^2, exactly
    for _, group in paths.groupby(["l2", "data", "target"]):
        at = group.set_index("theta")
        predicted = at.loc[1.0, "reg"] - at.loc[0.5, "l2"] * 0.75 * at.loc[0.5, "bulk_energy"]
        assert at.loc[0.5, "reg"] == pytest.approx(predicted, rel=1e-4, abs=1e-9)


def test_accuracy_table_keeps_the_thetas_of_the_run():
    paths = pd.DataFrame(
        {
            "l2": 0.0,
            "target": "all",
            "data": ["test"] * 3 + ["train"],
            "theta": [0.0, 0.5, 1.0, 1.0],
            "accuracy": [0.2, 0.6, 0.9, 0.1],
        }
    )
    table = accuracy_table(paths)
    assert list(table.columns) == [f"test accuracy, theta = {t}" for t in ("0", "0.5", "1")]
    assert table.loc[(0.0, "all")].tolist() == [0.2, 0.6, 0.9]
    assert list(accuracy_table(paths, thetas=(1.0,)).columns) == ["test accuracy, theta = 1"]


def test_noise_paths_start_at_the_trained_network(nets, paths):
    noise = noise_paths(nets.models, nets.loaders["train"], [0.0, 1.0], n_draws=2, seed=0)
    assert len(noise) == len(L2S) * 2 * 2 and set(noise["l2"]) == set(L2S)
    trained = paths[(paths["theta"] == 1.0) & (paths["data"] == "train")].groupby("l2")["loss"].first()
    at_zero = noise[noise["scale"] == 0.0].groupby("l2")["loss"]
    assert at_zero.max().to_numpy() == pytest.approx(trained.to_numpy(), rel=1e-5)
    assert (noise.loc[noise["scale"] == 0.0, "added_energy"] == 0).all()


def _mono_inputs():
    thetas = [0.0, 0.5, 1.0]
    paths = pd.DataFrame(
        [
            {"l2": l2, "target": "1", "data": "train", "theta": t, "loss": value, "ce": value}
            for l2, values in ((0.0, [3.0, 2.0, 1.0]), (1e-3, [1.0, 2.0, 3.0]))
            for t, value in zip(thetas, values)
        ]
    )
    noise = pd.DataFrame(
        [{"l2": l2, "scale": t, "loss": 1 + t, "ce": 1 + t} for l2 in (0.0, 1e-3) for t in (0.0, 1.0, 2.0)]
    )
    return paths, noise


def test_monotonicity_table_reads_both_paths():
    paths, noise = _mono_inputs()
    mono_theta, mono_noise = monotonicity_table(paths.assign(data=["train"] * 6), noise)
    along = mono_theta.set_index(["l2", "metric"])
    assert list(mono_theta["target"].unique()) == ["1"] and len(mono_theta) == 4
    assert not along.loc[(0.0, "loss"), "holds"] and along.loc[(0.0, "loss"), "change"] == -2.0
    assert along.loc[(1e-3, "ce"), "holds"] and along.loc[(1e-3, "ce"), "n_violations"] == 0
    assert mono_noise["holds"].all() and list(mono_noise["l2"]) == [0.0, 0.0, 1e-3, 1e-3]
    # rows measured on the test images are not the objective: left out
    test_rows = paths.assign(data="test", loss=-paths["loss"], ce=-paths["ce"])
    mixed, _ = monotonicity_table(pd.concat([paths, test_rows]), noise)
    pd.testing.assert_frame_equal(mixed, mono_theta)
    lines = trained_findings(mono_theta, mono_noise)
    assert lines[0] == "*Along S + theta R (training loss):*" and "*Adding noise (training loss):*" in lines
    assert len(lines) == 2 + 2 * 2 + 2 * 2  # two headings, then (L2 strength, metric) for each path
    assert lines[1].startswith("L2 = 0: **loss** is increasing in theta") and "0 of 1 curves" in lines[1]


def test_ce_rise_numbers_by_hand():
    mono_theta = pd.DataFrame(
        {
            "l2": [0.0, 0.0, 1e-3, 1e-3, 1e-3],
            "target": ["1", "all", "1", "all", "all"],
            "metric": ["ce", "ce", "ce", "ce", "loss"],
            "change": [-0.5, -0.2, 0.1, -0.05, 9.0],  # CE(1) - CE(0): the rise is minus this
        }
    )
    numbers = ce_rise_numbers(mono_theta, 1e-3)
    assert numbers == {
        "ce_rise_curves": 3,
        "ce_curves": 4,
        "ce_rise_min": -0.1,
        "ce_rise_max": 0.5,
        "ce_top_l2": 1e-3,
        "ce_rise_top_min": -0.1,
        "ce_rise_top_max": 0.05,
    }
    with pytest.raises(InputError, match="no theta path"):
        ce_rise_numbers(mono_theta, 0.1)


def test_certificate_holds_everywhere_and_flags_a_guaranteed_decrease(nets):
    x, y = next(iter(make_loader(nets.train_set, 100, subset=100)))
    certs = certificate_table(nets.models, x, y, fraction=0.5)
    layers = {l2: fittable_layers(model) for l2, model in nets.models.items()}
    assert len(certs) == 2 * sum(len(v) for v in layers.values())
    assert set(certs["split"]) == {"MP bulk", "magnitude 50%"}
    assert certs["holds"].all()  # a deterministic bound
    assert (certs["guarantees a decrease"] == (certs["bound"] < certs["penalty_removed"])).all()
    assert (certs.loc[certs["l2"] == 0.0, "penalty_removed"] == 0).all()
    assert (certs["lambda2"] == certs["l2"]).all()


def test_certificate_numbers_by_hand():
    certs = pd.DataFrame(
        {
            "holds": [True, True, False],
            "guarantees a decrease": [True, False, False],
            "bound": [2.0, 5.0, 1.0],
            "ce_A": [0.1, 0.2, 0.3],
            "ce_S": [0.15, 0.0, 0.3],
            "certified_lipschitz": [0.0, 0.25, 0.5],
            "certified_observed": [0.9, 0.7, 1.0],
            "certified_changed": [0, 1, 0],
        }
    )
    numbers = certificate_numbers(certs)
    assert numbers["cert_cases"] == 3 and numbers["cert_holds"] == 2 and numbers["cert_guaranteed"] == 1
    assert (numbers["cert_bound_min"], numbers["cert_bound_max"]) == (1.0, 5.0)
    assert numbers["cert_ce_change_max"] == pytest.approx(0.2)
    assert (numbers["cert_lip_max"], numbers["cert_obs_min"], numbers["cert_obs_max"]) == (0.5, 0.7, 1.0)
    assert numbers["cert_flipped"] == 1 and not any(math.isnan(v) for v in numbers.values())
