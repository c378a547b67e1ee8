"""The FC regularization table: row flags -> penalties and schedules, the paper's numbers, seeded runs."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from rmtlib import FitConfig
from rmtlib.errors import InputError
from rmtlib.experiments.fc_table import (
    FC_ROWS,
    PAPER_FC_TABLE,
    compare_with_paper,
    row_penalty,
    row_scheduler,
    run_fc_table,
    summarize_seeds,
)
from rmtlib.nn.models import fc_net
from rmtlib.train.data import synthetic_classification
from rmtlib.train.regularize import MPSplitScheduler


def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("row", FC_ROWS, ids=lambda r: r.name)
def test_row_flags_map_to_penalties_and_schedules(row):
    torch.manual_seed(0)
    model = fc_net([30, 20, 10])
    l1, l2 = 3e-3, 7e-3
    with torch.no_grad():
        expected = sum(
            (l1 * w.abs().sum() if row.l1 else 0.0) + (l2 * w.pow(2).sum() if row.l2 else 0.0) for w in _weights(model)
        )
    penalty = row_penalty(row, l1=l1, l2=l2)
    if not (row.l1 or row.l2):
        assert penalty is None
    else:
        with torch.no_grad():
            assert float(penalty(model)) == pytest.approx(float(expected), rel=1e-6)
    sched = row_scheduler(row, every=3, T=40, fit_config=FitConfig(alpha=0.2, beta=0.1))
    if row.mp_pruning:
        assert isinstance(sched, MPSplitScheduler)
        assert (sched.every, sched.T, sched.fit_config) == (3, 40.0, FitConfig(alpha=0.2, beta=0.1))
        assert row_scheduler(row).fit_config == FitConfig(beta=0.1)  # the paper's FC setting
    else:
        assert sched is None


def test_row_names_and_flags_are_the_papers():
    flags = {r.name: (r.mp_pruning, r.l1, r.l2) for r in FC_ROWS}
    assert flags == {
        "no pruning, no regularization": (False, False, False),
        "MP pruning only": (True, False, False),
        "L1 + L2 only": (False, True, True),
        "MP pruning + L1 + L2": (True, True, True),
        "MP pruning + L2": (True, False, True),
    }
    paper = PAPER_FC_TABLE.set_index("row")
    assert paper.loc["MP pruning + L1 + L2", "test_accuracy"] == 90.53
    assert paper.loc["no pruning, no regularization", "train_accuracy"] == 78.03
    assert paper.loc["MP pruning + L2", "train_accuracy"] == 99.98
    assert (PAPER_FC_TABLE.source == "paper").all() and (PAPER_FC_TABLE.dataset == "Fashion-MNIST").all()
    with pytest.raises(InputError, match="unknown FC table row"):
        row_penalty("L3 only")


@pytest.fixture(scope="module")
def data():
    full = synthetic_classification(n=480, dim=64, classes=4, seed=0, separation=3.0)
    return torch.utils.data.Subset(full, range(320)), torch.utils.data.Subset(full, range(320, 480))


def test_run_is_seeded_and_mp_rows_lower_ranks(data):
    kwargs = dict(
        widths=[64, 48, 48, 4],
        epochs=2,
        data=data,
        split_every=1,
        batch_size=32,
        lr=0.05,
        rows=["no pruning, no regularization", "MP pruning + L2"],
    )
    first = run_fc_table(seed=1, **kwargs)
    again = run_fc_table(seed=1, **kwargs)
    cols = ["test_accuracy", "train_accuracy", "test_loss", "params_stored", "ranks"]
    pd.testing.assert_frame_equal(first[cols], again[cols])
    assert (first.source == "measured").all()
    plain, mp = (
        first.set_index("row").loc["no pruning, no regularization"],
        first.set_index("row").loc["MP pruning + L2"],
    )
    assert plain.ranks == "" and plain.l2 == 0.0 and not plain.mp_pruning
    ranks = [int(r) for r in mp.ranks.split(",")]
    assert len(ranks) == 2 and all(r < 48 for r in ranks)  # both hidden layers split below full rank
    assert mp.l2 == 5e-6 and mp.l1 == 0.0
    assert plain.test_accuracy > 60  # it learned something: the comparison is not between two failures
    other_seed = run_fc_table(seed=2, **kwargs)
    assert not other_seed[cols].equals(first[cols])
    both = compare_with_paper(first)
    assert both.loc["MP pruning + L2", ("measured here", "test_accuracy")] == mp.test_accuracy
    assert both.loc["MP pruning + L2"].iloc[0] == 90.16  # the paper's column comes first


def test_bad_widths_are_refused(data):
    with pytest.raises(InputError, match="input features"):
        run_fc_table(widths=[10, 8, 4], epochs=1, data=data)
    with pytest.raises(InputError, match="hidden layer"):
        run_fc_table(widths=[64, 4], epochs=1, data=data)


def test_label_noise_reaches_the_training_labels_only(data):
    kwargs = dict(
        widths=[64, 48, 48, 4],
        epochs=3,
        data=data,
        batch_size=32,
        lr=0.05,
        seed=0,
        rows=["no pruning, no regularization"],
    )
    clean, noisy = run_fc_table(**kwargs), run_fc_table(label_noise=0.5, **kwargs)
    assert clean.label_noise.iloc[0] == 0.0 and noisy.label_noise.iloc[0] == 0.5
    # half the training labels are wrong, so fitting them is harder than fitting clean ones;
    # the test split keeps its clean labels, on which the clean-trained net stays accurate
    assert noisy.train_accuracy.iloc[0] < clean.train_accuracy.iloc[0] - 20
    assert clean.test_accuracy.iloc[0] > 60


def test_seeds_run_each_seed_as_a_single_run_would(data):
    kwargs = dict(
        widths=[64, 48, 48, 4],
        epochs=1,
        data=data,
        batch_size=32,
        lr=0.05,
        label_noise=0.2,
        rows=["no pruning, no regularization", "MP pruning only"],
    )
    both = run_fc_table(seeds=[3, 5], **kwargs)
    singles = pd.concat([run_fc_table(seed=3, **kwargs), run_fc_table(seed=5, **kwargs)], ignore_index=True)
    cols = ["row", "seed", "test_accuracy", "train_accuracy", "ranks"]
    pd.testing.assert_frame_equal(both[cols], singles[cols])
    with pytest.raises(InputError, match="distinct"):
        run_fc_table(seeds=[1, 1], **kwargs)
    with pytest.raises(InputError, match="label_noise"):
        run_fc_table(**{**kwargs, "label_noise": 1.0})


def test_summarize_seeds_pairs_rows_by_seed():
    plain, mp = "no pruning, no regularization", "MP pruning only"
    table = pd.DataFrame(
        {
            "row": [plain, mp, plain, mp, plain, mp],
            "seed": [0, 0, 1, 1, 2, 2],
            "test_accuracy": [90.0, 91.0, 80.0, 81.5, 85.0, 85.5],
            "train_accuracy": [95.0, 96.0, 94.0, 93.0, 96.0, 99.0],
            "param_reduction": [0.0, 0.1, 0.0, 0.2, 0.0, 0.3],
        }
    )
    out = summarize_seeds(table)
    assert list(out.index) == [plain, mp]  # the paper's order
    assert out.loc[mp, "test_accuracy_mean"] == pytest.approx((91 + 81.5 + 85.5) / 3)
    assert out.loc[plain, "test_accuracy_sd"] == pytest.approx(5.0)  # sd of 90, 80, 85
    assert out.loc[mp, "param_reduction_mean"] == pytest.approx(0.2)
    # paired gains 1.0, 1.5, 0.5: mean 1.0, sd 0.5 -- far tighter than the 5-point seed spread
    assert out.loc[mp, "test_gain_mean"] == pytest.approx(1.0)
    assert out.loc[mp, "test_gain_sd"] == pytest.approx(0.5)
    low, high = scipy.stats.t.interval(0.95, df=2, loc=1.0, scale=0.5 / np.sqrt(3))  # 1.0 +- 1.24
    assert out.loc[mp, "test_gain_ci95"] == pytest.approx((high - low) / 2)
    assert out.loc[plain, "test_gain_mean"] == 0.0
    assert (out.n_seeds == 3).all()
    both = compare_with_paper(table)
    assert both.loc[mp, ("measured here", "test_accuracy")] == pytest.approx(out.loc[mp, "test_accuracy_mean"])
    one = summarize_seeds(table[table.seed == 0])
    assert one.test_accuracy_sd.isna().all() and one.loc[mp, "test_gain_mean"] == 1.0
    assert one.test_gain_ci95.isna().all()


def test_summarize_seeds_refuses_a_seed_repeated_within_a_row():
    """Two configurations in one table repeat (row, seed): pairing by seed is then ambiguous."""
    plain, mp = "no pruning, no regularization", "MP pruning only"
    table = pd.DataFrame(
        {
            "row": [plain, mp] * 2,
            "seed": [0, 0, 0, 0],
            "test_accuracy": [90.0, 91.0, 80.0, 82.0],
            "train_accuracy": [95.0] * 4,
            "param_reduction": [0.0] * 4,
        }
    )
    with pytest.raises(InputError, match="more than once"):
        summarize_seeds(table)
