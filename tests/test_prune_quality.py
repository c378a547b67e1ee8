"""The pruning-quality benchmark: which variants run, the 2:4 level, the rows and the verdict per level."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.errors import InputError
from rmtlib.experiments.prune_quality import (
    VARIANTS,
    available_variants,
    benchmark_table,
    has_seed_runs,
    overall_verdict,
    paper_differences,
    pattern_sparsity,
    pivot_levels,
    run_benchmark,
    seed_spread,
    seed_spread_text,
    verdict_sentence,
    verdicts,
)
from rmtlib.nn.models import fc_net
from rmtlib.pruning import METHODS
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.loops import train


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = synthetic_classification(n=512, dim=32, classes=4, seed=0, separation=3.0)
    model = fc_net([32, 64, 64, 4])
    train(model, make_loader(data, 64, shuffle=True), 3, lr=3e-3, progress=False)
    return model.eval(), make_loader(data, 128)


def test_available_variants_skip_what_is_not_registered_with_a_reason():
    runs, skipped = available_variants(list(VARIANTS))
    assert runs["magnitude_global"] == {"method": "magnitude", "scope": "global"}
    assert runs["random"] == {"method": "random"}
    for label, options in runs.items():
        assert options in VARIANTS[label] and options["method"] in METHODS
    for label, why in skipped.items():  # every skip names its cause: the method, or the option it lacks
        method = VARIANTS[label][0]["method"]
        assert why.startswith("not available") and (method not in METHODS) == ("is not registered" in why)
    assert set(runs) | set(skipped) == set(VARIANTS)
    assert "rmt_light" in runs  # its fallback is plain rmt, whose default regularization is the light one
    with pytest.raises(InputError, match="unknown variant"):
        available_variants(["magnitude", "nope"])


def test_pattern_sparsity_counts_the_prunable_weights(setup):
    model, _ = setup
    weights = 32 * 64 + 64 * 64 + 64 * 4
    dense = weights + 64 + 64 + 4
    assert pattern_sparsity(model, "2:4") == pytest.approx(0.5 * weights / dense)
    assert pattern_sparsity(model, "1:4") == pytest.approx(0.75 * weights / dense)
    for bad in ("2-4", "4:4", "x:4"):
        with pytest.raises(InputError, match="pattern"):
            pattern_sparsity(model, bad)


def test_benchmark_rows_and_json_round_trip(setup):
    model, loader = setup
    result = run_benchmark(
        model, eval_loader=loader, methods=["magnitude_layer", "random", "seb"], levels=[0.4, 0.7],
        patterns=["2:4"], n_boot=200, calibration_seeds=[0],
    )  # fmt: skip
    rows = result.rows
    # the reference was added and runs first; the 2:4 level and unregistered methods are skipped with a note
    at_levels = rows[rows.level != "2:4"]
    assert (
        list(at_levels.method)
        == ["dense"] + ["magnitude_global"] * 2 + ["magnitude_layer"] * 2 + ["random"] * 2 + ["seb"] * 2
    )
    assert list(at_levels.level) == ["dense"] + ["40%", "70%"] * 4
    # at 2:4 only the reference runs: per-layer magnitude is the same run under a pattern, random and seb take none
    assert list(rows[rows.level == "2:4"].method) == ["magnitude_global"]
    assert {"magnitude_layer @ 2:4", "random @ 2:4", "seb @ 2:4"} <= set(result.skipped)
    record = json.loads(json.dumps(result.to_json()))  # strict JSON: NaN written as null
    table = benchmark_table(record)
    assert record["reference"] == "magnitude_global" and record["levels"] == [0.4, 0.7]
    np.testing.assert_allclose(table.drop_pp, rows.top1_dense - rows.top1_pruned)
    pd.testing.assert_series_equal(table.p_value, rows.p_value.astype(float), check_names=False)
    verdict = verdicts(table)
    assert list(verdict.level) == ["40%", "70%"]
    for _, v in verdict.iterrows():
        others = rows[(rows.level == v.level) & ~rows.method.isin(["dense", "magnitude_global"])]
        assert v.best_other_top1 == others.top1_pruned.max()
        assert (
            v.reference_top1 == rows[(rows.level == v.level) & (rows.method == "magnitude_global")].top1_pruned.iloc[0]
        )


def _level(ref: float, other: float, p: float) -> pd.DataFrame:
    common = dict(level="50%", sparsity=0.5, top1_dense=98.0, reference="glob")
    nan = float("nan")
    return pd.DataFrame(
        [
            dict(common, method="glob", top1_pruned=ref, diff_pp=nan, ci_low_pp=nan, ci_high_pp=nan, p_value=nan),
            dict(common, method="a", top1_pruned=other, diff_pp=other - ref, ci_low_pp=other - ref - 0.2,
                 ci_high_pp=other - ref + 0.2, p_value=p),
            dict(common, method="b", top1_pruned=other - 1, diff_pp=other - 1 - ref, ci_low_pp=-9, ci_high_pp=9,
                 p_value=0.5),
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    "ref, other, p, winner, words",
    [
        (97.0, 97.5, 0.001, "a", "`a` wins"),
        (97.0, 96.5, 0.001, "glob", "`glob` wins"),
        (97.0, 97.1, 0.4, "tie", "no method"),
        (97.0, 60.0, 0.0, "glob", "`glob` wins"),
    ],
)  # fmt: skip
def test_verdict_names_the_winner_only_when_significant(ref, other, p, winner, words):
    verdict = verdicts(_level(ref, other, p)).iloc[0]
    assert verdict.best_other == "a" and verdict.winner == winner
    assert verdict.diff_pp == pytest.approx(other - ref)
    text = verdict_sentence(verdict)
    assert words in text and f"{other:.2f}% against {ref:.2f}%" in text
    assert (f"p = {p:.2g}" if p else "p < 1e-15") in text


def test_published_differences_are_methods_numbers():
    paper = paper_differences()
    rerun = paper[paper.method == "rmt"].set_index("level")
    # METHOD.md section 6: rmt 84.55 / 82.57 / 71.53 vs magnitude 84.46 / 81.67 / 67.44
    assert list(rerun.top1) == [84.55, 82.57, 71.53] and list(rerun.magnitude_top1) == [84.46, 81.67, 67.44]
    assert list(rerun.diff_pp) == pytest.approx([0.09, 0.90, 4.09])
    seb = paper[paper.method == "seb"].set_index("level").diff_pp  # section 7: reported as differences
    assert seb.to_dict() == {"50%": 1.9, "55%": 4.3, "60%": 15.2, "65%": 29.0, "70%": 5.3}
    hybrid = paper[(paper.method == "hybrid") & (paper.level == "70%")].iloc[0]
    assert (hybrid.top1, hybrid.magnitude_top1) == (78.01, 67.44)
    assert paper[(paper.level == "2:4") & (paper.method == "sparsegpt")].diff_pp.iloc[0] == pytest.approx(25.84)


def test_pivot_keeps_run_order():
    table = pd.DataFrame(
        dict(method=["dense", "z", "z", "a", "a"], level=["dense", "70%", "2:4", "70%", "2:4"], v=[0, 1, 2, 3, 4])
    )
    pivot = pivot_levels(table, "v")
    assert list(pivot.index) == ["z", "a"] and list(pivot.columns) == ["70%", "2:4"]
    assert pivot.loc["a", "2:4"] == 4


def test_overall_verdict_groups_the_levels_by_winner():
    levels = [_level(97.0, 97.5, 0.001), _level(97.0, 97.1, 0.4), _level(97.0, 96.0, 0.001), _level(90, 90.2, 0.3)]
    table = pd.concat([lv.assign(level=name) for lv, name in zip(levels, ["50%", "60%", "70%", "2:4"])])
    text = overall_verdict(verdicts(table))
    assert text.startswith("Over the 4 levels: ")
    assert "`a` beats `glob` at 50% (+0.50 pp)" in text
    assert "no method is distinguishable from `glob` at 60%, 2:4" in text
    assert "`glob` is significantly ahead of the best other method at 70%" in text


def test_the_reference_runs_at_a_pattern_whatever_the_order_of_methods(setup):
    """magnitude_layer and magnitude_global coincide under 2:4: the reference is kept, the other skipped."""
    model, loader = setup
    result = run_benchmark(
        model, eval_loader=loader, methods=["magnitude_layer", "magnitude_global"], levels=[], patterns=["2:4"],
        n_boot=50, calibration_seeds=[0],
    )  # fmt: skip
    assert list(result.rows[result.rows.level == "2:4"].method) == ["magnitude_global"]
    assert "the same run as magnitude_global" in result.skipped["magnitude_layer @ 2:4"]


def test_benchmark_on_data_scores_the_first_images_of_a_split():
    from rmtlib.experiments.prune_quality import benchmark_on_data

    model = fc_net([784, 64, 10]).eval()
    result = benchmark_on_data(
        model, data="synthetic", eval_samples=100, batch_size=50, model_name="fc", methods=["magnitude_layer"],
        levels=[0.5], patterns=[], n_boot=20, calibration_seeds=[0],
    )  # fmt: skip
    assert result.settings["samples"] == 100 and result.settings["model"] == "fc"
    assert result.settings["dataset"] == "synthetic [test] (100 images)"
    assert list(result.rows.method) == ["dense", "magnitude_global", "magnitude_layer"]


def test_provenance_and_lists_are_markdown_lines():
    from rmtlib.experiments.prune_quality import provenance_line, skipped_list, verdict_list

    record = {"model": "m", "dataset": "d", "machine": "cpu box", "device": "cpu", "command": "run.py", "date": "today"}
    assert provenance_line(record) == "m on d, cpu box (cpu); run by this notebook"
    assert provenance_line(record, "b.json") == "m on d, cpu box (cpu); read from `b.json` (today, made by `run.py`)"
    undated = {k: v for k, v in record.items() if k != "date"}
    assert "(undated, made by" in provenance_line(undated, "b.json")
    assert skipped_list({}) == "- none"
    assert skipped_list({"a": "why", "b @ 2:4": "because"}) == "- `a`: why\n- `b @ 2:4`: because"
    table = pd.concat([_level(97.0, 97.5, 0.001), _level(97.0, 97.1, 0.4).assign(level="70%")])
    verdict = verdicts(table)
    assert verdict_list(verdict).split("\n") == [f"- {verdict_sentence(row)}" for _, row in verdict.iterrows()]


def test_certified_numbers_read_the_highest_percent_level():
    from rmtlib.experiments.prune_quality import certified_numbers

    certified = pd.DataFrame(
        {"50%": [0.9, 0.8, 0.95], "70%": [0.5, 0.6, 0.4], "2:4": [0.1, 0.9, 0.9]}, index=["glob", "a", "b"]
    )
    assert certified_numbers(certified, "glob") == {
        "cert_level": "70%",
        "cert_ref": 0.5,
        "cert_best_label": "`a` (the highest of the other methods)",
        "cert_best": 0.6,
    }
    only_patterns = certified[["2:4"]]
    assert certified_numbers(only_patterns, "glob")["cert_level"] == "2:4"


def test_layer_removal_prunes_the_data_free_runs_only(setup):
    from rmtlib.experiments.prune_quality import layer_removal, layer_removal_numbers

    model, _ = setup
    options = {label: VARIANTS[label][0] for label in ("magnitude_layer", "magnitude_global", "wanda", "random")}
    shares = layer_removal(model, options, 0.5)
    assert list(shares) == ["magnitude_layer", "magnitude_global"]  # no calibration data, no random
    per_layer = shares["magnitude_layer"].set_index("layer")["sparsity"]
    weights = {"1": 32 * 64, "3": 64 * 64, "5": 64 * 4}
    dense = sum(weights.values()) + 64 + 64 + 4
    removed = sum(per_layer[name] * count for name, count in weights.items())
    assert removed == pytest.approx(0.5 * dense, abs=3)  # the budget is the whole model's, biases included
    assert per_layer.max() - per_layer.min() < 0.01  # per-layer magnitude: the same fraction of every layer
    numbers = layer_removal_numbers(shares, 0.5)
    assert numbers["split_level"] == "50%" and numbers["embed_layer"] == per_layer.iloc[0]
    glob = shares["magnitude_global"].set_index("layer")["sparsity"].iloc[0]
    assert numbers["embed_global"] == glob
    assert np.isnan(layer_removal_numbers({"seb": shares["magnitude_layer"]}, 0.5)["embed_layer"])
    with pytest.raises(InputError, match="no data-free run"):
        layer_removal_numbers({}, 0.5)


def _pivotable(diffs: dict[str, tuple[float, float]], pvals: dict[str, tuple[float, float]]) -> pd.DataFrame:
    rows = [dict(method="dense", level="dense", diff_pp=np.nan, p_value=np.nan)]
    for method, pair in diffs.items():
        for level, d, p in zip(("50%", "70%"), pair, pvals[method]):
            rows.append(dict(method=method, level=level, diff_pp=d, p_value=p))
    return pd.DataFrame(rows)


def test_verdict_claims_reproduced_only_when_ahead_at_both_levels():
    from rmtlib.experiments.prune_quality import CLAIMS, verdict_claims

    table = _pivotable(
        {"rmt_reference": (0.5, -1.0), "seb": (0.4, 0.3)}, {"rmt_reference": (0.01, 0.001), "seb": (0.01, 0.02)}
    )
    rows = verdict_claims(table, reference="glob", model="vit")
    assert [r["claim"] for r in rows] == [claim for _, claim, _ in CLAIMS]
    assert [r["verdict"] for r in rows] == ["not reproduced (behind)", "reproduced (ahead)"]
    assert rows[0]["measured"] == "+0.50 / -1.00 pp vs glob at 50 / 70% (p = 0.01 / 0.001; vit, no fine-tuning)"
    words = [
        verdict_claims(_pivotable({"seb": d}, {"seb": p}), reference="glob", model="vit")[1]["verdict"]
        for d, p in (((0.4, 0.3), (0.01, 0.2)), ((0.4, -0.3), (0.2, 0.2)))
    ]
    assert words == ["partly (ahead at one level)", "not reproduced (no difference)"]
    absent = verdict_claims(_pivotable({"seb": (1, 1)}, {"seb": (0, 0)}), reference="glob", model="vit")[0]
    assert absent["measured"] == "not measured in this run" and absent["verdict"] == "-"


def test_comparison_numbers_set_the_authors_rerun_beside_ours():
    from rmtlib.experiments.prune_quality import comparison_numbers

    paper = paper_differences()
    numbers = comparison_numbers(_pivotable({"rmt_light": (-0.123, 0.0)}, {"rmt_light": (0.0312, 1.0)}), paper)
    assert numbers == {"paper_rmt_50": pytest.approx(0.90), "ours_rmt_50": "-0.12 pp (McNemar p = 0.031)"}
    missing = comparison_numbers(_pivotable({"seb": (1, 1)}, {"seb": (0, 0)}), paper)
    assert missing["ours_rmt_50"] == "not measured in this run"


def _seeded(runs):
    """A benchmark table at one level: the reference (one draw) and runs given as (method, tested, low, high, p)."""
    common = dict(level="2:4", reference="ref", top1_dense=98.0, sparsity=0.5)
    rows = [
        dict(
            common,
            method="dense",
            top1_pruned=98.0,
            calibration_seeds=0,
            top1_seed_min=None,
            top1_seed_max=None,
            p_value=None,
        ),
        dict(
            common,
            method="ref",
            top1_pruned=97.0,
            calibration_seeds=0,
            top1_seed_min=None,
            top1_seed_max=None,
            p_value=None,
        ),
    ]
    for method, tested, low, high, p in runs:
        rows.append(
            dict(
                common,
                method=method,
                top1_pruned=tested,
                calibration_seeds=3,
                top1_seed_min=low,
                top1_seed_max=high,
                p_value=p,
            )
        )
    return pd.DataFrame(rows).astype({"top1_seed_min": float, "top1_seed_max": float, "p_value": float})  # fmt: skip


def test_seed_spread_puts_every_draw_on_a_side_of_the_reference():
    spread = seed_spread(
        _seeded(
            [("worst", 97.5, 97.5, 97.9, 0.001), ("lucky", 97.8, 96.5, 97.8, 0.01), ("under", 96.0, 95.0, 96.9, 0.2)]
        )
    ).set_index("method")
    assert list(spread.index) == ["worst", "lucky", "under"]  # the reference and the dense row are not runs
    assert spread.loc["worst", "side"] == "above" and spread.loc["worst", "tested_is_worst"]
    assert spread.loc["lucky", "side"] == "both" and not spread.loc["lucky", "tested_is_worst"]
    assert spread.loc["under", "side"] == "below"
    assert spread.loc["lucky", "range_pp"] == pytest.approx(1.3) and (spread["reference_top1"] == 97.0).all()

    text = seed_spread_text(spread.reset_index(), "here")
    assert "re-runs `worst`, `lucky`, `under` with 3 draws" in text and "in 2 of the 3 method-level pairs" in text
    assert "widest spread is `under` at 2:4, 95.00-96.90% (1.90 pp)" in text and text.endswith("Provenance: here.")
    # both significant wins are named; only the first holds for every draw
    assert "`worst` at 2:4: 97.50-97.90%" in text and "the tested draw is the lowest" in text
    assert "`lucky` at 2:4: 96.50-97.80%" in text and "the win depends on the draw" in text
    assert "`under` at 2:4: 95" not in text  # p = 0.2: not a win
    no_win = seed_spread_text(spread.reset_index().assign(p_value=0.5), "here")
    assert "Significant wins over the reference: none." in no_win


def test_seed_spread_needs_a_run_with_several_draws():
    table = _seeded([("one", 97.5, 97.5, 97.5, 0.001)]).assign(
        calibration_seeds=lambda t: t["calibration_seeds"].clip(upper=1)
    )
    with pytest.raises(InputError, match="more than one calibration seed"):
        seed_spread(table)


def test_has_seed_runs_tells_a_single_draw_benchmark_apart():
    several = _seeded([("a", 97.5, 97.5, 97.9, 0.001)])
    assert has_seed_runs(several) and not has_seed_runs(several.assign(calibration_seeds=1))
