"""Penalties (values and gradients), the weight mask, and MP-scheduled splitting."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib import FitConfig
from rmtlib.errors import InputError
from rmtlib.nn.lowrank import LowRankLinear
from rmtlib.nn.models import fc_net
from rmtlib.spectral.fit import fit_mp
from rmtlib.train.regularize import (
    L1,
    L2,
    GroupLasso,
    MPSplitScheduler,
    WeightMask,
    bulk_fraction,
    layer_weights,
    mp_split_layer,
    mp_split_rank,
)


def _net(seed=0):
    torch.manual_seed(seed)
    return fc_net([6, 5, 4, 3])


def _weights(net):
    return [m.weight for m in net if isinstance(m, nn.Linear)]


def test_penalty_values_by_hand():
    net = _net()
    ws = _weights(net)
    l1 = sum(w.abs().sum() for w in ws)
    l2 = sum((w**2).sum() for w in ws)
    gl_rows = sum(torch.sqrt((w**2).sum(1)).sum() for w in ws)
    gl_cols = sum(torch.sqrt((w**2).sum(0)).sum() for w in ws)
    torch.testing.assert_close(L1(0.3)(net), 0.3 * l1)
    torch.testing.assert_close(L2(0.2)(net), 0.2 * l2)
    torch.testing.assert_close(GroupLasso(0.1)(net), 0.1 * gl_rows)
    torch.testing.assert_close(GroupLasso(0.1, groups="cols")(net), 0.1 * gl_cols)
    combo = L1(0.3) + L2(0.2) + GroupLasso(0.1)
    torch.testing.assert_close(combo(net), 0.3 * l1 + 0.2 * l2 + 0.1 * gl_rows)
    assert len(combo.parts) == 3
    # include patterns and per-layer scales
    torch.testing.assert_close(L1(1.0, include=["1"])(net), ws[0].abs().sum())
    torch.testing.assert_close(L2(1.0, scales={"3": 0.0, "5": 0.0})(net), (ws[0] ** 2).sum())
    with pytest.raises(InputError):
        L1(-1.0)


def test_penalty_gradients_are_analytic():
    net = _net()
    with torch.no_grad():
        net[1].weight[0] = 0.0  # an all-zero row: group-lasso subgradient 0, L1 sign 0
    (L1(0.3) + L2(0.2) + GroupLasso(0.1))(net).backward()
    for w in _weights(net):
        d = w.detach()
        norms = d.norm(dim=1, keepdim=True)
        gl = torch.where(norms > 0, d / norms.clamp_min(1e-30), torch.zeros_like(d))
        expected = 0.3 * torch.sign(d) + 0.4 * d + 0.1 * gl
        torch.testing.assert_close(w.grad, expected)
    assert torch.all(net[1].weight.grad[0] == 0) and torch.isfinite(net[1].weight.grad).all()


def test_penalty_covers_lowrank_factors():
    net = _net()
    net[1] = LowRankLinear.from_linear(net[1], 2)
    expected = (
        net[1].up.weight.abs().sum()
        + net[1].down.weight.abs().sum()
        + net[3].weight.abs().sum()
        + net[5].weight.abs().sum()
    )
    torch.testing.assert_close(L1(1.0)(net), expected)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_mask_keeps_exact_zeros_under_momentum_and_weight_decay(opt):
    net = _net()
    # give the pruned weights a nonzero history first: momentum buffers would move them
    optimizer = (
        torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
        if opt == "sgd"
        else torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.01)
    )
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        net[1].weight[net[1].weight.abs() < net[1].weight.abs().median()] = 0.0
    mask = WeightMask.from_zeros(net)
    pruned = ~mask.masks["1.weight"]
    assert pruned.sum() > 0 and mask.sparsity() > 0
    for _ in range(20):
        optimizer.zero_grad()
        (nn.functional.cross_entropy(net(x), y) + L1(1e-3)(net)).backward()
        mask.zero_grads(net)
        optimizer.step()
        mask.apply(net)
        assert torch.all(net[1].weight[pruned] == 0.0)
    assert torch.all(net[1].weight[~pruned] != 0)
    with pytest.raises(InputError, match="not in the model"):
        WeightMask({"nope.weight": torch.ones(1)}).apply(net)


def test_bulk_fraction():
    assert bulk_fraction(0, 300) == 1.0 and bulk_fraction(150, 300) == 0.5 and bulk_fraction(400, 300) == 0.0
    with pytest.raises(InputError):
        bulk_fraction(1, 0)


def _spiked(m=200, n=120, spikes=(30.0, 25.0, 20.0), seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((m, n)) / np.sqrt(n)
    u, _ = np.linalg.qr(rng.standard_normal((m, len(spikes))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(spikes))))
    return torch.tensor(noise + u @ np.diag(spikes) @ v.T, dtype=torch.float32)


def test_split_at_f0_keeps_exactly_the_spikes():
    w = _spiked()
    lin = nn.Linear(120, 200)
    with torch.no_grad():
        lin.weight.copy_(w)
    fit = fit_mp(w)
    k = int((fit.singular_values > fit.sv_edge).sum())
    assert k == 3
    new, decision = mp_split_layer(lin, 0.0, "layer")
    assert isinstance(new, LowRankLinear) and decision.rank == k and decision.n_spikes == k
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    truncated = (u[:, :k] * s[:k]) @ vh[:k]
    torch.testing.assert_close(new.rmt_matrix().double(), truncated, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new.up.bias, lin.bias)


def test_split_keeps_fraction_of_bulk():
    w = _spiked()
    rank, fit = mp_split_rank(w, 0.5)
    spikes = int((fit.singular_values > fit.sv_edge).sum())
    assert rank == spikes + math.floor(0.5 * (120 - spikes))


def test_scheduler_on_fc_net_splits_hidden_layers_only():
    torch.manual_seed(0)
    net = fc_net([100, 200, 150, 10])
    with torch.no_grad():
        net[1].weight.copy_(_spiked(200, 100, seed=1))
        net[3].weight.copy_(_spiked(150, 200, seed=2))
    sched = MPSplitScheduler(every=2, T=4)
    assert sched(1, net, {}) is None  # not a split epoch
    out = sched(4, net, {})  # f = 0: only spikes remain
    assert set(out["mp_ranks"]) == {"1", "3"} and out["mp_ranks"] == {"1": 3, "3": 3}
    assert isinstance(net[1], LowRankLinear) and isinstance(net[3], LowRankLinear)
    assert isinstance(net[5], nn.Linear) and not isinstance(net[5], LowRankLinear)
    assert net(torch.randn(2, 100)).shape == (2, 10)
    again = sched(6, net, {})  # a rank-3 product has no bulk to fit: left as it is
    assert again["mp_ranks"] == {"1": 3, "3": 3} and net[1].rank == 3


def test_scheduler_leaves_low_rank_convs_alone_and_fits_with_the_fc_setting():
    """A LowRankConv2d has an rmt_matrix too, but rebuilding it as a Linear would break the forward pass;
    the fits use the paper's FC setting beta = 0.1 unless told otherwise."""
    from rmtlib.nn.lowrank import LowRankConv2d

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 6 * 6, 120), nn.ReLU(), nn.Linear(120, 10)
    )
    net[0] = LowRankConv2d.from_conv(net[0], 8)
    sched = MPSplitScheduler(every=1, T=4, skip_last=False)
    assert [name for name, _ in sched.layers(net)] == ["3", "5"]
    sched.split(net, 0.5)
    assert isinstance(net[0], LowRankConv2d)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert sched.fit_config == FitConfig(alpha=0.25, beta=0.1)
    assert MPSplitScheduler(fit_config=FitConfig(beta=0.8)).fit_config.beta == 0.8


def test_tied_weight_is_penalized_once_and_can_be_masked():
    """A weight shared by two layers is one parameter: the penalty and its gradient count it once (as
    weight decay does), and a mask built from the model's zeros names it as the model does."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3))
    net[2].weight = net[0].weight
    distinct = {id(m.weight): m.weight for m in net if isinstance(m, nn.Linear)}.values()
    expected = sum(0.3 * w.abs().sum() + 0.2 * (w**2).sum() for w in distinct)
    value = (L1(0.3) + L2(0.2))(net)
    torch.testing.assert_close(value, expected)
    value.backward()
    w = net[0].weight.detach()
    torch.testing.assert_close(net[0].weight.grad, 0.3 * torch.sign(w) + 0.4 * w)
    with torch.no_grad():
        net[0].weight[0] = 0.0
    mask = WeightMask.from_zeros(net)
    assert set(mask.masks) == {name for name, p in net.named_parameters() if name.endswith("weight")}
    with torch.no_grad():
        net[2].weight.fill_(1.0)
    mask.apply(net)
    assert torch.all(net[2].weight[0] == 0) and torch.all(net[2].weight[1:] == 1)


def test_a_bad_mask_entry_leaves_the_model_untouched():
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    mask = WeightMask({"1.weight": torch.zeros(5, 6, dtype=torch.bool), "nope.weight": torch.ones(1)})
    with pytest.raises(InputError, match="not in the model"):
        mask.apply(net)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_split_rank_is_the_exact_floor_and_at_least_one():
    """rank = spikes + floor((1 - e/T) bulk) in exact arithmetic (no round-off loss when it is an integer),
    and a pure-noise layer with nothing kept keeps its top component instead of crashing at rank 0."""
    w = _spiked()
    e, T = 3, 13  # (1 - 3/13) * 117 = 90 exactly; in floating point 89.99999999999999
    rank, fit = mp_split_rank(w, bulk_fraction(e, T))
    spikes = fit.n_spikes
    assert rank == spikes + (T - e) * (120 - spikes) // T
    torch.manual_seed(0)
    lin = nn.Linear(100, 200)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.1)
    fc = FitConfig(alpha=0.25, beta=0.1)
    assert fit_mp(lin.weight, fit_config=fc).n_spikes == 0  # no spike: f = 0 keeps nothing
    new, decision = mp_split_layer(lin, 0.0, "noise", fit_config=fc)
    assert decision.rank == 1 and isinstance(new, LowRankLinear) and new.rank == 1
    u, s, vh = torch.linalg.svd(lin.weight.detach().double(), full_matrices=False)
    torch.testing.assert_close(new.rmt_matrix().double(), s[0] * torch.outer(u[:, 0], vh[0]), rtol=1e-4, atol=1e-5)


def test_bad_fraction_and_horizon_are_refused_not_read_as_unfit():
    lin = nn.Linear(100, 200)
    for fraction in (1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match="bulk fraction"):
            mp_split_layer(lin, fraction)
    with pytest.raises(InputError):
        bulk_fraction(1, float("nan"))
    with pytest.raises(InputError):
        MPSplitScheduler(T=float("nan"))


def test_skip_last_skips_the_output_layer_not_the_last_selected_one():
    torch.manual_seed(0)
    net = fc_net([100, 200, 150, 10])
    assert [n for n, _ in MPSplitScheduler(include=["1", "3"]).layers(net)] == ["1", "3"]
    assert [n for n, _ in MPSplitScheduler(exclude=["5"]).layers(net)] == ["1", "3"]
    assert [n for n, _ in MPSplitScheduler().layers(net)] == ["1", "3"]
    assert [n for n, _ in MPSplitScheduler(include=["5"]).layers(net)] == []
    assert [n for n, _ in MPSplitScheduler(include=["5"], skip_last=False).layers(net)] == ["5"]


def test_scales_naming_no_layer_are_refused():
    """A misspelt layer in ``scales`` used to leave that layer at scale 1 silently."""
    net = _net()
    layer = next(name for name, _, _ in layer_weights(net))
    torch.testing.assert_close(
        L2(1.0, scales={layer: 3.0})(net), L2(1.0)(net) + 2.0 * (dict(net.named_modules())[layer].weight ** 2).sum()
    )
    with pytest.raises(InputError, match="name no prunable layer of the model: nope"):
        L2(1.0, scales={layer: 3.0, "nope": 2.0})(net)


@pytest.mark.parametrize("centring", ["ma", "johnstone"])
def test_mp_split_rank_and_the_scheduler_honour_the_edge_centring(edge_decides, centring):
    """The split used to fit with alpha and beta only: a spike that only one centring sees changes the rank."""
    w, paper, other = edge_decides(centring)
    ranks = {}
    for config in (paper, other):
        rank, fit = mp_split_rank(w, 0.0, fit_config=config)
        assert fit.fit_config == config and rank == fit_mp(w.float(), fit_config=config).n_spikes
        ranks[config.edge_centring] = rank
        net = nn.Sequential(nn.Linear(120, 300), nn.ReLU(), nn.Linear(300, 4))
        with torch.no_grad():
            net[0].weight.copy_(w)
        MPSplitScheduler(every=1, T=1.0, fit_config=config).split(net, 0.0)
        assert net[0].rank == rank
    assert sorted(ranks.values()) == [1, 2]
    with pytest.raises(InputError, match="fit_config must be a FitConfig"):
        MPSplitScheduler(fit_config={"beta": 0.1})
