"""The fine-tuned pruning schedules of ``benchmarks/hybrid_schedule.py``, read back and tested (chapter 5).

That benchmark prunes in cumulative steps with fine-tuning after each (the authors' 2026 hybrid
magnitude / prune-restore schedule, and the same schedule with global magnitude pruning or ``rmt`` at
every step) and writes ``results.json`` (settings, top-1 per schedule and level) and ``correct.npz``
(each evaluated model's per-image correctness, ``<schedule>@<level>``). :func:`hybrid_table` sets each
schedule against the magnitude schedule on the same images (McNemar, paired bootstrap) beside the
authors' ImageNet numbers (:data:`AUTHORS_TOP1`, theirs, not measured here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rmtlib.errors import InputError
from rmtlib.experiments.paired import compare

__all__ = ["AUTHORS_TOP1", "SCHEDULES", "load_hybrid_results", "budget_text", "hybrid_table"]

#: top-1 (%) the authors report for ViT-B/16 augreg2 (dense 85.11) on ImageNet, arXiv 2606.02608
AUTHORS_TOP1: dict[str, dict[str, float]] = {
    "magnitude": {"30%": 84.46, "50%": 81.67, "70%": 67.44},
    "rmt": {"30%": 84.55, "50%": 82.57, "70%": 71.53},
    "hybrid": {"30%": 84.64, "50%": 83.37, "70%": 78.01},
}
#: the schedules compared, the reference (magnitude at every step) first
SCHEDULES = ("magnitude", "rmt", "hybrid")


def load_hybrid_results(folder: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(``results.json``, the arrays of ``correct.npz``) of a ``benchmarks/hybrid_schedule.py`` output folder."""
    folder = Path(folder)
    missing = [name for name in ("results.json", "correct.npz") if not (folder / name).is_file()]
    if missing:
        raise InputError(f"hybrid results: {', '.join(missing)} not found in {folder}")
    results = json.loads((folder / "results.json").read_text())
    with np.load(folder / "correct.npz") as saved:
        correct = {key: saved[key] for key in saved.files}
    return results, correct


def budget_text(results: Mapping[str, Any]) -> str:
    """The fine-tuning budget of the hybrid schedule, one sentence (Markdown)."""
    budget = results["settings"]["hybrid"]
    return (
        f"{budget['finetune_steps']} AdamW steps of batch {budget['batch_size']} (lr {budget['finetune_lr']:g}) after "
        f"each step, {budget['reservoir_steps']} reservoir steps (lr {budget['reservoir_lr']:g}), over-pruning by "
        f"{budget['over']:.0%}; {results['model']}, {results['eval']}."
    )


def hybrid_table(
    results: Mapping[str, Any], correct: Mapping[str, np.ndarray], *, n_boot: int = 2000, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Each schedule's top-1 per level beside the authors', and its paired difference from the magnitude schedule.

    Returns (table, sentences): one row per (level, schedule) with top-1 here (%), the authors' top-1 (%)
    (NaN where they give none), and for ``rmt`` and ``hybrid`` the difference from magnitude (pp),
    its 95% paired bootstrap interval and McNemar's p; one sentence per compared schedule and level
    ("ahead" / "behind" only at p < 0.05).
    """
    rows, lines = [], []
    for level in sorted(results["schedules"]["magnitude"]["top1"], key=float):
        name = f"{float(level):.0%}"
        ref = correct[f"magnitude@{level}"]
        for schedule in SCHEDULES:
            ours = correct[f"{schedule}@{level}"]
            row = {
                "schedule": schedule,
                "level": name,
                "top-1 here (%)": 100 * ours.mean(),
                "authors' top-1 (%)": AUTHORS_TOP1[schedule].get(name, float("nan")),
            }
            if schedule != "magnitude":
                c = compare(ours, ref, n_boot=n_boot, seed=seed)
                row.update(
                    {
                        "vs magnitude (pp)": c["diff_pp"],
                        "95% interval": f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]",
                        "McNemar p": c["p_value"],
                    }
                )
                word = ("ahead" if c["diff_pp"] > 0 else "behind") if c["p_value"] < 0.05 else "no difference shown"
                lines.append(f"{schedule} at {name}: {c['diff_pp']:+.2f} pp (p = {c['p_value']:.2g}, {word})")
            rows.append(row)
    return pd.DataFrame(rows), lines
