"""The paper's published ImageNet ViT numbers (arXiv 2503.01922), in the sweep's table form.

Kept apart from the sweep itself: these are numbers read from the paper, never measured here; a
chapter or a plot puts them beside a measured :func:`rmtlib.sweep` table (``source="paper"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rmtlib.experiments.sweep_store import SWEEP_COLUMNS

__all__ = ["paper_vit_results"]

_PAPER_VIT = [
    ("ViT-B/16 (torchvision V1)", 81.07, [(31, 82.2), (38, 80.9), (48, 78.0)], True, "rmt, cycles + fine-tuning"),
    ("ViT-B/16 (SWAG)", 85.30, [(27.8, 85.82), (30.6, 85.26)], True, "rmt, cycles + fine-tuning"),
    ("ViT-B/16 (timm augreg2)", 85.10, [(29.4, 83.47), (37.7, 80.58), (47.5, 66.80)], False, "rmt, one-shot"),
    ("ViT-L/16 (timm)", 85.84, [(30, 85.05), (39, 84.08), (47.5, 81.49), (55, 74.40)], False, "rmt, cycles"),
]
# the authors' later re-run on ViT-B/16 augreg2, one fine-tune epoch per cycle, both methods in one run
_PAPER_RERUN = {"rmt": [84.55, 82.57, 71.53], "magnitude": [84.46, 81.67, 67.44]}


def paper_vit_results() -> pd.DataFrame:
    """The paper's ImageNet-1k ViT numbers (arXiv 2503.01922) in :data:`SWEEP_COLUMNS` form.

    ``source="paper"``, ``dataset="ImageNet-1k"``; ``target`` and ``sparsity`` are the reported
    parameter reductions (unstructured zeros: ``stored_reduction`` is 0); a fine-tuned result goes in
    ``top1_finetuned``, a one-shot or cycles-only one in ``top1_pruned``. An extra column
    ``setting`` says how each was obtained. Includes the authors' re-run comparing ``rmt`` and
    ``magnitude`` on ViT-B/16 augreg2 at 30/50/70%.
    """
    rows = []
    for name, dense, points, tuned, setting in _PAPER_VIT:
        rows.append(
            dict(
                method="dense",
                model=name,
                top1_dense=dense,
                target=0.0,
                sparsity=0.0,
                top1_pruned=dense,
                top1_finetuned=np.nan,
                setting="dense",
            )
        )
        for reduction, top1 in points:
            rows.append(
                dict(
                    method="rmt",
                    model=name,
                    top1_dense=dense,
                    target=reduction / 100,
                    sparsity=reduction / 100,
                    top1_pruned=np.nan if tuned else top1,
                    top1_finetuned=top1 if tuned else np.nan,
                    setting=setting,
                )
            )
    rerun = "ViT-B/16 (timm augreg2), authors' re-run"
    rows.append(
        dict(
            method="dense",
            model=rerun,
            top1_dense=85.10,
            target=0.0,
            sparsity=0.0,
            top1_pruned=85.10,
            top1_finetuned=np.nan,
            setting="dense",
        )
    )
    for method, values in _PAPER_RERUN.items():
        for level, top1 in zip((0.3, 0.5, 0.7), values):
            rows.append(
                dict(
                    method=method,
                    model=rerun,
                    top1_dense=85.10,
                    target=level,
                    sparsity=level,
                    top1_pruned=np.nan,
                    top1_finetuned=top1,
                    setting="cycles, 1 fine-tune epoch per cycle",
                )
            )
    out = pd.DataFrame(rows)
    out["stored_reduction"] = 0.0
    out["dataset"] = "ImageNet-1k"
    out["source"] = "paper"
    for col in SWEEP_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out[SWEEP_COLUMNS + ["setting"]]
