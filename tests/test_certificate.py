import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from rmtlib import InputError
from rmtlib.experiments.certificate import (
    CE_LINF_LIPSCHITZ,
    data_path_certificate,
    magnitude_split,
    rest_lipschitz,
)
from rmtlib.experiments.randomness import split_at_edge
from rmtlib.nn.models import fc_net


def _net(widths, seed, scale=1.0):
    torch.manual_seed(seed)
    model = fc_net(widths).to(torch.float64)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    return model


@given(
    seed=st.integers(0, 2**16),
    width=st.integers(8, 48),
    depth=st.integers(1, 3),
    which=st.integers(0, 3),
    fraction=st.floats(0.0, 1.0),
    scale=st.floats(0.3, 4.0),
    lambda2=st.floats(0.0, 1e-2),
    lambda1=st.floats(0.0, 1e-2),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_certificate_holds_on_random_nets_and_certified_labels_never_flip(
    seed, width, depth, which, fraction, scale, lambda2, lambda1
):
    """Deterministic: J(S) <= J(A) - lambda2 ||R||^2 - lambda1 ||R||_1 + B_T(R) on every draw, and no
    sample certified by the observed logit change changes its label."""
    widths = [12] + [width] * depth + [5]
    model = _net(widths, seed, scale)
    layer = str(1 + 2 * min(which, depth))  # fc_net's Linear layers sit at 1, 3, 5, ...
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 12, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (200,), generator=gen)
    s, _ = magnitude_split(model[int(layer)].weight, fraction)
    cert = data_path_certificate(model, layer, s, x, y, lambda2=lambda2, lambda1=lambda1)
    assert cert["holds"] and cert["j_S"] <= cert["rhs"] + 1e-12
    assert cert["max_ce_ratio"] <= 1.0 + 1e-9  # per sample |dCE| <= 2 L ||R psi||_inf
    assert cert["certified_changed"] == 0
    assert cert["certified_lipschitz"] <= cert["certified_observed"] + 1e-12  # the L bound is the weaker check


def test_certificate_with_the_mp_split_and_its_norm_conditions():
    model = _net([20, 64, 64, 4], 0)
    with torch.no_grad():  # plant three spikes so that S != 0
        u, v = torch.randn(64, 3, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64)
        model[3].weight.add_(u @ v.T / 8)
    x = torch.randn(300, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(2))
    s, r, fit = split_at_edge(model[3].weight)
    assert fit.n_spikes >= 3
    cert = data_path_certificate(model, "3", s, x, y, lambda2=1e-3)
    assert cert["holds"] and cert["r_fro2"] == pytest.approx(float(r.pow(2).sum()))
    # S and R of the MP split share entries: the l1 identity fails, so lambda1 > 0 is refused
    with pytest.raises(InputError, match="disjoint supports"):
        data_path_certificate(model, "3", s, x, y, lambda1=1e-3)
    with pytest.raises(InputError, match="not a Linear"):
        data_path_certificate(model, "2", s, x, y)
    with pytest.raises(InputError, match="shape"):
        data_path_certificate(model, "1", s, x, y)


def test_rest_lipschitz_is_the_product_of_later_inf_norms_and_bounds_the_logit_change():
    model = _net([10, 30, 20, 6], 3)
    inf = [float(model[i].weight.detach().abs().sum(1).max()) for i in (3, 5)]
    assert rest_lipschitz(model, "1") == pytest.approx(inf[0] * inf[1])
    assert rest_lipschitz(model, "3") == pytest.approx(inf[1]) and rest_lipschitz(model, "5") == 1.0
    # the bound is attained for a single Linear: a sign vector on the heaviest row
    lin = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU(), torch.nn.Linear(3, 2, bias=False))
    w = lin[2].weight.detach()
    row = int(w.abs().sum(1).argmax())
    assert float((w @ torch.sign(w[row]))[row]) == pytest.approx(rest_lipschitz(lin, "0"))


def test_cross_entropy_is_two_lipschitz_in_the_sup_norm():
    """|CE(z) - CE(z')| <= 2 ||z - z'||_inf, and the ratio approaches 2 (the constant is tight)."""
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(5000, 7)) * 3)
    dz = torch.from_numpy(rng.uniform(-1, 1, size=(5000, 7))) * 1e-6
    y = torch.from_numpy(rng.integers(0, 7, 5000))
    change = (F.cross_entropy(z + dz, y, reduction="none") - F.cross_entropy(z, y, reduction="none")).abs()
    ratio = change / dz.abs().amax(1)
    assert float(ratio.max()) <= CE_LINF_LIPSCHITZ
    # worst case: the true class far below, the step -eps on it and +eps elsewhere
    z_bad = torch.tensor([[-30.0, 0.0, 0.0]], dtype=torch.float64)
    step = torch.tensor([[-1.0, 1.0, 1.0]], dtype=torch.float64) * 1e-6
    y0 = torch.tensor([0])
    tight = (F.cross_entropy(z_bad + step, y0) - F.cross_entropy(z_bad, y0)) / 1e-6
    assert float(tight) == pytest.approx(2.0, rel=1e-5)


def test_magnitude_split_is_disjoint_and_removes_the_smallest():
    w = torch.tensor([[0.3, -0.1, 2.0], [-0.05, 1.0, -0.7]])
    s, r = magnitude_split(w, 0.5)
    assert torch.equal(s + r, w.double()) and int(((s != 0) & (r != 0)).sum()) == 0
    assert sorted(r[r != 0].abs().tolist()) == pytest.approx([0.05, 0.1, 0.3])
    with pytest.raises(InputError, match="fraction"):
        magnitude_split(w, 1.5)
