import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmtlib import FitConfig, InputError, fit_mp
from rmtlib.spectral.fit import singular_values
from rmtlib.theory.mp import mp_edges


@pytest.mark.parametrize("shape", [(768, 768), (768, 3072), (2304, 768), (500, 2000)])
def test_pure_noise_scale_and_edge(shape, rng):
    sigma2 = float(rng.uniform(1e-4, 3.0))
    w = rng.normal(0.0, np.sqrt(sigma2), size=shape)
    fit = fit_mp(w)
    assert fit.status == "ok"
    assert fit.sigma2 == pytest.approx(sigma2, rel=0.01)
    assert fit.n_spikes <= 0.01 * min(shape)
    assert fit.gamma >= 0.99
    assert fit.mu < 0.02
    # the fitted edge sits within a few Tracy-Widom widths of the MP edge
    _, upper = mp_edges(fit.ratio, sigma2)
    assert fit.lambda_plus == pytest.approx(upper, rel=0.02)


def _planted(rng, m, n, sigma, thetas):
    """Gaussian noise plus a low-rank signal with singular values ``thetas``."""
    noise = rng.normal(0.0, sigma, size=(m, n))
    u = np.linalg.qr(rng.normal(size=(m, len(thetas))))[0]
    v = np.linalg.qr(rng.normal(size=(n, len(thetas))))[0]
    return noise + u @ np.diag(thetas) @ v.T


@pytest.mark.parametrize("shape", [(400, 400), (300, 1200), (1000, 250)])
def test_bbp_threshold_separates_detected_from_hidden_signal(shape, rng):
    m, n = shape
    sigma = 0.5
    threshold = sigma * (max(m, n) * min(m, n)) ** 0.25  # BBP, singular-value units
    strong = threshold * np.array([3.0, 2.2, 1.8])
    weak = threshold * np.array([0.5, 0.3])
    w = _planted(rng, m, n, sigma, np.concatenate([strong, weak]))
    strict = fit_mp(w, fit_config=FitConfig(beta=0.05))  # edge at the 95% TW quantile: false spikes are rare
    assert strict.n_spikes == len(strong)
    # the paper's beta = 0.8 puts the edge a little lower: the strong ones plus at most a few noise values
    loose = fit_mp(w, fit_config=FitConfig(beta=0.8))
    assert len(strong) <= loose.n_spikes <= len(strong) + 3
    # spikes sit where BBP predicts: s = sqrt((theta^2 + sigma^2 N)(theta^2 + sigma^2 p)) / theta
    N, p = max(m, n), min(m, n)
    predicted = np.sqrt((strong**2 + sigma**2 * N) * (strong**2 + sigma**2 * p)) / strong
    np.testing.assert_allclose(strict.spikes, predicted, rtol=0.03)
    assert strict.sigma2 == pytest.approx(sigma**2, rel=0.02)


def test_singular_value_input_equals_matrix_input(rng):
    w = rng.normal(size=(120, 300))
    s = np.linalg.svd(w, compute_uv=False)
    a, b = fit_mp(w), fit_mp(s[::-1].copy(), shape=w.shape)
    assert a.summary() == pytest.approx(b.summary())
    np.testing.assert_allclose(singular_values(w), s, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_low_precision_tensors_are_fitted_in_float64(dtype, rng):
    w = torch.from_numpy(rng.normal(0.0, 0.05, size=(200, 600))).to(dtype)
    fit = fit_mp(w)
    reference = fit_mp(w.to(torch.float64).numpy())
    assert fit.sigma2 == reference.sigma2
    assert fit.sigma2 == pytest.approx(0.0025, rel=0.03)


@given(
    m=st.integers(min_value=24, max_value=160),
    n=st.integers(min_value=24, max_value=160),
    log_scale=st.floats(min_value=-4, max_value=3),
    seed=st.integers(min_value=0, max_value=2**16),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fit_is_transpose_invariant_and_scale_equivariant(m, n, log_scale, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(m, n))
    base = fit_mp(w)
    transposed = fit_mp(w.T.copy())
    scale = 10.0**log_scale
    scaled = fit_mp(w * scale)
    assert transposed.sigma2 == pytest.approx(base.sigma2, rel=1e-9)
    assert transposed.n_spikes == base.n_spikes
    assert scaled.sigma2 == pytest.approx(base.sigma2 * scale**2, rel=1e-9)
    assert scaled.sv_edge == pytest.approx(base.sv_edge * scale, rel=1e-9)
    assert (scaled.gamma, scaled.n_spikes) == (base.gamma, base.n_spikes)
    assert scaled.mu == pytest.approx(base.mu, abs=1e-9)
    assert 0.0 <= base.gamma <= 1.0 and 0.0 <= base.mu <= 1.0
    assert base.n_spikes + round(base.gamma * base.p) == base.p
    # unit-variance Gaussian: the BEMA scale is near 1 even for small matrices
    assert 0.6 < base.sigma2 < 1.5


def test_small_matrices_get_a_status_not_a_fit(rng):
    fit = fit_mp(rng.normal(size=(10, 300)))
    assert fit.status == "too_small" and not fit.ok
    assert np.isnan(fit.sigma2) and np.isnan(fit.gamma)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((50, 60), np.nan), "NaN or Inf"),
        (np.array([[1.0, np.inf]] * 40), "NaN or Inf"),
        (np.zeros((3, 50, 60)), "2-D"),
        (np.ones((50, 60), dtype=np.int64), "floating-point"),
        (torch.ones(50, 60, dtype=torch.int32), "floating-point"),
        (np.zeros((50, 60)), "all-zero"),
    ],
)
def test_bad_input_names_the_problem_and_the_layer(bad, message):
    with pytest.raises(InputError, match=message) as info:
        fit_mp(bad, name="blocks.3.mlp.fc1")
    assert "blocks.3.mlp.fc1" in str(info.value)


def test_bad_arguments_are_refused(rng):
    with pytest.raises(InputError, match="config must be a FitConfig"):
        fit_mp(rng.normal(size=(40, 40)), fit_config={"alpha": 0.25})
    with pytest.raises(InputError, match="expected 40"):
        fit_mp(np.ones(30), shape=(40, 50))


def test_quantile_spectrum_pins_scale_edge_and_fit_error():
    """A spectrum placed exactly on BEMA's MP(c, 1) quantiles: sigma^2 = 1, the Tracy-Widom edge equals
    the formula written out by hand (c^(-1/6) matters at c = 1/4), and mu = 1 / (2p), since each step of
    the empirical cdf straddles the MP cdf by half a step."""
    from rmtlib.theory.mp import mp_ppf
    from rmtlib.theory.tracy_widom import tw1_ppf

    m, n = 300, 1200
    p, N, c = 300, 1200, 0.25
    eig = mp_ppf((np.arange(1, p + 1) - 0.5) / p, c)
    fit = fit_mp(np.sqrt(N * eig), shape=(m, n), fit_config=FitConfig(alpha=0.25, beta=0.8))
    assert fit.sigma2 == pytest.approx(1.0, abs=1e-12)
    edge = (1 + c**0.5) ** 2 + tw1_ppf(0.2) * N ** (-2 / 3) * c ** (-1 / 6) * (1 + c**0.5) ** (4 / 3)
    assert fit.lambda_plus == pytest.approx(edge, abs=1e-12)
    assert fit.mu == pytest.approx(0.5 / p, abs=1e-12)
    # off the quantiles the two sides of each jump differ; mu is the sup of |F_MP - empirical cdf| over the
    # window, here taken by brute force just left and right of every eigenvalue in it
    from rmtlib.theory.mp import mp_cdf

    levels = (np.arange(1, p + 1) - 0.5) / p
    levels[p // 2] += 0.9 / p  # one eigenvalue late: its jump misses the MP cdf by 1.4 steps on the left side
    shifted = mp_ppf(levels, c)
    fit = fit_mp(np.sqrt(N * shifted), shape=(m, n))
    window = shifted[int(0.25 * p) - 1 : int(0.75 * p)]
    grid = np.concatenate([window * (1 - 1e-12), window * (1 + 1e-12)])
    ecdf = np.searchsorted(shifted, grid, side="right") / p
    assert fit.mu == pytest.approx(np.max(np.abs(mp_cdf(grid, c, fit.sigma2) - ecdf)), abs=1e-9)


def test_low_rank_matrices_get_a_status_on_both_paths(rng):
    """Rank 10 of 64: round-off in the Gram eigenvalues is not a spectrum (it used to fit sigma^2 ~ 1e-15 and
    count round-off as spikes), and exact zeros no longer raise."""
    w = rng.standard_normal((64, 10)) @ rng.standard_normal((10, 200))
    from_matrix = fit_mp(w)
    assert from_matrix.status == "rank_deficient" and np.isnan(from_matrix.sigma2) and from_matrix.n_spikes == 0
    sv = np.linalg.svd(w, compute_uv=False)
    sv[10:] = 0.0
    assert fit_mp(sv, shape=w.shape).status == "rank_deficient"
    # a full-rank matrix whose smallest singular values are tiny but real is still fitted
    u, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    v, _ = np.linalg.qr(rng.standard_normal((200, 64)))
    s = np.sort(rng.uniform(1.0, 2.0, 64))[::-1]
    s[-3:] = 1e-4
    assert fit_mp((u * s) @ v.T).status == "ok"


def test_bema_window_bounds_are_exact_integers():
    from fractions import Fraction

    from rmtlib.spectral.fit import _bema_window

    for alpha in (0.17, 0.25, 0.3, 0.35):
        for p in (90, 170, 180, 768):
            ranks = _bema_window(p, alpha)
            exact = Fraction(str(alpha)) * p
            assert ranks[0] == max(int(exact), 1) and ranks[-1] == min(int(p - exact), p - 1)


def test_a_truncated_spectrum_gives_the_full_spectrums_fit():
    """Rank truncation keeps the top singular values exactly, so the censored scale fit on the window's
    nonzero part recovers the full spectrum's sigma^2 and edge (what a second pruning stage needs)."""
    from rmtlib.theory.mp import mp_ppf

    p, N, c = 300, 1200, 0.25
    sv = np.sqrt(N * mp_ppf((np.arange(1, p + 1) - 0.5) / p, c))[::-1].copy()
    full = fit_mp(sv, shape=(p, N))
    for keep in (180, 120):  # window ranks 75..225 (ascending): 180 leaves 105 of them, 120 leaves 45
        cut = sv.copy()
        cut[keep:] = 0.0
        fit = fit_mp(cut, shape=(p, N))
        assert fit.ok and fit.sigma2 == pytest.approx(full.sigma2, abs=1e-12)
        assert fit.sv_edge == pytest.approx(full.sv_edge, abs=1e-9) and fit.n_spikes == full.n_spikes
    cut = sv.copy()
    cut[74:] = 0.0  # no nonzero value left in the window
    assert fit_mp(cut, shape=(p, N)).status == "rank_deficient"


def test_edge_centring_moves_only_the_edge(rng):
    """The centring option changes the edge (to sigma2 (centre + t scale)) and what depends on it, not the scale fit."""
    from rmtlib.theory.tracy_widom import tw1_ppf, tw_centre_scale

    w = rng.standard_normal((300, 120))
    paper = fit_mp(w, fit_config=FitConfig(beta=0.5))
    t = float(tw1_ppf(0.5))
    for centring in ("paper", "johnstone", "ma"):
        fit = fit_mp(w, fit_config=FitConfig(beta=0.5, edge_centring=centring))
        centre, scale = tw_centre_scale(300, 120, centring)
        assert fit.sigma2 == paper.sigma2 and fit.mu == paper.mu and fit.edge_centring == centring
        assert fit.lambda_plus == pytest.approx(fit.sigma2 * (centre + t * scale), rel=1e-12)
        assert fit.sv_edge == pytest.approx(np.sqrt(300 * fit.lambda_plus), rel=1e-12)
        assert fit.n_spikes == int(np.sum(fit.singular_values > fit.sv_edge))
    # N - 1/2 and p - 1/2 shift the centre down: Ma's edge sits below the paper's at beta = 0.5
    assert fit_mp(w, fit_config=FitConfig(beta=0.5, edge_centring="ma")).lambda_plus < paper.lambda_plus
    with pytest.raises(InputError, match="edge_centring"):
        FitConfig(edge_centring="Ma")


@pytest.mark.parametrize("zeroed", [100, 200, 400])
def test_zeroed_rows_are_dropped_not_censored(zeroed):
    """768 x 3072 N(0, 1) with z zero rows is a (768 - z) x 3072 noise matrix: sigma^2 = 1 and no spikes.
    Fitting the zeros as censored eigenvalues gave sigma^2 0.905 / 0.800 / 0.615 and 10 / 30 / 66 spikes."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((768, 3072))
    w[rng.permutation(768)[:zeroed]] = 0.0
    fit = fit_mp(w)
    assert fit.ok and fit.rows_dropped == zeroed and fit.cols_dropped == 0
    assert (fit.m, fit.n, fit.m_eff, fit.n_eff) == (768, 3072, 768 - zeroed, 3072)
    assert fit.p == 768 - zeroed and fit.ratio == pytest.approx((768 - zeroed) / 3072)
    assert len(fit.singular_values) == 768 - zeroed
    assert fit.sigma2 == pytest.approx(1.0, rel=0.01)
    assert fit.n_spikes <= 3
    # the reduced matrix's own fit, exactly
    reduced = fit_mp(w[np.any(w != 0, axis=1)])
    assert fit.sigma2 == reduced.sigma2 and fit.sv_edge == reduced.sv_edge and fit.mu == reduced.mu


def test_zeroed_columns_and_both_sides_are_dropped(rng):
    w = rng.normal(0.0, 0.5, size=(400, 300))
    w[:, :120] = 0.0
    w[:50] = 0.0
    fit = fit_mp(w)
    assert (fit.rows_dropped, fit.cols_dropped) == (50, 120) and (fit.p, fit.N) == (180, 350)
    assert fit.sigma2 == pytest.approx(0.25, rel=0.03) and fit.n_spikes <= 2
    summary = fit.summary()
    assert summary["m"] == 400 and summary["m_eff"] == 350 and summary["n_eff"] == 180


def test_singular_value_path_drops_zero_lines_like_the_matrix_path(rng):
    from rmtlib.spectral.fit import count_zero_lines

    w = rng.standard_normal((200, 500))
    w[:60] = 0.0
    w[:, 7] = 0.0
    assert count_zero_lines(w) == (60, 1)
    sv = singular_values(w)
    a = fit_mp(w)
    b = fit_mp(sv, shape=w.shape, zero_lines=count_zero_lines(w))
    assert a.summary() == pytest.approx(b.summary())
    # without the counts the singular values alone are read as a rank truncation (censored fit)
    assert fit_mp(sv, shape=w.shape).sigma2 < 0.85 * a.sigma2
    with pytest.raises(InputError, match="zero_lines"):
        fit_mp(sv, shape=w.shape, zero_lines=(150, 0))  # more zeros claimed than the spectrum has
    with pytest.raises(InputError, match="zero_lines"):
        fit_mp(sv, shape=w.shape, zero_lines=(300, 0))
    with pytest.raises(InputError, match="zero_lines"):
        fit_mp(w, zero_lines=(60, 1))


def test_analyze_and_pruning_units_drop_zero_rows():
    """The two callers that fit singular values (layer_fits, pruning's fit_unit) see the zero rows."""
    from rmtlib.pruning.common import elementwise_units, fit_unit
    from rmtlib.spectral.analyze import layer_fits

    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 256, bias=False)
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0)
        layer.weight[:80] = 0.0
    model = torch.nn.Sequential(layer)
    (_, _, shape, fit, status), *_ = layer_fits(model, progress=False)
    assert status == "ok" and shape == (256, 512) and fit.rows_dropped == 80
    assert fit.sigma2 == pytest.approx(1.0, rel=0.02) and fit.n_spikes <= 2
    unit = elementwise_units(model, None, None)[0]
    assert fit_unit(unit).rows_dropped == 80 and fit_unit(unit).sigma2 == pytest.approx(fit.sigma2, rel=1e-9)


def test_bema_quantile_conventions_bias_sigma2_as_measured():
    """On N(0, 1) 300 x 100 matrices: k/p (the paper's text) biases sigma^2 low (~0.990), (k-1)/p (its code)
    high (~1.009), the default (k-1/2)/p is nearly unbiased (~0.999); METHOD.md section 2."""
    rng = np.random.default_rng(3)
    est = {q: [] for q in ("midpoint", "paper", "reference")}
    for _ in range(300):
        sv = np.linalg.svd(rng.standard_normal((300, 100)), compute_uv=False)
        for q in est:
            est[q].append(fit_mp(sv, shape=(300, 100), fit_config=FitConfig(bema_quantile=q)).sigma2)
    mean = {q: float(np.mean(v)) for q, v in est.items()}  # standard error ~0.0006
    assert abs(mean["midpoint"] - 1.0) < 0.003
    assert 0.984 < mean["paper"] < 0.995 and 1.003 < mean["reference"] < 1.014
    assert fit_mp(sv, shape=(300, 100)).sigma2 == est["midpoint"][-1]  # the default
    with pytest.raises(InputError, match="bema_quantile"):
        FitConfig(bema_quantile="k/p")


def test_reference_cdf_bug_changes_mu_only_past_a_quarter_above_the_edge(rng):
    """The reference code's MP cdf is 0 above the edge. mu is measured on BEMA's window, so the bug
    changes it only when more than p - floor((1 - alpha) p) eigenvalues exceed sigma^2 (1 + sqrt c)^2."""
    from rmtlib.spectral.fit import _bema_reference
    from rmtlib.theory.mp import mp_cdf

    def mu_with_bug(fit):
        ranks, _ = _bema_reference(fit.p, fit.N, fit.alpha)
        lam = np.sort(fit.eigenvalues)[ranks - 1]
        f = mp_cdf(lam, fit.ratio, fit.sigma2)
        f = np.where(lam > mp_edges(fit.ratio, fit.sigma2)[1], 0.0, f)
        return max(np.max(np.abs(f - ranks / fit.p)), np.max(np.abs(f - (ranks - 1) / fit.p)))

    m, n = 400, 200  # p - floor(0.75 p) = 50
    for rank in (0, 10, 45, 51, 55):
        w = rng.standard_normal((m, n))
        if rank:
            u = np.linalg.qr(rng.standard_normal((m, rank)))[0]
            v = np.linalg.qr(rng.standard_normal((n, rank)))[0]
            w = w + u @ np.diag(np.linspace(40.0, 80.0, rank)) @ v.T
        fit = fit_mp(w)
        above = int(np.sum(fit.eigenvalues > mp_edges(fit.ratio, fit.sigma2)[1]))
        if above > 50:
            assert mu_with_bug(fit) >= 0.75 > fit.mu
        else:
            assert mu_with_bug(fit) == pytest.approx(fit.mu, abs=1e-15)
