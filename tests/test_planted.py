"""Tests of rmtlib.experiments.planted: the planted setting of theorem T1 and its bookkeeping."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from rmtlib.errors import InputError
from rmtlib.experiments.planted import make_planted, planted_experiment, planted_noise, planted_trial, slack_summary


def test_planted_noise_has_variance_g_over_n():
    N, g = 400, 2.5
    r = planted_noise(N, g, seed=3)
    se = math.sqrt(2 / r.numel()) * g / N  # sd of the sample variance of N^2 Gaussians
    assert abs(float(r.var()) - g / N) < 5 * se
    assert abs(float(r.mean())) < 5 * math.sqrt(g / N / r.numel())
    assert float(r.pow(2).sum()) == pytest.approx(g * N, rel=0.01)
    assert not torch.equal(r, planted_noise(N, g, seed=4))
    assert torch.equal(r, planted_noise(N, g, seed=3))


def test_signal_is_low_rank_with_the_stated_norm_and_reads_the_data():
    net = make_planted(300, d=16, rank=5, strength=2.0, g=0.5, n_samples=200, seed=1)
    sv = torch.linalg.svdvals(net.S2)
    np.testing.assert_allclose(sv[:5].numpy(), 2.0 * math.sqrt(0.5), rtol=1e-12)
    assert float(sv[5:].max()) < 1e-12
    assert float(torch.linalg.norm(net.S2)) == pytest.approx(2.0 * math.sqrt(0.5 * 5), rel=1e-12)
    # v_k lie in the range of W1
    proj = net.W1 @ torch.linalg.lstsq(net.W1, net.V).solution
    assert torch.allclose(proj, net.V, atol=1e-10)
    # teacher labels: the clean network classifies its own data perfectly
    assert net.evaluate(net.S2, 0.0)["accuracy"] == 1.0


def test_trial_bookkeeping_matches_a_hand_computation():
    lam = 3e-4
    row, path = planted_trial(128, 2, lambda_reg=lam, thetas=[0.0, 0.5, 1.0], d=16, rank=4, n_samples=300)
    net = make_planted(128, d=16, rank=4, n_samples=300, seed=2)
    r2 = planted_noise(128, 1.0, seed=2)
    w2 = net.S2 + r2
    # the L2 term by hand, and CE through an independent nn.Module forward pass
    reg_hand = lam * float(net.W1.pow(2).sum() + w2.pow(2).sum() + net.W3.pow(2).sum())
    ce_hand = float(F.cross_entropy(net.as_module(w2)(net.s), net.y).detach())
    assert row["ce_W"] == pytest.approx(ce_hand, rel=1e-10)
    assert row["loss_W"] == pytest.approx(ce_hand + reg_hand, rel=1e-10)
    assert row["ce_S"] == pytest.approx(float(F.cross_entropy(net.as_module(net.S2)(net.s), net.y).detach()), rel=1e-10)
    assert row["r_energy"] == pytest.approx(float(r2.pow(2).sum()), rel=1e-12)
    assert row["cross"] == pytest.approx(2 * lam * float((net.S2 * r2).sum()), rel=1e-9)
    # slack = L(S2) - (L(W2) - lam ||R2||^2) = CE(S2) - CE(W2) - 2 lam <S2, R2>
    assert row["slack"] == pytest.approx(row["ce_S"] - row["ce_W"] - row["cross"], abs=1e-12)
    assert row["holds"] == (row["slack"] <= 0)
    # the two parts of the slack, each by hand
    assert row["slack_ce"] == pytest.approx(row["ce_S"] - ce_hand, abs=1e-12)
    assert row["slack_penalty"] == pytest.approx(-2 * lam * float((net.S2 * r2).sum()), rel=1e-9)
    assert row["slack"] == pytest.approx(row["slack_ce"] + row["slack_penalty"], abs=1e-12)
    p = path.set_index("theta")
    assert p.loc[1.0, "loss"] == pytest.approx(row["loss_W"], rel=1e-12)
    assert p.loc[0.0, "loss"] == pytest.approx(row["loss_S"], rel=1e-12)
    half = net.evaluate(net.S2 + 0.5 * r2, lam)
    assert p.loc[0.5, "loss"] == pytest.approx(half["loss"], rel=1e-10)


def test_mp_split_of_planted_w2_finds_the_planted_rank():
    row, _ = planted_trial(256, 0, lambda_reg=1e-4, split=True, d=16, rank=4, strength=3.0, n_samples=200)
    assert row["n_spikes_found"] == 4


def test_slack_shrinks_with_width():
    trials, _ = planted_experiment([64, 1024], [0, 1], lambda_reg=1e-4, d=16, rank=4, n_samples=1000)
    summary = slack_summary(trials).set_index("N")
    assert summary.loc[1024, "abs_slack_mean"] < 0.5 * summary.loc[64, "abs_slack_mean"]
    assert summary["abs_slack_loglog_slope"].iloc[0] < 0
    # the removed regularization grows like lambda g N while the slack shrinks
    assert summary.loc[1024, "reg_removed"] == pytest.approx(1e-4 * 1024, rel=0.02)


def test_slack_is_mostly_the_cross_entropy_part_and_decays_like_one_over_n():
    """With a clean teacher the added noise raises the CE: the CE part dominates the slack (the penalty part
    -2 lambda <S2, R2> is ~100x smaller), and |slack| decays with a log-log slope near -1 (fitted with its error)."""
    trials, _ = planted_experiment([128, 256, 512, 1024], [0, 1, 2], lambda_reg=1e-4, n_samples=1000)
    summary = slack_summary(trials)
    assert (trials["slack_ce"].abs() > 10 * trials["slack_penalty"].abs()).mean() >= 0.9
    assert summary["ce_raised_fraction"].iloc[0] == 1.0
    slope, se = summary["abs_slack_loglog_slope"].iloc[0], summary["abs_slack_loglog_slope_se"].iloc[0]
    assert -1.5 < slope < -0.7 and 0 < se < 0.5
    assert summary["slack_ce_mean"].to_numpy() + summary["slack_penalty_mean"].to_numpy() == pytest.approx(
        summary["slack_mean"].to_numpy(), abs=1e-12
    )


def test_bad_input():
    with pytest.raises(InputError, match="rank"):
        make_planted(64, d=8, rank=9)
    with pytest.raises(InputError, match="label_noise"):
        make_planted(64, label_noise=1.5)
    with pytest.raises(InputError, match="act"):
        make_planted(64, act="softplus")
    with pytest.raises(InputError, match="width"):
        planted_experiment([], [0])


def test_findings_do_not_depend_on_the_table_index():
    from rmtlib.experiments.planted import planted_findings

    parts = [
        planted_experiment([64, 128], seeds, lambda_reg=1e-4, d=16, rank=4, n_samples=200)[0] for seeds in ([0, 1], [2])
    ]
    stacked = pd.concat(parts)  # index 0..3 then 0..1 again
    assert planted_findings(stacked) == planted_findings(stacked.reset_index(drop=True))


def test_findings_say_how_each_quantity_moves():
    """A shrinking regularization or an unchanged slack used to be reported as "grows"."""
    from rmtlib.experiments.planted import planted_findings

    trials = pd.DataFrame(
        {
            "N": [64, 128, 256],
            "seed": 0,
            "slack": [-2e-3, -1e-3, -1e-3],
            "slack_ce": [-2e-3, -1e-3, -1e-3],
            "slack_penalty": 0.0,
            "holds": True,
            "reg_removed": [0.3, 0.2, 0.1],
            "ce_S": 1.0,
            "ce_W": 1.0,
            "acc_S": 0.5,
            "acc_W": 0.5,
        }
    )
    text = " ".join(planted_findings(trials))
    assert "regularization shrinks from 0.3 to 0.1" in text
    assert "does not shrink at every step (it stays the same between N = 128 and 256)" in text and "grows" not in text
    trials["slack"] = trials["slack_ce"] = [-1e-3, -2e-3, -3e-3]
    trials["reg_removed"] = [0.1, 0.2, 0.3]
    text = " ".join(planted_findings(trials))
    assert (
        "regularization grows from 0.1 to 0.3" in text
        and "does not shrink" in text
        and "(it grows between N = 64 and 128; it grows between N = 128 and 256)" in text
    )


def _trials(slacks, ce_parts, N=(64, 128)):
    """Trials of two widths, one seed each, with given slacks and CE parts (the penalty part is the rest)."""
    return pd.DataFrame(
        {
            "N": list(N),
            "seed": 0,
            "slack": slacks,
            "slack_ce": ce_parts,
            "slack_penalty": [s - c for s, c in zip(slacks, ce_parts)],
            "holds": [s <= 0 for s in slacks],
            "reg_removed": [n * 1e-4 for n in N],
            "ce_S": 1.0,
            "ce_W": 1.0,
            "acc_S": 1.0,
            "acc_W": 0.9,
        }
    )


def test_planted_numbers_read_the_run_and_its_control():
    from rmtlib.experiments.planted import planted_numbers

    trials = _trials([-0.02, 0.001], [-0.021, 0.0005])
    control = _trials([0.01, 0.004], [0.01, 0.004])
    slack, control_slack = slack_summary(trials), slack_summary(control)
    numbers = planted_numbers(trials, slack, control, control_slack, 0.5)
    assert (numbers["pl_draws"], numbers["pl_holds"], numbers["pl_ce_raised"]) == (2, 1, 1)
    assert (numbers["pl_ctrl_draws"], numbers["pl_ctrl_holds"], numbers["pl_ctrl_noise"]) == (2, 0, 0.5)
    assert numbers["pl_n0"] == 64 and numbers["pl_reg0"] == pytest.approx(64e-4)
    assert (numbers["pl_slack0"], numbers["pl_ce0"]) == (-0.02, -0.021)
    assert numbers["pl_pen0"] == pytest.approx(0.001)
    # two widths: the log-log slope of |slack| by hand, no standard error
    assert numbers["pl_slope"] == pytest.approx(math.log(0.001 / 0.02) / math.log(2))
    assert numbers["pl_ctrl_slope"] == pytest.approx(math.log(0.004 / 0.01) / math.log(2))
    assert math.isnan(numbers["pl_slope_se"])


def test_estimated_split_table_compares_the_fitted_split_with_the_true_one():
    from rmtlib.experiments.planted import estimated_split_table

    trials, _ = planted_experiment([96, 192], [0, 1], split_max_n=96, lambda_reg=1e-4, d=16, rank=4, n_samples=200)
    table, sentence = estimated_split_table(trials)
    assert list(table.index) == [96]  # the split is done only up to split_max_n
    found = trials[trials["N"] == 96]
    assert table.loc[96, "spikes_found"] == found["n_spikes_found"].mean()
    assert table.loc[96, "slack_split"] == pytest.approx(found["slack_split"].mean())
    exact = int((found["n_spikes_found"] == found["rank"]).sum())
    assert sentence.startswith(f"the fit finds exactly the planted rank in {exact} of 2 draws")
    none, why = estimated_split_table(planted_experiment([64], [0], d=16, rank=4, n_samples=100)[0])
    assert none is None and "skipped" in why


@pytest.mark.parametrize(
    "slacks, ce_parts, verdict",
    [
        ([-0.02, -0.01], [-0.02, -0.01], "holds, mostly through the cross-entropy, not the penalty"),
        ([-0.02, -0.01], [0.01, 0.02], "holds"),
        ([-0.02, 0.01], [-0.02, 0.01], "does not hold reliably"),
    ],
)
def test_t1_verdict_says_how_the_inequality_held(slacks, ce_parts, verdict):
    from rmtlib.experiments.planted import t1_verdict

    trials = _trials(slacks, ce_parts)
    row = t1_verdict(trials, slack_summary(trials), _trials([0.01, -0.01], [0.01, -0.01]), 0.5)
    assert row["verdict"] == verdict
    assert row["measured"].startswith(f"held in {sum(s <= 0 for s in slacks)} of 2 planted draws")
    assert row["measured"].endswith("50% with 50% random labels")
    assert set(row) == {"claim", "paper", "measured", "verdict"}
