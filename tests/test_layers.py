import timm
import torch
from torch import nn

from rmtlib.spectral.layers import layer_matrices, prunable_layers, weight_matrix


def _tiny_vit() -> nn.Module:
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=10
    )


def test_vit_layers_are_the_papers_list():
    names = [name for name, _ in prunable_layers(_tiny_vit())]
    assert names == [
        "patch_embed.proj",
        "blocks.0.attn.qkv",
        "blocks.0.attn.proj",
        "blocks.0.mlp.fc1",
        "blocks.0.mlp.fc2",
        "blocks.1.attn.qkv",
        "blocks.1.attn.proj",
        "blocks.1.mlp.fc1",
        "blocks.1.mlp.fc2",
        "head",
    ]


def test_include_and_exclude_patterns():
    model = _tiny_vit()
    assert [n for n, _ in prunable_layers(model, include=["blocks.*.mlp.*"], exclude=["*.fc2"])] == [
        "blocks.0.mlp.fc1",
        "blocks.1.mlp.fc1",
    ]


def test_conv_kernel_is_unfolded_and_is_a_view():
    conv = nn.Conv2d(3, 8, kernel_size=3)
    mat = weight_matrix(conv)
    assert mat.shape == (8, 27)
    assert torch.equal(mat[2], conv.weight[2].flatten())
    assert mat.data_ptr() == conv.weight.data_ptr()


def test_split_qkv_gives_timms_row_blocks():
    model = _tiny_vit()
    parts = [lm for lm in layer_matrices(model, split_qkv=True) if lm.name.startswith("blocks.0.attn.qkv")]
    assert [p.name for p in parts] == ["blocks.0.attn.qkv.q", "blocks.0.attn.qkv.k", "blocks.0.attn.qkv.v"]
    qkv = model.blocks[0].attn.qkv.weight
    d = qkv.shape[1]
    assert torch.equal(torch.cat([p.matrix for p in parts]), qkv)
    assert all(p.matrix.shape == (d, d) for p in parts)


def test_lowrank_layer_is_one_matrix_not_three():
    from rmtlib.nn.lowrank import LowRankLinear

    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20))
    net[0] = LowRankLinear.from_linear(net[0], 5)
    listed = prunable_layers(net)
    assert [name for name, _ in listed] == ["0", "2"]
    assert weight_matrix(listed[0][1]).shape == (30, 40)


def test_factor_parts_are_selected_by_their_layers_name():
    """Element-wise pruning sees a low-rank layer's factors; `exclude=["0"]` must spare them too."""
    from rmtlib.nn.lowrank import LowRankLinear

    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 20))
    net[0] = LowRankLinear.from_linear(net[0], 5)
    parts = [name for name, _ in prunable_layers(net, factors="parts")]
    assert parts == ["0.down", "0.up", "2"]
    assert [n for n, _ in prunable_layers(net, exclude=["0"], factors="parts")] == ["2"]
    assert [n for n, _ in prunable_layers(net, include=["0"], factors="parts")] == ["0.down", "0.up"]
    assert [n for n, _ in prunable_layers(net, include=["0.up"], factors="parts")] == ["0.up"]
    assert [n for n, _ in prunable_layers(net, exclude=["0"])] == ["2"]  # whole layers as before


def test_any_factored_layer_is_one_matrix_for_analysis_and_its_parts_for_elementwise_pruning():
    """The base class, not a duck-typed attribute, decides: a user's own FactoredLayer counts as one matrix."""
    import torch
    from torch import nn

    from rmtlib.nn.lowrank import LowRankLinear
    from rmtlib.spectral.layers import FactoredLayer, prunable_layers, weight_matrix

    class ScaledLinear(FactoredLayer):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(6, 4, bias=False)
            self.scale = nn.Parameter(torch.full((4, 1), 2.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale.T * self.inner(x)

        def rmt_matrix(self) -> torch.Tensor:
            return (self.scale * self.inner.weight).detach()

    net = nn.Sequential(ScaledLinear(), nn.ReLU(), LowRankLinear(4, 3, rank=2))
    assert issubclass(LowRankLinear, FactoredLayer)
    assert [name for name, _ in prunable_layers(net)] == ["0", "2"]
    assert [name for name, _ in prunable_layers(net, factors="parts")] == ["0.inner", "2.down", "2.up"]
    torch.testing.assert_close(weight_matrix(net[0]), 2 * net[0].inner.weight.detach())
