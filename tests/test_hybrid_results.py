"""The fine-tuned schedules read back: paired differences from the magnitude schedule beside the authors' numbers."""

import json

import numpy as np
import pytest

from rmtlib.errors import InputError
from rmtlib.experiments.hybrid_results import AUTHORS_TOP1, SCHEDULES, budget_text, hybrid_table, load_hybrid_results
from rmtlib.experiments.paired import mcnemar

BUDGET = dict(finetune_steps=20, batch_size=128, finetune_lr=1e-4, reservoir_steps=10, reservoir_lr=1e-3, over=0.03)


def _write(folder, correct):
    levels = sorted({key.split("@")[1] for key in correct}, key=float)
    results = {
        "model": "tiny",
        "eval": "200 images",
        "settings": {"hybrid": BUDGET},
        "schedules": {s: {"top1": {lv: float(correct[f"{s}@{lv}"].mean()) for lv in levels}} for s in SCHEDULES},
    }
    (folder / "results.json").write_text(json.dumps(results))
    np.savez_compressed(folder / "correct.npz", **correct)


def test_each_schedule_is_tested_against_magnitude_on_the_same_images(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(200) < 0.8
    better = base.copy()
    better[~base] = True  # right wherever magnitude is, and on every image magnitude misses
    correct = {"magnitude@0.50": base, "rmt@0.50": base.copy(), "hybrid@0.50": better}
    correct |= {f"{s}@0.30": base for s in SCHEDULES}
    _write(tmp_path, correct)
    results, loaded = load_hybrid_results(tmp_path)
    assert set(loaded) == set(correct) and all(np.array_equal(loaded[k], correct[k]) for k in correct)
    table, lines = hybrid_table(results, loaded, n_boot=200, seed=0)
    assert list(zip(table["level"], table["schedule"])) == [(lv, s) for lv in ("30%", "50%") for s in SCHEDULES]
    row = table[(table["schedule"] == "hybrid") & (table["level"] == "50%")].iloc[0]
    assert row["top-1 here (%)"] == pytest.approx(100.0)
    assert row["vs magnitude (pp)"] == pytest.approx(100 * (1 - base.mean()))
    assert row["McNemar p"] == pytest.approx(mcnemar(better, base).p_value)
    assert row["authors' top-1 (%)"] == AUTHORS_TOP1["hybrid"]["50%"]
    same = table[(table["schedule"] == "rmt") & (table["level"] == "50%")].iloc[0]
    assert same["vs magnitude (pp)"] == 0 and same["95% interval"] == "[+0.00, +0.00]"
    assert np.isnan(table.loc[table["schedule"] == "magnitude", "vs magnitude (pp)"]).all()
    assert lines[-1].startswith("hybrid at 50%: +") and lines[-1].endswith(", ahead)")
    assert lines[-2] == "rmt at 50%: +0.00 pp (p = 1, no difference shown)"


def test_budget_text_and_a_missing_folder(tmp_path):
    results = {"settings": {"hybrid": BUDGET}, "model": "tiny", "eval": "200 images"}
    assert budget_text(results) == (
        "20 AdamW steps of batch 128 (lr 0.0001) after each step, 10 reservoir steps (lr 0.001), "
        "over-pruning by 3%; tiny, 200 images."
    )
    with pytest.raises(InputError, match="results.json, correct.npz not found"):
        load_hybrid_results(tmp_path)


def test_authors_numbers_are_those_of_the_published_table():
    from rmtlib.experiments.prune_quality import paper_differences

    paper = paper_differences()
    for schedule in ("rmt", "hybrid"):
        rows = paper[paper.method == schedule].set_index("level")
        assert AUTHORS_TOP1[schedule] == rows["top1"].to_dict()
        assert AUTHORS_TOP1["magnitude"] == rows["magnitude_top1"].to_dict()
