"""Tests of rmtlib.experiments.randomness: the MP split, bulk energy, spectral tracking, theta/noise paths."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rmtlib import FitConfig, fit_mp
from rmtlib.errors import InputError
from rmtlib.experiments.randomness import (
    SpectralTracker,
    bulk_energy,
    control_comparison,
    control_findings,
    gaussian_init_,
    l2_term,
    monotonicity,
    noise_path,
    penalty_only_run,
    run_decay_experiment,
    split_at_edge,
    stationary_run,
    strength_ordering,
    theta_path,
)
from rmtlib.experiments.spiked import bbp_threshold, spiked_matrix
from rmtlib.nn.models import fc_net
from rmtlib.train.loops import evaluate, train
from rmtlib.train.regularize import L2


def _spiked(m=300, n=150, strengths=(3.0, 2.0, 1.5), seed=0):
    sigma = 1.0 / math.sqrt(max(m, n))
    thr = bbp_threshold(m, n, sigma)
    return np.asarray(
        spiked_matrix(m, n, [s * thr for s in strengths], sigma=sigma, rng=np.random.default_rng(seed)),
        dtype=np.float64,
    )


def test_split_reconstructs_and_keeps_exactly_the_spikes():
    w = _spiked()
    s, r, fit = split_at_edge(torch.from_numpy(w), fit_config=FitConfig(alpha=0.25, beta=0.1))
    assert torch.allclose(s + r, torch.from_numpy(w), rtol=0, atol=1e-13)
    assert fit.n_spikes == 3  # three planted components, all well above the BBP threshold
    sv_s = torch.linalg.svdvals(s).numpy()  # a direct SVD: the tiny ones are at rounding level
    np.testing.assert_allclose(sv_s[:3], fit.spikes, rtol=1e-10)
    assert np.all(sv_s[3:] < 1e-10 * sv_s[0])
    # the bulk keeps every singular value at or below the edge, and nothing else
    sv_r = torch.linalg.svdvals(r).numpy()
    np.testing.assert_allclose(np.sort(sv_r)[::-1][: fit.p - 3], fit.singular_values[3:], rtol=1e-9, atol=1e-12)
    assert sv_r.max() <= fit.sv_edge
    assert bulk_energy(fit) == pytest.approx(float(r.pow(2).sum()), rel=1e-10)
    # S and R live in orthogonal singular subspaces: the Frobenius energies add
    assert float(torch.sum(s * r)) == pytest.approx(0.0, abs=1e-10)


def test_split_of_pure_noise_with_no_spike_is_all_bulk():
    w = np.random.default_rng(3).standard_normal((400, 100)) / 20
    s, r, fit = split_at_edge(w, fit_config=FitConfig(alpha=0.25, beta=0.1))
    if fit.n_spikes == 0:
        assert float(s.abs().max()) == 0.0 and torch.equal(r, torch.from_numpy(w))
    assert fit.n_spikes <= 1


def test_split_rejects_bad_input():
    with pytest.raises(InputError, match="too small"):
        split_at_edge(torch.randn(10, 40), name="head")
    with pytest.raises(InputError, match="NaN"):
        split_at_edge(torch.full((20, 20), float("nan")))
    with pytest.raises(InputError, match="2-D"):
        split_at_edge(torch.randn(3, 20, 20))


def test_gaussian_init_has_variance_one_over_fan_in():
    model = gaussian_init_(fc_net([784, 256, 256, 10]), seed=1)
    for idx, fan_in in ((1, 784), (3, 256), (5, 256)):
        w = model[idx].weight.detach().double()
        se = math.sqrt(2 / w.numel()) / fan_in  # sd of the sample variance
        assert abs(float(w.var()) - 1 / fan_in) < 5 * se
        assert float(model[idx].bias.detach().abs().max()) == 0.0


def _data(n=256, d=40, classes=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = (x[:, :classes] * 2).argmax(1)
    return TensorDataset(x, y)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = gaussian_init_(fc_net([40, 48, 48, 4]), seed=0)
    loader = DataLoader(_data(), batch_size=64)
    train(model, loader, 3, optimizer="sgd", lr=0.1, schedule="constant", progress=False)
    return model.eval(), loader


def test_tracker_records_every_layer_and_epoch(trained):
    model = gaussian_init_(fc_net([40, 48, 48, 4]), seed=0)
    loader = trained[1]
    tracker = SpectralTracker(tags={"width": 48})
    tracker.observe(0, model)
    train(model, loader, 2, optimizer="sgd", lr=0.1, schedule="constant", hooks=[tracker], progress=False)
    df = tracker.frame()
    assert sorted(df["epoch"].unique()) == [0, 1, 2]
    assert set(df["layer"]) == {"1", "3", "5"}
    head = df[df["layer"] == "5"]
    assert (head["status"] == "too_small").all() and head["sigma2"].isna().all()
    ok = df[df["status"] == "ok"]
    assert np.allclose(ok["bulk_energy"] + ok["spike_energy"], ok["total_energy"], rtol=1e-12)
    final = dict(model.named_modules())
    for layer in ("1", "3"):
        row = ok[(ok["epoch"] == 2) & (ok["layer"] == layer)].iloc[0]
        assert row["total_energy"] == pytest.approx(
            float(final[layer].weight.detach().double().pow(2).sum()), rel=1e-10
        )
    # at initialisation the N x N layer is pure N(0, 1/48) noise
    init = ok[(ok["epoch"] == 0) & (ok["layer"] == "3")].iloc[0]
    assert init["sigma2"] == pytest.approx(1 / 48, rel=0.25)


def test_theta_path_end_points_and_exact_regularizer(trained):
    model, loader = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lam = 1e-3
    thetas = [0.0, 0.25, 0.5, 1.0]
    df = theta_path(model, None, thetas, None, loader, lam)
    assert set(df["target"]) == {"1", "3", "all"}
    # the model itself is not touched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ref = evaluate(model, loader)
    reg_ref = lam * sum(
        float(p.detach().double().pow(2).sum()) for n, p in model.named_parameters() if n.endswith("weight")
    )
    for _, row in df[df["theta"] == 1.0].iterrows():
        assert row["ce"] == ref["loss"] and row["accuracy"] == ref["accuracy"]
        assert row["reg"] == pytest.approx(reg_ref, rel=1e-6)
    # reg(theta) = reg(1) - lambda (1 - theta^2) ||R||_F^2, exactly (S and R are orthogonal)
    for target, group in df.groupby("target"):
        r1 = group[group["theta"] == 1.0]["reg"].iloc[0]
        expected = r1 - lam * (1 - group["theta"] ** 2) * group["bulk_energy"]
        np.testing.assert_allclose(group["reg"], expected, rtol=1e-5)
    # theta = 0 for all layers is the model with every split layer replaced by its spikes
    spiky = fc_net([40, 48, 48, 4])
    spiky.load_state_dict(model.state_dict())
    with torch.no_grad():
        for idx in (1, 3):
            s, _, _ = split_at_edge(spiky[idx].weight, fit_config=FitConfig(alpha=0.25, beta=0.1))
            spiky[idx].weight.copy_(s.float())
    zero = df[(df["target"] == "all") & (df["theta"] == 0.0)].iloc[0]
    assert zero["ce"] == pytest.approx(evaluate(spiky, loader)["loss"], rel=1e-6)


def test_theta_path_rejects_unknown_layer(trained):
    model, loader = trained
    with pytest.raises(InputError, match="nope"):
        theta_path(model, ["nope"], [0, 1], None, loader, 0.0)


def test_noise_path_zero_is_the_model_and_energy_scales(trained):
    model, loader = trained
    df = noise_path(model, ["1", "3"], [0.0, 0.5, 2.0], None, loader, 1e-3, n_draws=2, seed=1)
    ref = evaluate(model, loader)
    zero = df[df["scale"] == 0.0]
    assert (zero["ce"] == ref["loss"]).all() and (zero["added_energy"] == 0).all()
    for _, group in df.groupby("draw"):
        e = group.set_index("scale")["added_energy"]
        assert e[2.0] == pytest.approx(4 * e[0.5], rel=1e-12)  # same G for every t of a draw
    # t = 2 adds about 2 sigma2 m n of energy to each layer
    fc = FitConfig(alpha=0.25, beta=0.1)
    expected = sum(2 * fit_mp(model[i].weight, fit_config=fc).sigma2 * model[i].weight.numel() for i in (1, 3))
    assert df[df["scale"] == 2.0]["added_energy"].mean() == pytest.approx(expected, rel=0.05)


def test_monotonicity_counts_violations():
    df = pd.DataFrame(
        {"g": ["a"] * 4 + ["b"] * 4, "x": [0, 1, 2, 3] * 2, "y": [1.0, 2.0, 3.0, 4.0, 1.0, 3.0, 2.0, 5.0]}
    )
    out = monotonicity(df, "x", ["y"], by="g").set_index("g")
    assert out.loc["a", "monotone"] and out.loc["a", "holds"] and out.loc["a", "n_violations"] == 0
    assert not out.loc["b", "monotone"] and out.loc["b", "n_violations"] == 1
    assert out.loc["b", "worst_violation"] == pytest.approx(1.0)
    assert out.loc["b", "change"] == pytest.approx(4.0) and out.loc["b", "rel_change"] == pytest.approx(4.0)
    dec = monotonicity(df, "x", ["y"], by="g", expect="decreasing").set_index("g")
    assert dec.loc["a", "n_violations"] == 3 and not dec.loc["a", "holds"]
    with pytest.raises(InputError, match="missing|not in"):
        monotonicity(df, "x", ["z"])


def test_strength_ordering():
    summary = pd.DataFrame(
        {"layer": ["1"] * 3 + ["3"] * 3, "l2": [0, 1e-3, 1e-2] * 2, "rel_change": [0.1, -0.3, -0.9, -0.2, -0.1, -0.5]}
    )
    out = strength_ordering(summary, ["layer"]).set_index("layer")
    assert out.loc["1", "ordered"] and out.loc["1", "spearman"] == pytest.approx(-1.0)
    assert not out.loc["3", "ordered"]


def test_l2_term_matches_hand_computation():
    model = fc_net([20, 30, 5])
    expected = float(model[1].weight.detach().double().pow(2).sum() + model[3].weight.detach().double().pow(2).sum())
    assert float(l2_term(model)) == pytest.approx(expected, rel=1e-12)


def _decay_mono(control: list[float], penalized: list[float]) -> pd.DataFrame:
    """monotonicity of one control and one penalized gamma track over epochs 0, 1, 2."""
    df = pd.DataFrame(
        {"width": 64, "layer": "3", "l2": [0.0] * 3 + [1e-3] * 3, "epoch": [0, 1, 2] * 2, "gamma": control + penalized}
    )
    return monotonicity(df, "epoch", ["gamma"], by=["width", "l2", "layer"], expect="decreasing")


def test_decay_findings_do_not_call_an_unchanged_control_a_rise():
    from rmtlib.experiments.randomness import decay_findings

    mono = _decay_mono([1.0, 1.0, 1.0], [1.0, 0.9, 0.8])
    assert mono.set_index("l2").loc[0.0, "change"] == 0.0
    control = [line for line in decay_findings(mono) if "control" in line][0]
    assert "rises" not in control and "is unchanged in (width=64, layer=3)" in control
    risen = [line for line in decay_findings(_decay_mono([1.0, 1.0, 1.1], [1.0, 0.9, 0.8])) if "control" in line][0]
    assert "rises in (width=64, layer=3: +10.0%)" in risen
    with pytest.raises(InputError, match="decreasing"):
        decay_findings(mono.assign(expect="increasing"))


def test_ordering_sentence_does_not_call_a_smaller_rise_a_larger_decrease():
    from rmtlib.experiments.randomness import decay_findings

    def sentence(values: list[float]) -> str:
        summary = pd.DataFrame(
            {"width": 64, "layer": "3", "metric": "sigma2", "l2": [0.0, 1e-3, 1e-2], "rel_change": values}
        )
        ordering = strength_ordering(summary, ["width", "layer", "metric"])
        assert ordering["ordered"].all()
        return decay_findings(pd.DataFrame(columns=["metric", "l2", "holds"]), ordering)[0]

    rising = sentence([0.5, 0.3, 0.1])  # every run rises; a stronger penalty only rises less
    assert "smaller rise, not a larger decrease" in rising and "+30.0%, +10.0%" in rising.split("smaller rise")[1]
    assert "smaller rise" in sentence([0.5, 0.1, -0.6])  # the weaker penalty still rises, less than the control
    assert "smaller rise" not in sentence([0.5, -0.3, -0.6])  # penalized runs all decrease: a larger decrease


def test_split_names_why_a_rank_deficient_matrix_cannot_be_split():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 2)) @ rng.standard_normal((2, 32))  # rank 2, no zero row or column
    with pytest.raises(InputError, match="rank_deficient") as err:
        split_at_edge(w)
    assert "too small" not in str(err.value)
    # zeroed rows are dropped, not read as a rank truncation: what is left is a 2 x 2 matrix, too small
    z = np.zeros((32, 32))
    z[:2, :2] = np.eye(2)
    with pytest.raises(InputError, match="too small"):
        split_at_edge(z)


def test_noise_path_needs_a_layer(trained):
    model, loader = trained
    with pytest.raises(InputError, match="no layer"):
        noise_path(model, [], [0.0, 1.0], None, loader, 1e-3)


def _decay_factor(l2, lr, momentum, steps):
    """Amplitude factor of SGD with momentum on lambda w^2 alone: v <- m v + 2 lambda w, w <- w - lr v."""
    w, v = 1.0, 0.0
    for _ in range(steps):
        v = momentum * v + 2 * l2 * w
        w = w - lr * v
    return w


def test_penalty_only_run_shrinks_every_weight_by_the_predicted_factor():
    """Data-free: every weight is multiplied by the same scalar, so the spectrum keeps its shape."""
    model = gaussian_init_(fc_net([40, 48, 48, 4]), seed=1)
    start = [m.weight.detach().clone() for m in model if isinstance(m, torch.nn.Linear)]
    epochs_seen = []
    penalty_only_run(model, L2(1e-2), 3, 7, lr=0.05, momentum=0.9, hook=lambda e, _m: epochs_seen.append(e))
    factor = _decay_factor(1e-2, 0.05, 0.9, 21)
    assert epochs_seen == [1, 2, 3] and 0.5 < factor < 0.99
    for w0, module in zip(start, [m for m in model if isinstance(m, torch.nn.Linear)]):
        torch.testing.assert_close(module.weight.detach(), factor * w0, rtol=1e-5, atol=1e-7)


def test_decay_experiment_control_rows_and_comparison():
    loader = DataLoader(_data(), batch_size=64)  # 4 steps per epoch
    res = run_decay_experiment([48], [0.0, 0.01], 2, loader, input_dim=40, classes=4, lr=0.05, control=True)
    spectra = res["spectra"]
    assert set(spectra["run"]) == {"trained", "data-free"}
    assert not ((spectra["run"] == "data-free") & (spectra["l2"] == 0)).any()  # no twin without a penalty
    table = control_comparison(spectra)
    assert len(table) == 2 and set(table["layer"]) == {"1", "3"}
    predicted = _decay_factor(0.01, 0.05, 0.9, 8) ** 2
    # the data-free twin's bulk and total energy fall by exactly the weight-decay factor
    np.testing.assert_allclose(table["bulk_data_free"], predicted, rtol=1e-4)
    np.testing.assert_allclose(table["total_data_free"], predicted, rtol=1e-4)
    np.testing.assert_allclose(table["bulk_vs_control"], table["bulk_trained"] / table["bulk_data_free"])
    # weight decay alone keeps the spectrum's shape: the same spikes (false alarms at init), scaled
    np.testing.assert_allclose(table["spike_energy_data_free"], table["spike_energy_init"] * predicted, rtol=1e-4)
    lines = control_findings(table)
    assert "data-free twin" in lines[0] and "Spike energy grew" in lines[1]
    with pytest.raises(InputError, match="control=True"):
        control_comparison(spectra[spectra["run"] == "trained"])


def test_stationary_run_drives_the_gradient_down_and_reports_it():
    data = _data(n=200)
    x, y = data.tensors
    df = stationary_run([40, 32, 32, 4], 1e-2, x, y, checkpoints=(0, 5, 40))
    hidden = df[df["layer"] == "3"].set_index("iteration")
    assert list(hidden.index) == [0, 5, 40]
    assert hidden.loc[0, "grad_norm_rel"] == 1.0 and hidden.loc[40, "grad_norm_rel"] < 0.05
    # the gradient norm is that of CE + l2 sum ||W||^2 at the final weights: recompute it independently
    model = gaussian_init_(fc_net([40, 32, 32, 4]), seed=0).double()
    loss = torch.nn.functional.cross_entropy(model(x.double()), y) + L2(1e-2)(model)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert hidden.loc[0, "grad_norm"] == pytest.approx(float(torch.sqrt(sum(g.pow(2).sum() for g in grads))), rel=1e-9)
    assert hidden.loc[40, "bulk_energy"] < hidden.loc[0, "bulk_energy"]
    with pytest.raises(InputError, match="l2 > 0"):
        stationary_run([40, 32, 32, 4], 0.0, x, y)


def test_noise_path_scales_its_noise_with_the_fit_config(trained):
    """noise_path used to fit with alpha and beta only. Its noise is sqrt(t sigma2) G, with the same G for
    every configuration, so the added energy follows sigma^2 of the configuration's fit: BEMA's quantile
    convention moves it; the edge's centring does not (it moves the edge, not sigma^2)."""
    model, loader = trained
    configs = [
        FitConfig(beta=0.1),
        FitConfig(beta=0.1, bema_quantile="reference"),
        FitConfig(beta=0.1, edge_centring="ma"),
    ]
    energy = {}
    for config in configs:
        df = noise_path(model, ["3"], [1.0], None, loader, 1e-3, n_draws=1, seed=2, fit_config=config)
        energy[config] = float(df["added_energy"].iloc[0])
    sigma2 = {c: fit_mp(model[3].weight, fit_config=c).sigma2 for c in configs}
    assert sigma2[configs[1]] != sigma2[configs[0]]
    assert energy[configs[1]] / energy[configs[0]] == pytest.approx(sigma2[configs[1]] / sigma2[configs[0]], rel=1e-9)
    assert energy[configs[2]] == energy[configs[0]]
