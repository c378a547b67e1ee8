"""LowRankLinear / LowRankConv2d: exact at full rank, optimal truncation, factorize only when it pays."""

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.lowrank import (
    LowRankConv2d,
    LowRankLinear,
    apply_lowrank_structure,
    factorize,
    factorize_linear,
    low_rank_factors,
    lowrank_structure,
    max_useful_rank,
    replace_module,
    saves_params,
)


def test_full_rank_reproduces_linear_outputs():
    lin = nn.Linear(48, 32)
    x = torch.randn(16, 48)
    low = LowRankLinear.from_linear(lin, 32)
    assert low.down.weight.shape == (32, 48) and low.up.weight.shape == (32, 32)
    torch.testing.assert_close(low(x), lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(low.rmt_matrix(), lin.weight.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=2, padding=1),
        dict(padding="same"),
        dict(dilation=2, padding=2, padding_mode="reflect"),
        dict(stride=3, padding=1, padding_mode="circular", bias=False),
        dict(padding="same", padding_mode="reflect"),  # can_factorize accepts these, so factorize must too
        dict(padding="same", dilation=2, padding_mode="circular"),
    ],
)
def test_full_rank_reproduces_conv_outputs(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, **kwargs)
    x = torch.randn(2, 3, 9, 9)
    low = LowRankConv2d.from_conv(conv, 8)
    torch.testing.assert_close(low(x), conv(x), rtol=1e-5, atol=1e-5)


def test_low_rank_conv_counts_by_hand():
    """Rank 2 of an 8 x (3*3*3) kernel: factors 2*27 + 8*2 weights, plus 8 biases; MACs per output pixel
    2*27 + 8*2 (a 9x9 input, 3x3 kernel, padding 1, stride 2: 5x5 outputs)."""
    from rmtlib.nn.count import count_macs, count_params

    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    net = nn.Sequential(LowRankConv2d.from_conv(conv, 2))
    counts = count_params(net)
    assert counts["dense"] == 8 * 27 + 8 and counts["stored"] == 2 * 27 + 8 * 2 + 8
    assert count_macs(net, torch.randn(1, 3, 9, 9)) == 25 * (2 * 27 + 8 * 2)


def test_truncation_is_the_best_rank_r_approximation():
    lin = nn.Linear(40, 30, bias=False)
    w = lin.weight.detach().double().numpy()
    r = 5
    low = LowRankLinear.from_linear(lin, r)
    err = np.linalg.norm(low.rmt_matrix().double().numpy() - w)
    s = np.linalg.svd(w, compute_uv=False)
    # Eckart-Young: the Frobenius error of the best rank-r approximation is the tail of the spectrum
    assert err == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-5)
    assert np.linalg.matrix_rank(low.rmt_matrix().numpy(), tol=1e-4) == r


def test_factors_are_balanced_and_float64():
    w = torch.randn(20, 10)
    up, down = low_rank_factors(w, 4)
    assert up.dtype == torch.float64 and up.shape == (20, 4) and down.shape == (4, 10)
    torch.testing.assert_close(up.norm(dim=0), down.norm(dim=1))


def test_factorize_linear_only_when_it_saves():
    m, n = 30, 20  # threshold m n / (m + n) = 12
    assert max_useful_rank(m, n) == 11
    assert saves_params(m, n, 11) and not saves_params(m, n, 12)
    lin = nn.Linear(n, m)
    small = factorize_linear(lin, 11)
    big = factorize_linear(lin, 12)
    assert isinstance(small, LowRankLinear) and small.rank == 11
    assert type(big) is nn.Linear and big.weight.shape == (m, n)
    assert np.linalg.matrix_rank(big.weight.detach().numpy(), tol=1e-4) == 12
    torch.testing.assert_close(big.bias, lin.bias)


def test_dtype_and_device_are_kept():
    lin = nn.Linear(16, 16).to(torch.bfloat16)
    low = factorize(lin, 4)
    assert low.up.weight.dtype == torch.bfloat16 and low.down.weight.dtype == torch.bfloat16


def test_replace_module_and_structure_roundtrip():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 5)))
    replace_module(model, "2.0", LowRankLinear.from_linear(model[2][0], 3))
    assert isinstance(model[2][0], LowRankLinear)
    structure = lowrank_structure(model)
    assert structure == {"2.0": {"type": "LowRankLinear", "rank": 3}}
    fresh = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 5)))
    apply_lowrank_structure(fresh, structure)
    assert isinstance(fresh[2][0], LowRankLinear) and fresh[2][0].rank == 3
    with pytest.raises(InputError, match="nope"):
        replace_module(model, "nope", nn.Identity())


def test_bad_rank_is_refused():
    with pytest.raises(InputError, match="rank"):
        low_rank_factors(torch.randn(4, 3), 4)
    with pytest.raises(InputError, match="NaN"):
        low_rank_factors(torch.full((4, 3), float("nan")), 1)


@pytest.mark.parametrize("rank", [2.5, 0, "two", None])
def test_a_rank_that_is_not_a_whole_number_is_refused_not_truncated(rank):
    """factorize_linear used to truncate 2.5 to 2, factorize to fail inside torch with a TypeError."""
    lin = nn.Linear(8, 6)
    for build in (factorize, factorize_linear):
        with pytest.raises(InputError, match="rank must be"):
            build(lin, rank)


def test_a_whole_number_rank_of_any_numeric_type_is_accepted():
    """A rank read from a table (4.0, numpy.int64) means the same layer as the int 4."""
    import numpy as np

    torch.manual_seed(0)
    lin, x = nn.Linear(8, 6), torch.randn(3, 8)
    expected = factorize(lin, 4)(x)
    for rank in (4.0, np.int64(4), torch.tensor(4)):
        assert torch.equal(factorize(lin, rank)(x), expected)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30)])
def test_gram_and_svd_factorizations_agree(shape):
    w = torch.randn(*shape, dtype=torch.float64)
    for r in (3, 30):
        up_g, down_g = low_rank_factors(w, r, method="gram")
        up_s, down_s = low_rank_factors(w, r, method="svd")
        torch.testing.assert_close(up_g @ down_g, up_s @ down_s, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(up_g.norm(dim=0), down_g.norm(dim=1))
    torch.testing.assert_close(up_g @ down_g, w, rtol=1e-10, atol=1e-10)  # full rank: exact


class _PadInForward(nn.Conv2d):
    """A Conv2d subclass that pads in its forward (like timm's Conv2dSame): its weights alone do not
    describe what it computes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))


def test_factorize_accepts_exactly_what_can_factorize_accepts():
    """factorize refuses (InputError) every module can_factorize refuses, instead of building a layer
    that is not equivalent: here a full-rank factorization of the padding subclass would change the
    output shape, and the out_proj of a MultiheadAttention is read as raw weights by its parent."""
    from rmtlib.nn.lowrank import can_factorize

    pad = _PadInForward(3, 4, 3)
    x = torch.randn(1, 3, 6, 6)
    assert LowRankConv2d.from_conv(pad, 4)(x).shape != pad(x).shape  # why it must be refused
    modules = [
        nn.Linear(6, 5),
        nn.Conv2d(3, 4, 3),
        nn.Conv2d(3, 4, 4, padding="same", padding_mode="reflect"),
        LowRankLinear(6, 5, 2),
        LowRankConv2d(3, 4, 3, 2),
        pad,
        nn.Conv2d(4, 4, 3, groups=2),
        nn.MultiheadAttention(8, 2).out_proj,
        nn.ReLU(),
    ]
    for module in modules:
        if can_factorize(module):
            assert factorize(module, 1).rank == 1
        else:
            with pytest.raises(InputError, match="cannot factorize"):
                factorize(module, 1)


def test_factorize_on_meta_gives_the_same_structure():
    """A meta model (shapes only) factorizes to meta layers shaped like the real factorization, so the
    structure and MACs of a large factorized model can be known without its weights."""
    from rmtlib.nn.count import count_macs

    real = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    with torch.device("meta"):
        meta = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    for net in (real, meta):
        net[0], net[2] = factorize(net[0], 2), factorize(net[2], 3)
    assert all(p.is_meta for p in meta.parameters())
    assert [(n, p.shape) for n, p in meta.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
    x = torch.randn(1, 3, 9, 9)
    assert count_macs(meta, x.to("meta")) == count_macs(real, x)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "LowRankLinear", "rank": 3},  # a Conv2d cannot hold a LowRankLinear
        {"type": "LowRankConv2d"},  # no rank
    ],
)
def test_bad_structure_leaves_model_unchanged(bad):
    """A structure whose second entry is bad raises InputError before the good first one is applied."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Conv2d(3, 4, 3))
    before = list(model)
    with pytest.raises(InputError, match="layer 1"):
        apply_lowrank_structure(model, {"0": {"type": "LowRankLinear", "rank": 2}, "1": bad})
    assert list(model) == before  # the very same module objects


@pytest.mark.parametrize("layer", [nn.Linear(10, 6), nn.Conv2d(2, 6, 2)])
def test_given_factors_must_match_the_rank(layer):
    """Factors of another rank are refused: a rank-1 pair given for rank 4 used to be broadcast into
    all four columns, a layer computing 4 times the rank-1 truncation."""
    matrix = layer.weight.detach().reshape(6, -1)
    with pytest.raises(InputError, match="rank-4"):
        factorize(layer, 4, factors=low_rank_factors(matrix, 1))
    with pytest.raises(InputError, match="rank-2"):
        factorize(layer, 2, factors=low_rank_factors(matrix.T.contiguous(), 2))
    up, down = low_rank_factors(matrix, 4)
    torch.testing.assert_close(factorize(layer, 4, factors=(up, down)).rmt_matrix(), (up @ down).float())


def test_factorize_linear_never_grows_a_low_rank_layer():
    """Asked for more than its rank, a low-rank layer stays the same matrix at its own rank; it used to
    become a dense Linear holding that same rank-5 matrix in 420 parameters instead of 220."""
    from rmtlib.nn.count import count_params

    low = LowRankLinear.from_linear(nn.Linear(20, 20), 5)
    out = factorize_linear(low, 12)
    assert count_params(out)["stored"] <= count_params(low)["stored"] == 5 * 40 + 20
    torch.testing.assert_close(out.rmt_matrix(), low.rmt_matrix(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.bias, low.bias)
