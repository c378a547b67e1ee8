"""Wanda: |W_ij| ||X_j||_2 compared within each output row, exact counts, no weight update."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.pruning import prune


def _layer_model(n_in: int = 16, n_out: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False))


def test_a_feature_scaled_by_100_keeps_its_column():
    model = _layer_model()
    with torch.no_grad():
        model[0].weight[:, 3] *= 0.05  # small weights: magnitude removes them
    x = torch.randn(64, 16)
    x[:, 3] *= 100.0
    by_wanda = prune(model, "wanda", sparsity=0.5, calibration=x).model
    by_magnitude = prune(model, "magnitude", sparsity=0.5).model
    assert bool((by_wanda[0].weight[:, 3] != 0).all())
    assert bool((by_magnitude[0].weight[:, 3] == 0).all())


def test_wanda_keeps_each_rows_best_scores_as_computed_independently():
    model = _layer_model(20, 6)
    x = torch.randn(5, 7, 20)  # batch x tokens x features: every token is a sample
    result = prune(model, "wanda", sparsity=0.5, calibration=x)
    pruned = result.model
    w = model[0].weight.detach().numpy()
    norms = np.sqrt((x.reshape(-1, 20).numpy() ** 2).sum(0))
    score = np.abs(w) * norms[None, :]
    kept = pruned[0].weight.detach().numpy() != 0
    for row in range(6):  # 60 of 120 weights go: 10 per row, the 10 lowest scores of the row
        expected = np.zeros(20, dtype=bool)
        expected[np.argsort(score[row])[10:]] = True
        assert np.array_equal(kept[row], expected)
    assert np.array_equal(pruned[0].weight.detach().numpy()[kept], w[kept])  # no weight update
    assert result.summary.reached_sparsity == 0.5 and result.summary.outputs["allocation"] == "uniform"


def test_wanda_counts_are_exact_on_a_network():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 50), nn.ReLU(), nn.Linear(50, 7))
    dense = sum(p.numel() for p in model.parameters())
    for sparsity in (0.13, 0.5, 0.71):
        pruned = prune(model, "wanda", sparsity=sparsity, calibration=torch.randn(40, 30)).model
        nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
        assert nonzero == int(np.floor((1 - sparsity) * dense + 1e-9))


def test_wanda_refuses_a_global_allocation():
    with pytest.raises(InputError, match="allocation='global' needs scores comparable"):
        prune(_layer_model(), "wanda", sparsity=0.5, calibration=torch.randn(4, 16), allocation="global")
