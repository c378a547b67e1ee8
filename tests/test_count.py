"""Parameter and multiply-add counts against hand counts."""

import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.count import count_macs, count_params, example_input, layer_sparsity, sparsity
from rmtlib.nn.lowrank import LowRankLinear


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10, bias=False))


def test_count_params_by_hand():
    net = _net()
    hand = 784 * 256 + 256 + 256 * 10
    assert count_params(net) == {"dense": hand, "stored": hand, "nonzero": hand}
    with torch.no_grad():
        net[0].weight[:100, :].zero_()
    assert count_params(net)["nonzero"] == hand - 100 * 784
    assert sparsity(net) == pytest.approx(100 * 784 / hand, rel=1e-12)


def test_count_params_low_rank_and_tied():
    net = _net()
    net[0] = LowRankLinear.from_linear(net[0], 8)
    c = count_params(net)
    assert c["dense"] == 784 * 256 + 256 + 256 * 10
    assert c["stored"] == 8 * (784 + 256) + 256 + 256 * 10
    tied = nn.Sequential(nn.Linear(5, 5, bias=False), nn.Linear(5, 5, bias=False))
    tied[1].weight = tied[0].weight
    assert count_params(tied)["stored"] == 25


def test_layer_sparsity_by_hand():
    net = _net()
    with torch.no_grad():
        net[0].weight[:64, :].zero_()  # a quarter of the first layer
        net[2].weight[0, :5].zero_()
    table = layer_sparsity(net).set_index("layer")
    assert list(table.index) == ["0", "2"]
    assert table.loc["0", "nonzero"] == 192 * 784 and table.loc["0", "sparsity"] == pytest.approx(0.25, abs=1e-15)
    assert table.loc["2", "sparsity"] == pytest.approx(5 / 2560, abs=1e-15)
    net[0] = LowRankLinear.from_linear(net[0], 8)  # a factorized layer: its two factors, against m x n
    row = layer_sparsity(net).set_index("layer").loc["0"]
    assert row["dense"] == 784 * 256 and row["stored"] == 8 * (784 + 256)
    assert row["sparsity"] == pytest.approx(1 - row["nonzero"] / (784 * 256), abs=1e-15)


def test_count_macs_linear_and_conv_by_hand():
    batch = 3
    assert count_macs(_net(), torch.zeros(batch, 784)) == batch * (784 * 256 + 256 * 10)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=1, padding=1), nn.Conv2d(8, 4, 2, stride=2))
    # conv1: 8x8 output, each 3*3*3 MACs per output channel; conv2: 4x4 output, 8*2*2 MACs
    hand = batch * (8 * 8 * 8 * 3 * 3 * 3 + 4 * 4 * 4 * 8 * 2 * 2)
    assert count_macs(conv, torch.zeros(batch, 3, 8, 8)) == hand


def test_low_rank_macs_shrink():
    net = _net()
    net[0] = LowRankLinear.from_linear(net[0], 8)
    assert count_macs(net, torch.zeros(1, 784)) == 8 * (784 + 256) + 256 * 10


def test_vit_macs_include_attention():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10)
    x = example_input(model, batch=2)
    assert tuple(x.shape) == (2, 3, 32, 32)
    tokens, d, heads = 17, 192, 3
    linear = 16 * 3 * 64 * d + 2 * tokens * (3 * d * d + d * d + 8 * d * d) + d * 10
    attention = 2 * heads * 2 * tokens * tokens * (d // heads)
    assert count_macs(model, x) == 2 * (linear + attention)


def test_example_input_for_fc():
    assert tuple(example_input(_net()).shape) == (1, 784)


@pytest.mark.parametrize("train", [False, True])
def test_count_macs_torch_attention_by_hand(train: bool):
    """nn.TransformerEncoderLayer counts its projections, MLP and attention products in eval mode too:
    there torch takes a fused fast path that FlopCounterMode alone would count as zero."""
    tokens, d, hidden, batch = 10, 64, 128, 2
    layer = nn.TransformerEncoderLayer(d, 4, hidden, dropout=0.0, batch_first=True).train(train)
    hand = batch * (tokens * (3 * d * d + d * d + 2 * d * hidden) + 2 * tokens * tokens * d)
    assert count_macs(layer, torch.zeros(batch, tokens, d)) == hand
    assert torch.backends.mha.get_fastpath_enabled()  # the global switch is restored


def test_count_params_names_a_meta_parameter():
    """A model on the meta device has shapes but no values: say so, naming the parameter."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(InputError, match=r"parameter 0\.weight is on the meta device"):
        count_params(model)
