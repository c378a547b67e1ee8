"""rmtlib.prune: every method meets the budget; the RMT methods keep signal and prune noise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib import FitConfig
from rmtlib.errors import InputError
from rmtlib.experiments.spiked import bbp_threshold, spiked_matrix
from rmtlib.nn.count import count_macs, count_params
from rmtlib.nn.lowrank import LowRankLinear
from rmtlib.pruning import PruneResult, prune
from rmtlib.pruning.common import Unit, cut_smallest_keys, smallest_mask, split_count
from rmtlib.pruning.rmt import sparsify_singular_vectors

ALL = ["rmt", "rmt_oneshot", "rmt_lowrank", "magnitude", "svd", "random"]
STRUCTURED = {"rmt_lowrank", "svd"}
FAST = {
    "regularization": "light",
    "reg_steps": 2,
}  # keep the rmt cycles' data-free step short (tests/test_rmt.py: the default)


def _opts(method: str) -> dict:
    return dict(FAST) if method == "rmt" else {}


def _fc() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 10))


def _vit() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10)


def _check_reached(model: nn.Module, result: PruneResult, target: float, method: str) -> None:
    """The summary's numbers are the counts of the two models, counted here independently."""
    before, after = count_params(model), count_params(result.model)
    dense = before["dense"]
    reached = 1.0 - after["nonzero"] / dense
    s = result.summary
    assert s.reached_sparsity == pytest.approx(reached, abs=1e-15)
    assert (s.params_dense, s.nonzero_before) == (dense, before["nonzero"])
    assert (s.stored_after, s.nonzero_after) == (after["stored"], after["nonzero"])
    assert s.target_sparsity == target and s.method == method
    assert reached >= target - 1e-12
    # element-wise methods hit the count exactly; rank-based ones to within a few rank steps
    assert reached - target < (0.012 if method in STRUCTURED else 1e-4)


@pytest.mark.parametrize("method", ALL)
def test_fc_net_reaches_target(method: str):
    model = _fc()
    result = prune(model, method, sparsity=0.5, **_opts(method))
    pruned = result.model
    _check_reached(model, result, 0.5, method)
    assert list(result.layers["layer"]) == ["0", "2", "4"]
    assert (result.layers["nonzero_after"] <= result.layers["nonzero_before"]).all()
    assert pruned(torch.randn(3, 64)).shape == (3, 10)


@pytest.mark.parametrize("method", ALL)
def test_tiny_vit_reaches_target(method: str):
    model = _vit()
    result = prune(model, method, sparsity=0.4, **_opts(method))
    pruned = result.model
    _check_reached(model, result, 0.4, method)
    assert "blocks.1.mlp.fc2" in set(result.layers["layer"]) and "patch_embed.proj" in set(result.layers["layer"])
    x = torch.randn(2, 3, 32, 32)
    assert torch.isfinite(pruned(x)).all()
    if method in STRUCTURED:  # a real reduction of stored parameters and multiply-adds
        assert count_params(pruned)["stored"] < 0.61 * count_params(model)["dense"]
        assert count_macs(pruned, x) < count_macs(model, x)


def test_magnitude_removes_exactly_the_smallest():
    model = _fc()
    weights = [model[i].weight.detach().numpy().copy() for i in (0, 2, 4)]
    pruned = prune(model, "magnitude", sparsity=0.3).model
    total_zeroed = 0
    for i, w in zip((0, 2, 4), weights):
        after = pruned[i].weight.detach().numpy()
        k = int(np.sum(after == 0))
        total_zeroed += k
        expected = np.zeros(w.size, dtype=bool)
        expected[np.argsort(np.abs(w).ravel(), kind="stable")[:k]] = True
        assert np.array_equal(after.ravel() == 0, expected)
        assert np.array_equal(after[after != 0], w[after != 0])  # kept weights unchanged
    # layer-wise: the same fraction of every layer
    fractions = [np.mean(pruned[i].weight.detach().numpy() == 0) for i in (0, 2, 4)]
    assert max(fractions) - min(fractions) < 1e-3
    # global: one magnitude threshold across layers
    g = prune(model, "magnitude", sparsity=0.3, scope="global").model
    removed = np.concatenate([w[g[i].weight.detach().numpy() == 0] for i, w in zip((0, 2, 4), weights)])
    kept = np.concatenate([w[g[i].weight.detach().numpy() != 0] for i, w in zip((0, 2, 4), weights)])
    assert np.abs(removed).max() <= np.abs(kept).min()
    assert removed.size == total_zeroed


def _planted(m=200, n=100, strengths=(5.0, 6.0, 8.0), seed=1):
    rng = np.random.default_rng(seed)
    sigma = 0.05
    thr = bbp_threshold(m, n, sigma)
    w = spiked_matrix(m, n, [s * thr for s in strengths], sigma=sigma, rng=np.random.default_rng(seed))
    # recover the planted directions: same rng stream as spiked_matrix
    rng = np.random.default_rng(seed)
    rng.standard_normal((m, n))
    u, _ = np.linalg.qr(rng.standard_normal((m, len(strengths))))
    layer = nn.Linear(n, m)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    return nn.Sequential(layer), u


def _alignment(matrix: np.ndarray, u: np.ndarray) -> float:
    """Cosine of the largest principal angle between the top-r left singular subspace and u."""
    left = np.linalg.svd(matrix, full_matrices=False)[0][:, : u.shape[1]]
    return float(np.linalg.svd(left.T @ u, compute_uv=False).min())


@pytest.mark.parametrize("method", ["rmt", "rmt_oneshot", "rmt_lowrank"])
def test_rmt_keeps_the_planted_spikes(method: str):
    model, u = _planted()
    before = _alignment(model[0].weight.detach().numpy(), u)  # ~0.97: noise tilts the spikes a little
    result = prune(model, method, sparsity=0.6, **_opts(method))
    pruned = result.model
    assert result.layers.loc[0, "n_spikes"] == 3
    w = (pruned[0].rmt_matrix() if hasattr(pruned[0], "rmt_matrix") else pruned[0].weight).detach().numpy()
    after = _alignment(w, u)
    assert after > before - (1e-3 if method == "rmt_lowrank" else 0.02)
    rand = prune(model, "random", sparsity=0.6).model
    assert after > _alignment(rand[0].weight.detach().numpy(), u) + 0.08  # random pruning tilts them far more


def test_rmt_lowrank_without_target_keeps_exactly_the_spikes():
    model, u = _planted()
    result = prune(model, "rmt_lowrank")
    pruned = result.model
    assert isinstance(pruned[0], LowRankLinear) and pruned[0].rank == 3
    assert result.layers.loc[0, "rank_kept"] == 3
    w = model[0].weight.detach().double().numpy()
    uu, ss, vv = np.linalg.svd(w, full_matrices=False)
    np.testing.assert_allclose(pruned[0].rmt_matrix().numpy(), (uu[:, :3] * ss[:3]) @ vv[:3], atol=1e-5)
    half = prune(model, "rmt_lowrank", bulk_fraction=0.5).model
    assert half[0].rank == 3 + int(np.ceil(0.5 * 97))  # 3 + 49 < 200*100/300: still factorized


def _noise_and_signal() -> nn.Sequential:
    """Two 128 x 128 layers with the same Frobenius norm: pure noise, and a strong rank-40 signal."""
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((128, 128))
    signal = spiked_matrix(128, 128, np.linspace(6, 12, 40) * bbp_threshold(128, 128), rng=rng)
    signal *= np.linalg.norm(noise) / np.linalg.norm(signal)
    model = nn.Sequential(nn.Linear(128, 128, bias=False), nn.Linear(128, 128, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(noise))
        model[1].weight.copy_(torch.from_numpy(signal))
    return model


@pytest.mark.parametrize("method", ["rmt", "rmt_oneshot"])
def test_rmt_prunes_noisy_layers_more(method: str):
    result = prune(_noise_and_signal(), method, sparsity=0.4, **_opts(method))
    noise, signal = result.layers.iloc[0], result.layers.iloc[1]
    assert noise["gamma"] > 0.95 and signal["gamma"] < 0.75
    frac = 1 - result.layers["nonzero_after"] / result.layers["nonzero_before"]
    assert frac.iloc[0] > frac.iloc[1] + 0.1
    mreport = prune(_noise_and_signal(), "magnitude", sparsity=0.4).layers  # the baseline does not tell them apart
    mfrac = 1 - mreport["nonzero_after"] / mreport["nonzero_before"]
    assert abs(mfrac.iloc[0] - mfrac.iloc[1]) < 0.01


def test_rmt_cycles_log_and_fixed_cycles():
    model = _fc()
    result = prune(model, "rmt", sparsity=0.3, regularization="none")
    log = result.summary.outputs["cycle_log"]
    sparsities = [c["sparsity"] for c in log]
    assert sparsities == sorted(sparsities) and sparsities[-1] == pytest.approx(result.summary.reached_sparsity)
    assert [c["sv_step"] for c in log[:2]] == [False, True]
    fixed = prune(model, "rmt", cycles=2, regularization="light", reg_steps=1)
    assert fixed.summary.outputs["cycles"] == 2 and fixed.summary.target_sparsity is None
    assert 0.05 < fixed.summary.reached_sparsity < 0.2  # about 6% of the random-looking weights per cycle


def _budget(weight: torch.Tensor, cycle: int) -> int:
    """METHOD.md section 3, step 3, computed independently: floor(rho_i ((1 - mu) gamma)^(1.5 / i) nnz)."""
    from rmtlib.spectral.fit import fit_mp

    fit = fit_mp(weight.detach().double())
    rho_i = 0.06 * 1.02**cycle
    return int(np.floor(rho_i * ((1 - fit.mu) * fit.gamma) ** (1.5 / cycle) * int(torch.count_nonzero(weight))))


def test_rmt_cycle_budgets_follow_the_papers_formula_on_nonzeros():
    """Cycle 1 removes B_l smallest weights of each layer; cycle 2's B_l uses the pruned layer's new fit
    and its nonzero count (not all entries)."""
    model = _fc()
    result = prune(model, "rmt", cycles=1, regularization="none")
    one = result.model
    for index in (0, 2):  # the 10 x 96 head is too small to fit and keeps all its weights
        before, after = model[index].weight.detach(), one[index].weight.detach()
        removed = int((before != 0).sum() - (after != 0).sum())
        assert removed == _budget(before, 1) > 0
        gone = (after == 0) & (before != 0)
        assert before[gone].abs().max() <= before[~gone].abs().min()  # exactly the smallest ones
    assert torch.equal(one[4].weight, model[4].weight)
    assert result.summary.outputs["cycle_log"][0]["removed"] == sum(_budget(model[i].weight, 1) for i in (0, 2))
    two = prune(model, "rmt", cycles=2, regularization="none", sv_every=0).model  # no singular-vector step
    for index in (0, 2):
        removed = int((one[index].weight != 0).sum() - (two[index].weight != 0).sum())
        assert removed == _budget(one[index].weight, 2)


def test_rmt_counts_what_the_singular_vector_step_zeroes():
    """A large sv_theta zeroes whole rows in the singular-vector step; the cycles count those weights
    (they used to be booked from the budgets only, overshooting a 0.3 target to 0.6)."""
    model = _fc()
    result = prune(model, "rmt", sparsity=0.3, regularization="none", sv_theta=100.0)
    log = result.summary.outputs["cycle_log"]
    previous = result.summary.nonzero_before
    for cycle in log:  # the log's removals are the real changes of the nonzero count
        assert cycle["removed"] == previous - cycle["nonzero"]
        previous = cycle["nonzero"]
    assert result.summary.reached_sparsity >= 0.3
    if not log[-1]["sv_step"]:  # the magnitude step of the last cycle is what meets the target
        assert result.summary.reached_sparsity == pytest.approx(0.3, abs=1.0 / result.summary.params_dense)


def test_a_methods_own_stopping_rule_and_a_target_are_refused_together():
    model = _fc()
    for method, option in (
        ("rmt", {"cycles": 2}),
        ("rmt_oneshot", {"z": 0.5}),
        ("rmt_lowrank", {"bulk_fraction": 0.1}),
        ("svd", {"rank_fraction": 0.5}),
    ):
        with pytest.raises(InputError, match="either sparsity= or"):
            prune(model, method, sparsity=0.5, **option)


def test_oneshot_thresholds_are_per_layer_multiples_of_randomness():
    """rmt_oneshot removes exactly the weights with |w| < 1.5 z (1 - mu_l) gamma_l (independent fits)."""
    from rmtlib.spectral.fit import fit_mp

    model = _fc()
    result = prune(model, "rmt_oneshot", sparsity=0.3)
    pruned = result.model
    z = result.summary.outputs["z"]
    for index in (0, 2):
        w, after = model[index].weight.detach(), pruned[index].weight.detach()
        fit = fit_mp(w.double())
        key = w.abs() / (1.5 * (1 - fit.mu) * fit.gamma)
        assert key[after == 0].max() <= z < key[after != 0].min()
    same = prune(model, "rmt_oneshot", z=float(z) * (1 + 1e-6)).model  # the reported z reproduces the mask
    for index in (0, 2):
        assert torch.equal(same[index].weight == 0, pruned[index].weight == 0)


def test_random_pruning_depends_on_its_seed():
    model = _fc()
    a, b, c = (prune(model, "random", sparsity=0.5, seed=s).model for s in (0, 0, 1))
    assert torch.equal(a[0].weight == 0, b[0].weight == 0)
    assert not torch.equal(a[0].weight == 0, c[0].weight == 0)


def test_regularize_step_scales_each_layers_rate_and_keeps_zeros():
    """Adam's first step moves every nonzero weight by exactly its learning rate: lr * s_l per layer."""
    from rmtlib.pruning.common import Unit
    from rmtlib.pruning.rmt import regularize_step

    torch.manual_seed(0)
    mats = [torch.randn(8, 6, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)]
    mats[0][0, :3] = 0.0
    originals = [m.clone() for m in mats]
    units = [Unit(f"l{i}", "Linear", nn.Identity(), m, int(torch.count_nonzero(m))) for i, m in enumerate(mats)]
    regularize_step(units, [1.0, 0.25], steps=1, lr=1e-3, l1=1e-2, l2=1e-2, group_lasso=1e-2)
    for m, m0, scale in zip(mats, originals, (1.0, 0.25)):
        nonzero = m0 != 0
        torch.testing.assert_close((m0 - m)[nonzero], 1e-3 * scale * torch.sign(m0[nonzero]), rtol=1e-6, atol=1e-12)
        assert torch.all(m[~nonzero] == 0)
    frozen = originals[1].clone()
    regularize_step(
        [Unit("l", "Linear", nn.Identity(), frozen, 35)], [0.0], steps=3, lr=1e-3, l1=1, l2=1, group_lasso=1
    )
    assert torch.equal(frozen, originals[1])  # scale 0: a layer without a fit is left alone


def test_oneshot_z_sweep_is_monotone():
    model = _fc()
    values = [prune(model, "rmt_oneshot", z=z).summary.reached_sparsity for z in (0.0, 0.02, 0.05)]
    assert values[0] == 0.0 and values[0] < values[1] < values[2]


def test_singular_vector_sparsification():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    s = np.concatenate([[50.0], np.linspace(1.9, 0.01, 39)])
    w = (u[:, :40] * s) @ v.T
    w[0, 0] = 0.0
    theta, edge = 0.5, 2.0
    out = sparsify_singular_vectors(torch.from_numpy(w), sv_edge=edge, theta=theta, floor=1 / 750).numpy()
    # independent computation of T_j = theta max(1/750, (1 - s_j/s_+)_+^30) and the rebuild
    uu, ss, vh = np.linalg.svd(w, full_matrices=False)
    t = theta * np.maximum(1 / 750, np.clip(1 - ss / edge, 0, None) ** 30)
    uu = np.where(np.abs(uu) < t[None, :], 0, uu)
    vh = np.where(np.abs(vh) < t[:, None], 0, vh)
    expected = ((uu * ss) @ vh) * (w != 0)
    np.testing.assert_allclose(out, expected, atol=1e-10)
    assert out[0, 0] == 0  # pruned weights stay pruned
    top_u, top_s, _ = np.linalg.svd(out)
    assert abs(abs(top_u[:, 0] @ u[:, 0]) - 1) < 1e-4 and top_s[0] == pytest.approx(50.0, rel=1e-3)  # spike intact
    assert np.mean(uu[:, -1] == 0) > 0.9 and np.mean(uu[:, 0] == 0) < 0.05  # deep bulk wiped out, spike kept


def test_input_untouched_unless_inplace():
    model = _fc()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune(model, "magnitude", sparsity=0.5).model
    assert pruned is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    prune(model, "rmt_lowrank", sparsity=0.5)
    assert all(type(model[i]) is nn.Linear for i in (0, 2, 4))
    same = prune(model, "magnitude", sparsity=0.5, inplace=True).model
    assert same is model and count_params(model)["nonzero"] < count_params(pruned)["dense"] * 0.51


def test_include_exclude_and_split_qkv():
    model = _vit()
    result = prune(model, "magnitude", sparsity=0.2, exclude=["head", "patch_embed.*"], split_qkv=True)
    pruned = result.model
    names = list(result.layers["layer"])
    assert "head" not in names and "patch_embed.proj" not in names
    assert {"blocks.0.attn.qkv.q", "blocks.0.attn.qkv.k", "blocks.0.attn.qkv.v"} <= set(names)
    assert torch.equal(pruned.head.weight, model.head.weight)
    _check_reached(model, result, 0.2, "magnitude")
    only = prune(model, "rmt_oneshot", sparsity=0.1, include="blocks.*.mlp.*")
    assert len(only.layers) == 4


def test_pruning_a_low_rank_model_counts_against_dense():
    model = _fc()
    low = prune(model, "rmt_lowrank", sparsity=0.5).model
    result = prune(low, "magnitude", sparsity=0.7)
    assert result.summary.params_dense == count_params(model)["dense"]
    assert result.summary.reached_sparsity == pytest.approx(0.7, abs=1e-4)
    assert any(name.endswith(".down") for name in result.layers["layer"])


def test_too_high_target_is_refused_with_the_limit():
    model = _vit()
    with pytest.raises(InputError, match="highest reachable sparsity"):
        prune(model, "magnitude", sparsity=0.9, include="head")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="magnitude", sparsity=1.0), "sparsity"),
        (dict(method="magnitude", sparsity=-0.1), "sparsity"),
        (dict(method="magnitude", sparsity="0.5"), "sparsity"),
        (dict(method="magnitude"), "sparsity= is required"),
        (dict(method="bogus", sparsity=0.5), "unknown pruning method 'bogus'"),
        (dict(method="rmt", sparsity=0.5, rhoo=1), "unknown option"),
        (dict(method="magnitude", sparsity=0.5, exclude="*"), "no prunable"),
        (dict(method="svd", sparsity=0.5, split_qkv=True), "split_qkv"),
        (dict(method="magnitude", sparsity=0.5, scope="everywhere"), "scope"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        prune(_fc(), **kwargs)


def test_nan_weights_name_the_layer():
    model = _fc()
    with torch.no_grad():
        model[2].weight[3, 4] = float("nan")
    for method in ("magnitude", "rmt_lowrank"):
        with pytest.raises(InputError, match="layer 2: weight contains 1 NaN"):
            prune(model, method, sparsity=0.5)
    with pytest.raises(InputError, match="no prunable"):
        prune(nn.Sequential(nn.ReLU()), "rmt", sparsity=0.5)


def test_helpers():
    keys = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0])
    assert smallest_mask(keys, 2).tolist() == [False, True, False, True, False]
    assert smallest_mask(keys, 1).tolist() == [False, True, False, False, False]  # ties: lowest index
    assert split_count(10, [1, 1, 2], [100, 100, 100]) == [3, 2, 5]
    assert split_count(10, [1, 1], [2, 100]) == [2, 8]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["rmt_oneshot", "rmt_lowrank", "magnitude"])
def test_cuda_matches_cpu(method: str):
    model = _vit()
    cpu_result = prune(model, method, sparsity=0.4)
    cpu = cpu_result.model
    gpu_result = prune(model.cuda(), method, sparsity=0.4, device="cuda")
    gpu = gpu_result.model
    assert next(gpu.parameters()).is_cuda
    assert gpu_result.summary.reached_sparsity == pytest.approx(cpu_result.summary.reached_sparsity, abs=2e-4)
    assert list(gpu_result.layers["rank_kept"].fillna(-1)) == list(cpu_result.layers["rank_kept"].fillna(-1))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["rmt_lowrank", "svd"])
def test_rank_multiple_keeps_ranks_aligned(method: str):
    model = _vit()
    result = prune(model, method, sparsity=0.4, rank_multiple=16)
    factorized = result.layers[result.layers["params_after"] < result.layers["params_before"]]
    assert len(factorized) >= 5 and (factorized["rank_kept"] % 16 == 0).all()
    assert result.summary.reached_sparsity >= 0.4 and result.summary.reached_sparsity < 0.4 + 0.03


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(16, 64, 3), nn.ReLU(), nn.Conv2d(64, 32, 3), nn.Flatten(), nn.LazyLinear(10))


@pytest.mark.parametrize("method", ["magnitude", "rmt_oneshot", "rmt", "random"])
def test_channels_last_weights_are_pruned_in_the_model_not_in_a_copy(method: str):
    """A channels_last conv's weight reshapes to a copy; pruning used to zero the copy and report
    sparsity the model did not have (magnitude at 0.5 reached 0.005)."""
    dense = _conv_net()
    dense(torch.randn(1, 16, 8, 8))  # materialise the lazy layer
    fast = copy.deepcopy(dense).to(memory_format=torch.channels_last)
    assert not fast[0].weight.is_contiguous()
    result = prune(fast, method, sparsity=0.5, seed=1, **_opts(method))
    pruned = result.model
    reference = prune(dense, method, sparsity=0.5, seed=1, **_opts(method)).model
    _check_reached(fast, result, 0.5, method)
    for a, b in zip(pruned.parameters(), reference.parameters()):  # the same zeros as the contiguous model's
        assert torch.equal(a, b)
    assert pruned[0].weight.stride() == fast[0].weight.stride()  # memory format kept


def test_a_computed_weight_is_refused_by_name():
    import torch.nn.utils.prune as torch_prune

    model = _fc()
    torch_prune.l1_unstructured(model[2], "weight", 0.1)  # weight = weight_orig * mask
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for inplace in (True, False):  # not in place, the deep copy itself used to fail with a RuntimeError
        with pytest.raises(InputError, match="layer 2: its weight is not a stored parameter"):
            prune(model, "magnitude", sparsity=0.5, inplace=inplace)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_tied_weight_is_one_unit_and_structured_methods_refuse_it():
    """A weight shared by two layers was pruned twice and counted twice (rmt_oneshot at 0.5 reached 0.33;
    svd turned a tied head into factors and grew the model)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model[2].weight = model[0].weight
    for method in ("magnitude", "rmt_oneshot", "random"):
        result = prune(model, method, sparsity=0.5, seed=0)
        pruned = result.model
        _check_reached(model, result, 0.5, method)
        assert list(result.layers["layer"]) == ["0", "4"] and pruned[2].weight is pruned[0].weight
    reused = nn.Sequential(nn.Linear(32, 32), nn.ReLU())
    reused.append(reused[0])  # one module at two paths
    for method in ("svd", "rmt_lowrank"):
        with pytest.raises(InputError, match="layer 0: its weights are also held by 2.weight"):
            prune(model, method, sparsity=0.3)
        with pytest.raises(InputError, match="also held by 2.bias, 2.weight"):
            prune(reused, method, sparsity=0.3)


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("rmt", {"rho": -0.1}, "rho must be a finite number > 0"),
        ("rmt", {"rho": float("nan")}, "rho must be"),
        ("rmt", {"cycles": 2.7, "sparsity": None}, "cycles must be a whole number >= 1"),
        ("rmt", {"max_cycles": 0}, "max_cycles"),
        ("rmt", {"exponent": "abc"}, "exponent must be a finite number"),
        ("rmt_oneshot", {"z": "abc", "sparsity": None}, "z must be a finite number >= 0"),
        ("rmt_oneshot", {"scale": -1.0}, "scale must be a finite number > 0"),
        ("rmt", {"sparsity": 0.99}, "highest reachable sparsity"),  # the head and biases alone exceed 1%
    ],
)
def test_rmt_options_are_checked_before_any_change(method, options, message):
    """Bad options used to run (200 cycles for a negative rho), be truncated (cycles=2.7 ran 2), crash
    with a TypeError, or stop midway with the wrong cause, leaving an in-place model half pruned."""
    model = _fc()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {"sparsity": 0.5, **options}
    with pytest.raises(InputError, match=message):
        prune(model, method, inplace=True, **kwargs)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_split_qkv_with_a_structured_method_is_refused_by_the_option_check():
    from rmtlib.pruning import check_method_options

    with pytest.raises(InputError, match="split_qkv"):
        check_method_options("svd", {"split_qkv": True})
    check_method_options("magnitude", {"split_qkv": True})


@pytest.mark.parametrize("method", ["rmt_oneshot", "rmt_lowrank", "rmt"])
def test_edge_centring_reaches_every_fit_of_the_pruning(method: str):
    from rmtlib import fit_mp

    model = _fc()
    ma = FitConfig(edge_centring="ma")
    result = prune(model, method, sparsity=0.3, fit_config=ma, **_opts(method))
    assert result.summary.fit_config == ma
    for layer in ("0", "2"):  # the result's fit is the input layer's, with Ma's edge
        want = fit_mp(model.get_submodule(layer).weight, fit_config=ma)
        assert result.layers.set_index("layer").loc[layer, "sv_edge"] == pytest.approx(want.sv_edge, rel=1e-9)
    with pytest.raises(InputError, match="edge_centring must be one of"):
        prune(model, method, sparsity=0.3, fit_config=FitConfig(edge_centring="johnston"))


def test_an_error_midway_still_writes_back_the_channels_last_layers():
    """rmt stopping at max_cycles left the contiguous layers pruned and the channels_last ones not."""
    model = _conv_net()
    model(torch.randn(1, 16, 8, 8))
    model = model.to(memory_format=torch.channels_last)
    with pytest.raises(InputError, match="max_cycles"):
        prune(model, "rmt", sparsity=0.6, inplace=True, max_cycles=2, **FAST)
    for conv in (model[0], model[2]):  # both channels_last convs hold their two cycles' zeros (the head is too small)
        assert 0 < int((conv.weight == 0).sum()) < conv.weight.numel() // 2
        assert not conv.weight.is_contiguous()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates the old weight_norm
def test_a_model_that_cannot_be_copied_is_an_input_error_for_structured_methods():
    model = _fc()
    model[2] = torch.nn.utils.weight_norm(model[2])  # old-style weight_norm: a non-leaf weight
    with pytest.raises(InputError, match="cannot be copied.*inplace=True"):
        prune(model, "svd", sparsity=0.3)


def test_cut_smallest_keys_cuts_over_all_units_with_zeros_first_and_free():
    """The one global cut behind global scores, rmt_oneshot and SEB: entries already zero (key -1) cost
    nothing, the ``remove`` lowest keys over both units go, the threshold is the largest key cut."""
    a = torch.tensor([[0.0, 3.0], [1.0, 5.0]])
    b = torch.tensor([[2.0, 0.0, 4.0]])
    units = [Unit(name, "linear", nn.Identity(), m, int(m.count_nonzero())) for name, m in (("a", a), ("b", b))]
    keys = [torch.where(m.reshape(-1) == 0, -1.0, m.reshape(-1) * w) for m, w in ((a, 1.0), (b, 0.5))]
    threshold, cut = cut_smallest_keys(units, keys, 2)  # keys a: -1, 3, 1, 5; b: 1, -1, 2
    assert threshold == 1.0  # a's 1.0 and b's 2.0 (key 1.0) tie; both go
    assert a.tolist() == [[0.0, 3.0], [0.0, 5.0]] and b.tolist() == [[0.0, 0.0, 4.0]]
    assert [c.tolist() for c in cut] == [[[False, False], [True, False]], [[True, False, False]]]
    assert cut_smallest_keys(units, [torch.where(u.matrix.reshape(-1) == 0, -1.0, 1.0) for u in units], 0)[0] == 0.0
