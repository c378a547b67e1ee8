"""Chapter 1's checks: each against an independent computation or the theory it measures."""

import numpy as np
import pandas as pd
import pytest

from rmtlib.errors import InputError
from rmtlib.experiments.mp_checks import (
    bbp_rate_table,
    bbp_summary,
    bema_quantile_bias,
    chapter_verdict,
    format_span,
    ks_distance,
    mp_law_check,
    spiked_fit_check,
    tw_edge_check,
)
from rmtlib.experiments.spiked import bbp_singular_value, bbp_threshold
from rmtlib.spectral.fit import fit_mp
from rmtlib.spectral.fit_config import FitConfig
from rmtlib.theory.mp import mp_ppf
from rmtlib.theory.tracy_widom import tw1_ppf, tw_centre_scale


def test_ks_distance_of_the_mp_midpoint_quantiles_is_half_a_step():
    p, c = 200, 0.4
    eig = mp_ppf((np.arange(1, p + 1) - 0.5) / p, c)  # each eigenvalue in the middle of its step
    assert ks_distance(eig[::-1], c) == pytest.approx(0.5 / p, rel=1e-6)
    with pytest.raises(InputError, match="no eigenvalues"):
        ks_distance([], c)


def test_mp_law_check_draws_in_order_and_measures_each_matrix():
    table, spectra = mp_law_check([0.1, 0.5], 200, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    for (ratio, eig), row, p in zip(spectra, table.itertuples(), (20, 100)):
        x = rng.standard_normal((200, p))
        expected = np.linalg.svd(x, compute_uv=False) ** 2 / 200
        np.testing.assert_allclose(np.sort(eig), np.sort(expected), rtol=1e-8)
        assert ratio == p / 200 and row.shape == f"200x{p}"
        assert row.KS == pytest.approx(ks_distance(expected, ratio))
        assert row.mean == pytest.approx(expected.mean()) and row.var_MP == ratio
    assert (table["KS"] < 1.36 / np.sqrt([20, 100])).all()  # Gaussian matrices follow the law
    with pytest.raises(InputError, match="ratio"):
        mp_law_check([1.5], 100, np.random.default_rng(0))


def test_bema_conventions_are_ordered_and_equal_direct_fits():
    table = bema_quantile_bias(6, np.random.default_rng(1), shape=(120, 40)).set_index("convention")
    rng = np.random.default_rng(1)
    direct = {q: [] for q in ("midpoint", "paper", "reference")}
    for _ in range(6):
        w = rng.standard_normal((120, 40))
        for q in direct:
            direct[q].append(fit_mp(w, fit_config=FitConfig(alpha=0.25, bema_quantile=q)).sigma2)
    for q, values in direct.items():
        assert table.loc[q, "mean_sigma2"] == pytest.approx(np.mean(values), rel=1e-10)
        assert table.loc[q, "standard_error"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(6), rel=1e-8)
    # k/p quantiles are larger than (k - 1/2)/p, which are larger than (k - 1)/p: the slopes are in reverse order
    assert (
        table.loc["paper", "mean_sigma2"] < table.loc["midpoint", "mean_sigma2"] < table.loc["reference", "mean_sigma2"]
    )
    with pytest.raises(InputError, match="n_quantile_trials"):
        bema_quantile_bias(1, np.random.default_rng(0))


def test_tw_edge_check_counts_the_values_above_each_edge():
    m, n, betas = 400, 200, [0.8, 0.1]
    t = np.array([-3.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0, 4.0])  # standardized values by construction
    centre, scale = tw_centre_scale(m, n, "paper")
    check = tw_edge_check(centre + scale * t, m, n, betas)
    for b in betas:
        assert check["above_edge"][str(b)] == pytest.approx(np.mean(t > tw1_ppf(1 - b)))
    assert check["mean"] == pytest.approx(t.mean()) and check["sd"] == pytest.approx(t.std(ddof=1))
    assert check["centrings"]["paper"]["mean"] == pytest.approx(t.mean())
    c_ma, s_ma = tw_centre_scale(m, n, "ma")
    assert check["centrings"]["ma"]["mean"] == pytest.approx(((centre + scale * t - c_ma) / s_ma).mean())


def test_spiked_fit_finds_the_visible_components_and_the_noise_scale():
    table, cases = spiked_fit_check([(400, 200)], [0.5, 2.0, 3.0], sigma=0.1, betas=[0.1], rng=np.random.default_rng(0))
    row, case = table.loc["400x200"], cases[0]
    assert row["visible"] == 2 == case.n_visible  # 0.5 x the threshold stays in the bulk
    assert row["found, beta=0.1"] == 2
    assert abs(row["error %"]) < 5 and row["sigma2"] == pytest.approx(0.01)
    thr = bbp_threshold(400, 200, 0.1)
    np.testing.assert_allclose(case.predicted_sv, bbp_singular_value(np.array([2.0, 3.0]) * thr, 400, 200, 0.1))


def _bbp_table(rates: dict) -> pd.DataFrame:
    """A bbp_detection-shaped table: rates[(m, n, beta)] = list of rates at strengths 0, 0.5, 1, 2."""
    rows = []
    for (m, n, beta), values in rates.items():
        for rel, rate in zip((0.0, 0.5, 1.0, 2.0), values):
            rows.append(dict(m=m, n=n, beta=beta, rel_strength=rel, detection_rate=rate, n_trials=100))
    return pd.DataFrame(rows)


def test_bbp_summary_and_rate_table_read_the_detection_table():
    bbp = _bbp_table(
        {
            (200, 100, 0.8): [0.80, 0.82, 0.95, 1.0],
            (200, 100, 0.1): [0.10, 0.12, 0.30, 1.0],
            (800, 400, 0.8): [0.78, 0.79, 0.97, 1.0],
            (800, 400, 0.1): [0.08, 0.14, 0.96, 1.0],
        }
    )
    summary = bbp_summary(bbp, [0.8, 0.1])
    assert summary["at_threshold"] == (0.30, 0.96)
    assert summary["reliable_from"] == (1.0, 2.0) and summary["all_reliable"]
    assert summary["zero_signal"] == [(0.78, 0.80), (0.08, 0.10)]
    assert summary["below_gain"] == pytest.approx([0.02, 0.06])
    assert summary["shapes"] == ["200x100", "800x400"] and summary["n_trials"] == 100
    table = bbp_rate_table(bbp, [0.0, 1.0])
    assert list(table.columns) == [0.0, 1.0]
    assert table.loc[("800x400", 0.1), 1.0] == 0.96


def test_chapter_verdict_states_each_rule_outcome():
    mp_table = pd.DataFrame({"shape": ["1000x100", "1000x1000"], "KS": [0.02, 0.004]})
    fit_table = pd.DataFrame({"error %": [3.0, -0.5]}, index=pd.Index(["200x100", "800x400"], name="shape"))
    tw = {"n_trials": 200, "shape": [400, 200], "above_edge": {"0.8": 0.78, "0.1": 0.11}}
    bbp = bbp_summary(
        _bbp_table({(200, 100, 0.8): [0.8, 0.8, 0.9, 1.0], (200, 100, 0.1): [0.1, 0.12, 0.4, 1.0]}), [0.8, 0.1]
    )
    rows = chapter_verdict(mp_table, fit_table, tw, bbp, [0.8, 0.1], alpha=0.25, rank=5)
    assert [set(r) for r in rows] == [{"claim", "paper", "measured", "verdict"}] * 3
    assert [r["verdict"] for r in rows] == [
        "holds on matrices with a known answer",
        "holds, within sampling error",
        "holds",
    ]
    assert "KS distance ≤ 0.020" in rows[0]["measured"] and "within 3.0%" in rows[0]["measured"]
    assert "0.78 / 0.11 of 200 400x200 matrices" in rows[1]["measured"] and "0.80 / 0.10 of 100" in rows[1]["measured"]
    assert "detected in 40% of trials, in at least 95% from 2 x it" in rows[2]["measured"]
    # a scale off by 8%, an edge crossed half the time at beta = 0.1, a shape that never detects reliably
    worse = chapter_verdict(
        mp_table,
        fit_table.assign(**{"error %": [8.0, 1.0]}),
        {**tw, "above_edge": {"0.8": 0.8, "0.1": 0.5}},
        {**bbp, "all_reliable": False},
        [0.8, 0.1],
        alpha=0.25,
        rank=5,
    )
    assert worse[0]["verdict"] == "does not hold: σ² off by more than 5%"
    assert worse[1]["verdict"] == "does not hold: more false alarms than β in places"
    assert worse[2]["verdict"] == "not shown at these sizes"


def test_format_span_prints_one_number_when_the_ends_agree():
    assert format_span(0.333, 0.371, ".0%") == "33%-37%"
    assert format_span(0.3701, 0.3699, ".0%") == "37%"
    assert format_span(1.25, 1.5, "g", " to ") == "1.25 to 1.5"
