"""N:M semi-structured sparsity: exactly N nonzeros in every group of M inputs, counted exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.pruning import prune
from rmtlib.pruning.patterns import nm_mask, parse_pattern


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 5))


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "3:8", "1:2"])
def test_every_group_keeps_exactly_n(method: str, pattern: str):
    n, m = parse_pattern(pattern)
    model = _mlp()
    result = prune(model, method, pattern=pattern, calibration=torch.randn(32, 24))
    pruned = result.model
    for i in (0, 2, 4):
        w = pruned[i].weight.detach()
        groups = (w != 0).reshape(w.shape[0], -1, m).sum(-1)
        assert bool((groups == n).all()), (method, pattern, i)
    dense = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    assert result.summary.reached_sparsity == pytest.approx(1 - nonzero / dense)
    assert list(result.layers["nonzero_after"]) == [48 * 24 * n // m, 16 * 48 * n // m, 5 * 16 * n // m]
    assert result.summary.outputs["pattern"] == pattern and result.summary.target_sparsity is None


def test_magnitude_keeps_the_n_largest_of_each_group():
    model = _mlp()
    pruned = prune(model, "magnitude", pattern="2:4").model
    w = model[0].weight.detach().numpy().reshape(48, 6, 4)
    expected = np.zeros_like(w, dtype=bool)
    top = np.argsort(np.abs(w), axis=-1)[..., 2:]
    np.put_along_axis(expected, top, True, axis=-1)
    assert np.array_equal(pruned[0].weight.detach().numpy().reshape(48, 6, 4) != 0, expected)


def test_nm_mask_breaks_ties_by_position():
    keys = torch.zeros(1, 8)
    assert nm_mask(keys, 1, 4).tolist() == [[True, True, True, False] * 2]


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        (_mlp(), dict(pattern="2-4"), "pattern must be 'N:M'"),
        (_mlp(), dict(pattern="4:4"), "needs 1 <= N < M"),
        (_mlp(), dict(pattern="0:4"), "needs 1 <= N < M"),
        (_mlp(), dict(pattern=24), "pattern must be 'N:M'"),
        (nn.Sequential(nn.Linear(10, 8)), dict(pattern="2:4"), "layer 0 has 10 inputs, not a multiple of M = 4"),
        (_mlp(), dict(pattern="2:4", sparsity=0.5), "give either sparsity= or pattern="),
        (_mlp(), dict(pattern="2:4", allocation="mp"), "a pattern fixes every layer's sparsity"),
        (_mlp(), dict(), "sparsity= is required"),
    ],
)
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_bad_patterns_are_refused_by_name(method, model, kwargs, message):
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(InputError, match=message):
        prune(model, method, calibration=torch.randn(4, model[0].in_features), inplace=True, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_structured_method_takes_no_pattern():
    with pytest.raises(InputError, match="unknown option.*pattern"):
        prune(_mlp(), "svd", sparsity=0.3, pattern="2:4")
