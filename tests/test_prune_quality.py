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
    overall_verdict,
    paper_differences,
    pattern_sparsity,
    pivot_levels,
    run_benchmark,
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
