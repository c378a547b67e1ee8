"""Cost tables: analysis timing rows, MACs and outputs of pruned models against independent counts."""

import time

import numpy as np
import pytest
import torch

from rmtlib.errors import InputError
from rmtlib.experiments import cost
from rmtlib.nn.count import count_macs, count_params
from rmtlib.nn.models import fc_net
from rmtlib.pruning import prune


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return fc_net([64, 128, 128, 10]).eval()


def test_timed_measures_wall_time():
    assert 0.05 <= cost.timed(lambda: time.sleep(0.05)) < 1.0


def test_analysis_times_rows_and_missing_weightwatcher(model, monkeypatch):
    table = cost.analysis_times(model, repeats=2, weightwatcher=False)
    assert table.tool.tolist() == ["rmtlib.analyze", "torch.linalg.svdvals", "weightwatcher"]
    assert (table.matrices == 3).all() and table.relative.iloc[0] == 1.0
    assert (table.seconds.iloc[:2] > 0).all() and (table.repeats.iloc[:2] == 2).all()
    assert np.isnan(table.seconds.iloc[2]) and "skipped" in table.note.iloc[2]
    monkeypatch.setattr(cost, "weightwatcher_available", lambda: False)
    table = cost.analysis_times(model, repeats=1)
    assert np.isnan(table.seconds.iloc[2]) and "not installed" in table.note.iloc[2]
    with pytest.raises(InputError, match="repeats"):
        cost.analysis_times(model, repeats=0)


def test_pruned_costs_match_independent_counts(model):
    x = torch.randn(16, 64)
    table = cost.pruned_costs(model, ["rmt_lowrank", "magnitude"], [0.5], x, repeats=2)
    assert table.method.tolist() == ["dense", "rmt_lowrank", "magnitude"]
    dense = table.iloc[0]
    assert dense.output_rel_error == 0.0 and dense.latency_ratio == 1.0 and dense.macs == count_macs(model, x[:1])
    assert (table.latency_ratio > 0).all()
    low = table.iloc[1]
    pruned = prune(model, "rmt_lowrank", sparsity=0.5, fit=False).model
    assert low.macs == count_macs(pruned, x[:1]) < dense.macs  # factors really save multiply-adds
    assert low.params_stored == count_params(pruned)["stored"]
    with torch.no_grad():
        err = float((pruned(x) - model(x)).norm() / model(x).norm())
    assert low.output_rel_error == pytest.approx(err, rel=1e-5)
    mag = table.iloc[2]
    assert mag.macs == dense.macs and mag.stored_reduction == 0.0  # zeros alone change neither
    assert abs(mag.sparsity - 0.5) < 1e-4 and abs(low.sparsity - 0.5) < 0.02
    assert (table.latency_ms > 0).all() and (table.latency_median_ms >= table.latency_ms).all()


def test_timed_synchronises_the_device_it_is_given(monkeypatch):
    """A model on cuda:1 is timed after waiting for cuda:1; a bare synchronize() waits for the current
    GPU only, so the timing of work queued on another one would stop before the work is done."""
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    cost.timed(lambda: None, "cuda:1")
    assert [torch.device(d) if d is not None else None for d in synced] == [torch.device("cuda:1")] * 2
    synced.clear()
    cost.timed(lambda: None, "cpu")
    assert synced == []
