"""Calibration inputs: normalised once, refused with a clear error before any change; layer inputs laid
out as the columns of each layer's weight matrix."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rmtlib.errors import InputError
from rmtlib.pruning import prune
from rmtlib.pruning.calibration import (
    calibration_inputs,
    draw_calibration,
    forward_order,
    layer_inputs,
    layer_statistics,
)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def test_loader_dataset_and_tensor_give_the_same_inputs():
    model = _mlp()
    x, y = torch.randn(10, 12), torch.arange(10)
    from_tensor = calibration_inputs(x, model)
    from_dataset = calibration_inputs(TensorDataset(x, y), model)
    from_loader = calibration_inputs(DataLoader(TensorDataset(x, y), batch_size=3), model)
    assert torch.equal(from_tensor, x) and torch.equal(from_dataset, x) and torch.equal(from_loader, x)


@pytest.mark.parametrize(
    "calibration, message",
    [
        (torch.zeros(0, 12), "no samples"),
        (TensorDataset(torch.zeros(0, 12)), "no samples"),
        (DataLoader(TensorDataset(torch.zeros(0, 12)), batch_size=2), "no batches"),
        ([["a", "b"]], "not a tensor"),
        (3, "must be a DataLoader, a Dataset or a tensor"),
        ("mnist", "must be a DataLoader, a Dataset or a tensor"),
        (torch.randn(5, 7), "cannot take"),
        (torch.full((5, 12), float("nan")), "NaN"),
    ],
)
def test_bad_calibration_is_refused_before_any_change(calibration, message):
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match=f"calibration.*{message}|{message}"):
        prune(model, "wanda", sparsity=0.5, inplace=True, calibration=calibration)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_data_method_without_calibration_names_the_argument():
    for method in ("wanda", "sparsegpt"):
        with pytest.raises(InputError, match=f"{method}: needs calibration="):
            prune(_mlp(), method, sparsity=0.5)


def test_a_calibration_draw_is_distinct_samples_of_the_dataset_fixed_by_its_seed():
    x = torch.arange(50, dtype=torch.float32)[:, None] * torch.ones(1, 3)  # sample i is (i, i, i)
    data = TensorDataset(x, torch.zeros(50))
    draws = {seed: draw_calibration(data, 20, seed) for seed in (0, 1)}
    picked = draws[0][:, 0].long()
    assert draws[0].shape == (20, 3) and torch.equal(draws[0], x[picked])  # whole samples, inputs only
    assert len(set(picked.tolist())) == 20  # without replacement
    assert torch.equal(draw_calibration(data, 20, 0), draws[0]) and not torch.equal(draws[0], draws[1])
    assert torch.equal(draw_calibration(data, 5, 0), draws[0][:5])  # a smaller count is a prefix of the draw
    assert torch.equal(draw_calibration(x, 50, 0)[:, 0].sort().values, x[:, 0])  # bare tensors: every sample
    for count in (0, 51, 2.5):
        with pytest.raises(InputError, match=r"count must be in \[1, 50\]"):
            draw_calibration(data, count, 0)


def test_calibration_forward_keeps_batchnorm_statistics():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).train()
    stats = model[1].running_mean.clone()
    calibration_inputs(torch.randn(4, 6) + 5, model)
    assert torch.equal(model[1].running_mean, stats) and model.training and model[1].training


@pytest.mark.parametrize(
    "conv, shape",
    [
        (nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1), (2, 3, 9, 9)),
        (nn.Conv2d(2, 4, (3, 2), padding="same", padding_mode="reflect"), (2, 2, 7, 6)),
        (nn.Conv1d(3, 4, 3, padding=2, dilation=2), (2, 3, 11)),
    ],
)
def test_conv_inputs_unfold_to_the_columns_of_the_weight_matrix(conv, shape):
    """rows @ W^T reproduces the convolution: the patches are the matrix's columns, in its order."""
    torch.manual_seed(1)
    x = torch.randn(*shape)
    rows = layer_inputs(conv, [conv], x)[id(conv)]
    out = conv(x)
    out_rows = out.reshape(out.shape[0], out.shape[1], -1).transpose(1, 2).reshape(-1, out.shape[1])
    w = conv.weight.detach().reshape(conv.out_channels, -1)
    assert torch.allclose(rows @ w.T + conv.bias.detach(), out_rows, atol=1e-5)


def test_linear_inputs_take_every_token_and_statistics_match():
    lin = nn.Linear(5, 3)
    model = nn.Sequential(nn.Identity(), lin)
    x = torch.randn(7, 4, 5)  # batch x tokens x features
    stats = layer_statistics(model, [lin], x, gram=True, batch=3)[id(lin)]
    rows = x.reshape(-1, 5).double()
    assert stats.count == 28
    assert torch.allclose(stats.sq_norms, (rows**2).sum(0)) and torch.allclose(stats.gram, rows.T @ rows)


def test_forward_order_follows_the_calls_not_the_registration():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.b, self.a = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x))

    m = Backwards()
    order, calls = forward_order(m, [m.b, m.a], torch.randn(2, 4))
    assert order == [m.a, m.b] and calls == {id(m.a): 1, id(m.b): 1}


def test_a_stopped_forward_gives_the_same_statistics():
    """The forward stops after the layer's last call; a layer called twice accumulates both calls."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(self.a(x)))

    m = Twice()
    x = torch.randn(10, 4)
    _, calls = forward_order(m, [m.a, m.b], x)
    assert calls[id(m.a)] == 2
    full = layer_statistics(m, [m.a], x, gram=True, batch=3)[id(m.a)]
    reached_b = []
    m.b.register_forward_hook(lambda *args: reached_b.append(1))
    stopped = layer_statistics(m, [m.a], x, gram=True, batch=3, stop_after=2)[id(m.a)]
    assert full.count == stopped.count == 20 and torch.allclose(full.gram, stopped.gram)
    assert not reached_b


def test_grouped_convolution_is_refused_by_name():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 4, 5, 5))
    with pytest.raises(InputError, match="layer 0: a grouped convolution"):
        prune(model, "wanda", sparsity=0.3, calibration=torch.randn(3, 4, 5, 5))


def test_split_qkv_units_share_their_layer_inputs():
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=8, depth=1, num_classes=3, embed_dim=48)
    x = torch.randn(4, 3, 16, 16)
    result = prune(vit, "wanda", sparsity=0.1, split_qkv=True, calibration=x, include="blocks.0.attn.qkv")
    split = result.model
    fused = prune(vit, "wanda", sparsity=0.1, calibration=x, include="blocks.0.attn.qkv").model
    assert list(result.layers["layer"]) == ["blocks.0.attn.qkv.q", "blocks.0.attn.qkv.k", "blocks.0.attn.qkv.v"]
    # q, k and v see the fused layer's inputs: a row that loses as many weights either way loses the same ones
    a, b = split.blocks[0].attn.qkv.weight != 0, fused.blocks[0].attn.qkv.weight != 0
    same_count = a.sum(1) == b.sum(1)
    assert int(same_count.sum()) > len(same_count) // 2
    assert torch.equal(a[same_count], b[same_count])
    assert not torch.equal(a, torch.ones_like(a))
