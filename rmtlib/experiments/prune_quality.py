"""The pruning-quality benchmark: every one-shot method at a few levels, scored against one reference.

One model, one test set, no fine-tuning: each method prunes the dense model to each level (and to
the 2:4 pattern), and its top-1, cross-entropy, KL divergence from the dense model and certified
fraction are measured; its top-1 is tested against the reference's (global magnitude pruning by
default) on the same samples (:func:`rmtlib.experiments.sweep.sweep`). :data:`VARIANTS` names the
runs; a variant whose method or options are not registered in this rmtlib is skipped with a note.
``benchmarks/prune_quality.py`` runs it from the command line and chapter 5 reads its results
(:func:`benchmark_table`, :func:`verdicts`, and the numbers and sentences its prose quotes:
:func:`provenance_line`, :func:`certified_numbers`, :func:`layer_removal`, :func:`verdict_claims`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from rmtlib.errors import InputError
from rmtlib.experiments.sweep import resolve_methods, sweep
from rmtlib.nn.count import count_params, layer_sparsity
from rmtlib.pruning import METHODS, prune
from rmtlib.spectral.layers import prunable_layers
from rmtlib.train.data import load_dataset, make_loader

__all__ = [
    "VARIANTS",
    "DEFAULT_LEVELS",
    "DEFAULT_PATTERNS",
    "REFERENCE",
    "Benchmark",
    "available_variants",
    "pattern_sparsity",
    "run_benchmark",
    "benchmark_table",
    "verdicts",
    "verdict_sentence",
    "overall_verdict",
    "pivot_levels",
    "paper_differences",
    "benchmark_on_data",
    "provenance_line",
    "verdict_list",
    "skipped_list",
    "certified_numbers",
    "layer_removal",
    "layer_removal_numbers",
    "comparison_numbers",
    "CLAIMS",
    "verdict_claims",
]

#: label -> the :func:`rmtlib.prune` options of that run, as alternatives: the first one this rmtlib
#: accepts is used (``rmt_light`` falls back to plain ``rmt``, whose default regularization is the light one)
VARIANTS: dict[str, tuple[dict[str, Any], ...]] = {
    "magnitude_layer": ({"method": "magnitude", "scope": "layer"},),
    "magnitude_global": ({"method": "magnitude", "scope": "global"},),
    "rmt_reference": ({"method": "rmt", "regularization": "reference"},),
    "rmt_light": ({"method": "rmt", "regularization": "light"}, {"method": "rmt"}),
    "rmt_oneshot": ({"method": "rmt_oneshot"},),
    "wanda": ({"method": "wanda"},),
    "sparsegpt": ({"method": "sparsegpt"},),
    "magnitude_mp": ({"method": "magnitude", "allocation": "mp"},),
    "magnitude_alpha": ({"method": "magnitude", "allocation": "alpha"},),
    "wanda_mp": ({"method": "wanda", "allocation": "mp"},),
    "wanda_alpha": ({"method": "wanda", "allocation": "alpha"},),
    "sparsegpt_mp": ({"method": "sparsegpt", "allocation": "mp"},),
    "sparsegpt_alpha": ({"method": "sparsegpt", "allocation": "alpha"},),
    "seb": ({"method": "seb"},),
    "random": ({"method": "random"},),
}
DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)
DEFAULT_PATTERNS: tuple[str, ...] = ("2:4",)
REFERENCE = "magnitude_global"


@dataclass
class Benchmark:
    """A benchmark's rows (the sweep's columns plus ``level``: ``"50%"`` or a pattern) and what was skipped."""

    rows: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: settings, skipped runs with their reasons, and the rows (NaN as null)."""
        rows = self.rows.astype(object).where(self.rows.notna(), None)
        return {**self.settings, "skipped": self.skipped, "rows": rows.to_dict(orient="records")}


def available_variants(
    labels: Sequence[str], *, pattern: str | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """({label: options} this rmtlib can run, {label: why not} for the others), in ``labels``' order.

    With ``pattern`` (``"2:4"``) every variant also passes ``pattern=``; one that the method or
    :func:`rmtlib.prune` does not accept is skipped. An unknown label raises InputError.
    """
    unknown = [label for label in labels if label not in VARIANTS]
    if unknown:
        raise InputError(f"prune_quality: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    runs: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for label in labels:
        reasons = []
        for options in VARIANTS[label]:
            if pattern:  # the pattern sets every layer's sparsity: no scope (a global threshold) with it
                options = {**{k: v for k, v in options.items() if k != "scope"}, "pattern": pattern}
                if options in runs.values():  # magnitude_layer and magnitude_global coincide under a pattern
                    reasons.append(f"the same run as {next(k for k, v in runs.items() if v == options)}")
                    continue
            if options["method"] not in METHODS:
                reasons.append(f"method {options['method']!r} is not registered")
                continue
            try:
                resolve_methods([label], {label: options})
            except InputError as err:
                reasons.append(str(err).removeprefix(f"sweep: {label!r}: "))
                continue
            runs[label] = options
            break
        else:
            skipped[label] = "not available in this rmtlib: " + reasons[0]
    return runs, skipped


def pattern_sparsity(model: nn.Module, pattern: str) -> float:
    """Whole-model sparsity an N:M ``pattern`` (``"2:4"``) reaches when every prunable weight follows it."""
    n, _, m = pattern.partition(":")
    try:
        kept = int(n) / int(m)
    except ValueError:
        raise InputError(f"pattern must be N:M (e.g. 2:4), got {pattern!r}") from None
    if not 0 < kept < 1:
        raise InputError(f"pattern must keep N of M weights with 0 < N < M, got {pattern!r}")
    weights = sum(module.weight.numel() for _, module in prunable_layers(model))
    return (1.0 - kept) * weights / count_params(model)["dense"]


def _level_name(level: float) -> str:
    text = f"{level:.0%}"
    return text if abs(100 * level - round(100 * level)) < 1e-9 else f"{100 * level:.4g}%"


def run_benchmark(
    model: nn.Module,
    *,
    eval_loader: DataLoader,
    calibration_loader: DataLoader | None = None,
    methods: Sequence[str] = tuple(VARIANTS),
    levels: Sequence[float] = DEFAULT_LEVELS,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    reference: str = REFERENCE,
    calibration_seeds: Sequence[int] = (0, 1, 2),
    calibration_samples: int = 128,
    n_boot: int = 2000,
    device: str | torch.device | None = None,
    seed: int = 0,
    model_name: str = "",
    dataset: str = "",
    progress: bool = False,
) -> Benchmark:
    """Run the available ``methods`` (labels of :data:`VARIANTS`) at ``levels`` and ``patterns``.

    The reference runs first at every level; the runs that need calibration data draw it from
    ``calibration_loader`` once per calibration seed. A pattern whose runs this rmtlib refuses is
    skipped with a note (as are unavailable variants), never an error.
    """
    if reference not in methods:
        methods = [reference, *methods]
    runs, skipped = available_variants(methods)
    if reference not in runs:
        raise InputError(f"prune_quality: the reference {reference!r} cannot run: {skipped.get(reference)}")
    start = time.perf_counter()
    common = dict(
        eval_loader=eval_loader,
        calibration_loader=calibration_loader,
        calibration_samples=calibration_samples,
        calibration_seeds=calibration_seeds,
        n_boot=n_boot,
        device=device,
        seed=seed,
        model_name=model_name,
        dataset=dataset,
        progress=progress,
    )
    tables = []
    if levels:
        table = sweep(model, list(runs), list(levels), method_options=runs, reference=reference, **common)
        tables.append(
            table.assign(
                level=[_level_name(t) if m != "dense" else "dense" for m, t in zip(table.method, table.target)]
            )
        )
    for pattern in patterns:
        # the reference first, so a run that coincides with it under the pattern is the one skipped
        order = [reference, *(label for label in runs if label != reference)]
        pattern_runs, pattern_skipped = available_variants(order, pattern=pattern)
        if reference not in pattern_runs:
            skipped[pattern] = f"not run: the reference cannot ({pattern_skipped[reference]})"
            continue
        skipped.update({f"{label} @ {pattern}": why for label, why in pattern_skipped.items()})
        m = int(pattern.partition(":")[2])
        misfits = [name for name, layer in prunable_layers(model) if layer.weight[0].numel() % m]
        if misfits:  # e.g. a 7 x 7 patch embedding (49 inputs): left dense, and said so
            skipped[f"{pattern}: layers left dense"] = f"input size not a multiple of {m}: {', '.join(misfits)}"
            pattern_runs = {label: {**options, "exclude": misfits} for label, options in pattern_runs.items()}
        try:
            table = sweep(
                model, list(pattern_runs), [pattern_sparsity(model, pattern)], method_options=pattern_runs,
                reference=reference, **common,
            )  # fmt: skip
        except InputError as err:  # the pattern is registered but refuses this model or a sparsity target
            skipped[pattern] = f"not run: {err}"
            continue
        table = table[table.method != "dense"] if tables else table
        tables.append(table.assign(level=[pattern if m != "dense" else "dense" for m in table.method]))
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    settings = {
        "model": model_name,
        "dataset": dataset,
        "samples": int(len(eval_loader.dataset)),
        "reference": reference,
        "levels": [float(level) for level in levels],
        "patterns": list(patterns),
        "methods": list(methods),
        "options": runs,
        "calibration_seeds": [int(s) for s in calibration_seeds],
        "calibration_samples": int(calibration_samples),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "fine_tuning": "none",
        "seconds": time.perf_counter() - start,
    }
    return Benchmark(rows=rows, skipped=skipped, settings=settings)


def benchmark_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of a benchmark JSON (:meth:`Benchmark.to_json`) with ``drop_pp``: dense top-1 minus top-1."""
    rows = pd.DataFrame(result["rows"])
    if rows.empty:
        raise InputError("prune_quality: the benchmark has no rows")
    rows = rows.astype(
        {c: float for c in ("top1_pruned", "top1_dense", "diff_pp", "ci_low_pp", "ci_high_pp", "p_value")}
    )
    return rows.assign(drop_pp=rows["top1_dense"] - rows["top1_pruned"])


def verdicts(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Per level: the reference, the most accurate other method and its top-1 difference from the
    reference (pp, bootstrap interval, McNemar p-value); ``winner`` is that method when it is
    significantly ahead at ``alpha``, the reference when it is significantly behind, else ``"tie"``."""
    runs = table[table["method"] != "dense"]
    out = []
    for level, group in runs.groupby("level", sort=False):
        reference = str(group["reference"].dropna().iloc[0])
        ref = group[group["method"] == reference].iloc[0]
        others = group[group["method"] != reference]
        if others.empty:
            continue
        best = others.loc[others["top1_pruned"].idxmax()]
        significant = bool(best["p_value"] < alpha)
        winner = "tie" if not significant else (best["method"] if best["diff_pp"] > 0 else reference)
        out.append(
            dict(
                level=level,
                sparsity=float(best["sparsity"]),
                dense_top1=float(best["top1_dense"]),
                reference=reference,
                reference_top1=float(ref["top1_pruned"]),
                best_other=best["method"],
                best_other_top1=float(best["top1_pruned"]),
                diff_pp=float(best["diff_pp"]),
                ci_low_pp=float(best["ci_low_pp"]),
                ci_high_pp=float(best["ci_high_pp"]),
                p_value=float(best["p_value"]),
                winner=winner,
                methods=int(len(group)),
            )
        )
    return pd.DataFrame(out)


def _p_text(p: float) -> str:
    """``= 0.012``, or ``< 1e-15`` where the binomial tail is below double precision's resolution."""
    return f"= {p:.2g}" if p >= 1e-15 else "< 1e-15"


def verdict_sentence(row: Mapping[str, Any], *, alpha: float = 0.05) -> str:
    """One plain sentence (Markdown) for one row of :func:`verdicts`."""
    best, ref = f"`{row['best_other']}`", f"`{row['reference']}`"
    numbers = (
        f"{row['best_other_top1']:.2f}% against {row['reference_top1']:.2f}% "
        f"({row['diff_pp']:+.2f} pp, 95% interval [{row['ci_low_pp']:+.2f}, {row['ci_high_pp']:+.2f}], "
        f"McNemar p {_p_text(row['p_value'])})"
    )
    head = f"**{row['level']}** (dense {row['dense_top1']:.2f}%): "
    if row["winner"] == row["best_other"]:
        return head + f"{best} wins: {numbers}."
    if row["winner"] == row["reference"]:
        return head + f"{ref} wins; the best other method, {best}, is behind it: {numbers}."
    return head + f"no method is distinguishable from {ref} at p < {alpha:g}; the best other, {best}, scores {numbers}."


def pivot_levels(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """``value`` per method (rows, in run order) and level (columns, in run order) of benchmark rows."""
    runs = table[table["method"] != "dense"]
    out = runs.pivot(index="method", columns="level", values=value)
    return out.loc[list(dict.fromkeys(runs["method"])), list(dict.fromkeys(runs["level"]))]


# (source, model, fine-tuning, method, level, top-1, magnitude's top-1 in the same run, difference in pp)
# -- METHOD.md sections 6-8 (arXiv 2503.01922 and its 2026 successor, arXiv 2606.02608)
_RERUN = "ViT-B/16 augreg2 (dense 85.10-85.11)"
_PAPER_DIFFERENCES = [
    *[
        ("authors' re-run (2025 method)", _RERUN, "1 epoch per cycle", "rmt", lv, top1, mag)
        for lv, top1, mag in [("30%", 84.55, 84.46), ("50%", 82.57, 81.67), ("70%", 71.53, 67.44)]
    ],
    *[
        ("2026 successor", _RERUN, "1 epoch per cycle", method, lv, top1, mag)
        for method, values in {"ser": (84.55, 83.27, 77.94), "hybrid": (84.64, 83.37, 78.01)}.items()
        for lv, top1, mag in zip(("30%", "50%", "70%"), values, (84.46, 81.67, 67.44))
    ],
    *[
        ("2026 successor", "ViT-B/16", "none", "seb", lv, float("nan"), float("nan"), diff)
        for lv, diff in [("50%", 1.9), ("55%", 4.3), ("60%", 15.2), ("65%", 29.0), ("70%", 5.3)]
    ],
    ("field baselines (one-shot)", "ViT-B/16", "none", "wanda", "50%", 81.3, float("nan")),
    ("field baselines (one-shot)", "ViT-B/16", "none", "sparsegpt", "50%", 81.1, float("nan")),
    ("field baselines (one-shot)", "ViT-B/16", "none", "sparsegpt", "2:4", 79.75, 53.91),
    ("field baselines (one-shot)", "ViT-B/16", "none", "wanda", "2:4", 67.38, 53.91),
]


def paper_differences() -> pd.DataFrame:
    """The published ImageNet numbers set against magnitude pruning (not ours; METHOD.md sections 6-8).

    Columns: source, model, fine_tuning, method, level, top1, magnitude_top1 (magnitude pruning in
    the same run) and diff_pp (top1 - magnitude_top1, or the reported difference when only that is
    given, as for SEB). NaN where the source gives no number.
    """
    rows = []
    for source, model, tuning, method, level, top1, magnitude, *diff in _PAPER_DIFFERENCES:
        rows.append(
            dict(
                source=source,
                model=model,
                fine_tuning=tuning,
                method=method,
                level=level,
                top1=top1,
                magnitude_top1=magnitude,
                diff_pp=diff[0] if diff else round(top1 - magnitude, 2),
            )
        )
    return pd.DataFrame(rows)


def overall_verdict(verdict: pd.DataFrame) -> str:
    """One sentence (Markdown) summing up :func:`verdicts` over the levels: who won where."""
    if verdict.empty:
        return "No level had a method to compare with the reference."
    reference = f"`{verdict['reference'].iloc[0]}`"
    parts = []
    for name, group in verdict.groupby("winner", sort=False):
        levels = ", ".join(group["level"])
        if name == "tie":
            parts.append(f"no method is distinguishable from {reference} at {levels}")
        elif name == verdict["reference"].iloc[0]:
            parts.append(f"{reference} is significantly ahead of the best other method at {levels}")
        else:
            gains = ", ".join(f"{d:+.2f} pp" for d in group["diff_pp"])
            parts.append(f"`{name}` beats {reference} at {levels} ({gains})")
    return "Over the " + f"{len(verdict)} levels: " + "; ".join(parts) + "."


# ---------------------------------------------------------------------------------------------
# what chapter 5 reads from a benchmark


def benchmark_on_data(
    model: nn.Module,
    *,
    data: str,
    eval_split: str = "test",
    batch_size: int = 500,
    num_workers: int = 0,
    eval_samples: int | None = None,
    model_name: str = "",
    **options: Any,
) -> Benchmark:
    """:func:`run_benchmark` on a data spec (``"mnist"``, ``"imagefolder:/path"``): scored on
    ``eval_split`` (its first ``eval_samples`` images), calibrated on ``train``; ``options`` go to
    :func:`run_benchmark` (methods, levels, patterns, reference, calibration_seeds, n_boot, device, seed)."""
    eval_set = load_dataset(data, eval_split, model=model)
    eval_loader = make_loader(eval_set, batch_size, subset=eval_samples, num_workers=num_workers)
    calibration_loader = make_loader(load_dataset(data, "train", model=model), batch_size, num_workers=num_workers)
    return run_benchmark(
        model, eval_loader=eval_loader, calibration_loader=calibration_loader, model_name=model_name,
        dataset=f"{data} [{eval_split}] ({len(eval_loader.dataset):,} images)", **options,
    )  # fmt: skip


def provenance_line(record: Mapping[str, Any], source: str | None = None) -> str:
    """One line (Markdown) saying what was measured where: ``source`` is the JSON file the record was
    read from, None when the notebook ran it."""
    where = f"{record['model']} on {record['dataset']}, {record['machine']} ({record['device']}); "
    if source is None:
        return where + "run by this notebook"
    return where + f"read from `{source}` ({record.get('date', 'undated')}, made by `{record['command']}`)"


def verdict_list(verdict: pd.DataFrame) -> str:
    """:func:`verdict_sentence` of every level as a Markdown list."""
    return "\n".join(f"- {verdict_sentence(row)}" for _, row in verdict.iterrows())


def skipped_list(skipped: Mapping[str, str]) -> str:
    """The runs a benchmark skipped, with the reasons, as a Markdown list (``- none`` when none was)."""
    return "\n".join(f"- `{label}`: {why}" for label, why in skipped.items()) or "- none"


def certified_numbers(certified: pd.DataFrame, reference: str) -> dict[str, Any]:
    """The certified fraction at the highest percent level: the reference's and the best other method's.

    ``certified`` is :func:`pivot_levels` of ``"certified"``. Keys: ``cert_level`` (Markdown), ``cert_ref``,
    ``cert_best_label`` (Markdown), ``cert_best``.
    """
    percents = [level for level in certified.columns if level.endswith("%")]
    top_level = percents[-1] if percents else list(certified.columns)[-1]
    best = certified[top_level].drop(index=reference).idxmax()
    return {
        "cert_level": top_level,
        "cert_ref": float(certified.loc[reference, top_level]),
        "cert_best_label": f"`{best}` (the highest of the other methods)",
        "cert_best": float(certified.loc[best, top_level]),
    }


def layer_removal(
    model: nn.Module, options: Mapping[str, Mapping[str, Any]], sparsity: float, *, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Where each data-free run of a benchmark puts its budget: {label: :func:`~rmtlib.nn.count.layer_sparsity`}.

    ``options`` is the benchmark's ``{label: prune options}``; each is pruned once more at ``sparsity``
    without the MP fit's extras (``fit=False``). Runs that need calibration data are left out, and so
    are ``rmt`` (its cycles take minutes on a CPU) and ``random`` (it splits its budget as per-layer
    magnitude pruning does).
    """
    shares = {}
    for label, run in options.items():
        run = dict(run)
        method = run.pop("method")
        if METHODS[method].needs_calibration or method in ("rmt", "random"):
            continue
        pruned = prune(model, method, sparsity=sparsity, seed=seed, fit=False, **run).model
        shares[label] = layer_sparsity(pruned)
    return shares


def layer_removal_numbers(shares: Mapping[str, pd.DataFrame], sparsity: float) -> dict[str, Any]:
    """The first layer's removed fraction under per-layer and global magnitude pruning (NaN when not run).

    Keys: ``split_level`` (Markdown, e.g. ``80%``), ``embed_layer``, ``embed_global``. The first layer
    is the model's first prunable one (``patch_embed.proj`` in a timm ViT).
    """
    if not shares:
        raise InputError("layer_removal_numbers: no data-free run to read")
    first = next(iter(shares.values()))["layer"].iloc[0]
    embed = {label: float(t.set_index("layer").loc[first, "sparsity"]) for label, t in shares.items()}
    return {
        "split_level": f"{sparsity:.0%}",
        "embed_layer": embed.get("magnitude_layer", float("nan")),
        "embed_global": embed.get("magnitude_global", float("nan")),
    }


def comparison_numbers(table: pd.DataFrame, paper: pd.DataFrame) -> dict[str, Any]:
    """The authors' re-run of ``rmt`` at 50% (``paper_rmt_50``, pp ahead of magnitude pruning) and this
    run's ``rmt_light`` against the reference (``ours_rmt_50``, Markdown: difference and McNemar p)."""
    diff, pvals = pivot_levels(table, "diff_pp"), pivot_levels(table, "p_value")
    ours = (
        f"{diff.loc['rmt_light', '50%']:+.2f} pp (McNemar p = {pvals.loc['rmt_light', '50%']:.2g})"
        if "rmt_light" in diff.index and "50%" in diff.columns
        else "not measured in this run"
    )
    return {
        "paper_rmt_50": float(paper.query("method == 'rmt' and level == '50%'")["diff_pp"].iloc[0]),
        "ours_rmt_50": ours,
    }


#: (benchmark label, claim, the published number) of the introduction's verdict table
CLAIMS: tuple[tuple[str, str, str], ...] = (
    (
        "rmt_reference",
        "The paper's MP-guided cycles keep more top-1 than magnitude pruning",
        "+0.90 / +4.09 pp vs magnitude at 50 / 70% (authors' re-run, ViT-B/16, fine-tuned)",
    ),
    (
        "seb",
        "The 2026 spectral-edge budgets (SEB) beat magnitude pruning without fine-tuning",
        "+1.9 / +5.3 pp vs magnitude at 50 / 70% (ViT-B/16, 2606.02608)",
    ),
)


def verdict_claims(table: pd.DataFrame, *, reference: str, model: str) -> list[dict[str, str]]:
    """The introduction's verdict rows of :data:`CLAIMS`: each run's difference from ``reference`` at 50
    and 70% with McNemar's p; "reproduced" only when ahead at both levels with p < 0.05."""
    diff, pvals = pivot_levels(table, "diff_pp"), pivot_levels(table, "p_value")
    rows = []
    for label, claim, paper_text in CLAIMS:
        if label not in diff.index or not {"50%", "70%"} <= set(diff.columns):
            rows.append({"claim": claim, "paper": paper_text, "measured": "not measured in this run", "verdict": "-"})
            continue
        d, p = diff.loc[label, ["50%", "70%"]], pvals.loc[label, ["50%", "70%"]]
        behind, ahead = [(x < 0) & (q < 0.05) for x, q in zip(d, p)], [(x > 0) & (q < 0.05) for x, q in zip(d, p)]
        word = (
            "reproduced (ahead)"
            if all(ahead)
            else "not reproduced (behind)"
            if any(behind)
            else "partly (ahead at one level)"
            if any(ahead)
            else "not reproduced (no difference)"
        )
        rows.append(
            {
                "claim": claim,
                "paper": paper_text,
                "measured": f"{d.iloc[0]:+.2f} / {d.iloc[1]:+.2f} pp vs {reference} at 50 / 70% "
                f"(p = {p.iloc[0]:.2g} / {p.iloc[1]:.2g}; {model}, no fine-tuning)",
                "verdict": word,
            }
        )
    return rows


def _seed_runs(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["method"] != "dense") & (table["calibration_seeds"].fillna(0).astype(int) > 1)]


def has_seed_runs(table: pd.DataFrame) -> bool:
    """Whether a :func:`benchmark_table` holds a run made with more than one calibration draw."""
    return not _seed_runs(table).empty


NO_SEED_TEXT = (
    "This run used one calibration draw, so it cannot say how much the draw matters: re-run it with "
    "several `calibration_seeds` (the committed MNIST ViT's three-draw run is read when the chapter does not "
    "re-run the benchmark)."
)
"""What chapter 5 shows in place of :func:`seed_spread_text` when no run had several draws."""


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """How far the calibration draw moves each data-dependent run: per method and level (rows of a
    :func:`benchmark_table` run with several ``calibration_seeds``), top-1 of the draw that was tested
    (the first seed), the lowest and highest top-1 over all draws, the reference's top-1 and ``side``:
    ``"above"`` / ``"below"`` when every draw scored above / below the reference, else ``"both"``.
    ``tested_is_worst``: the tested draw is the lowest, so its McNemar test holds for every draw."""
    runs = _seed_runs(table)
    if runs.empty:
        raise InputError("prune_quality: no run of this benchmark used more than one calibration seed")
    rows = []
    for _, run in runs.iterrows():
        level = table[(table["level"] == run["level"]) & (table["method"] == run["reference"])]
        reference_top1 = float(level["top1_pruned"].iloc[0]) if not level.empty else float("nan")
        low, high = float(run["top1_seed_min"]), float(run["top1_seed_max"])
        side = "above" if low > reference_top1 else "below" if high < reference_top1 else "both"
        rows.append(
            dict(
                method=run["method"],
                level=run["level"],
                seeds=int(run["calibration_seeds"]),
                top1_tested=float(run["top1_pruned"]),
                top1_min=low,
                top1_max=high,
                range_pp=high - low,
                reference=run["reference"],
                reference_top1=reference_top1,
                side=side,
                tested_is_worst=bool(float(run["top1_pruned"]) <= low),
                p_value=float(run["p_value"]),
            )
        )
    return pd.DataFrame(rows)


def seed_spread_text(spread: pd.DataFrame, provenance: str, *, alpha: float = 0.05) -> str:
    """Chapter 5's paragraph (Markdown) on the calibration draws of :func:`seed_spread`: how many runs have
    every draw on one side of the reference, the widest spread, and whether each significant win over the
    reference holds for every draw; ``provenance`` (:func:`provenance_line`) ends it."""
    widest = spread.loc[spread["range_pp"].idxmax()]
    wins = spread[(spread["p_value"] < alpha) & (spread["top1_tested"] > spread["reference_top1"])]
    sentences = []
    for _, row in wins.iterrows():
        holds = (
            "the tested draw is the lowest of them, so the others are further ahead"
            if row["tested_is_worst"]
            else "every draw scores above the reference, though only the first was tested"
            if row["side"] == "above"
            else "another draw scores at or below the reference: the win depends on the draw"
        )
        sentences.append(
            f"`{row['method']}` at {row['level']}: {row['top1_min']:.2f}-{row['top1_max']:.2f}% over "
            f"{row['seeds']} draws against `{row['reference']}`'s {row['reference_top1']:.2f}%; {holds}"
        )
    methods = ", ".join(f"`{m}`" for m in dict.fromkeys(spread["method"]))
    return (
        f"The table below re-runs {methods} with {int(spread['seeds'].max())} draws at every level, against "
        f"the same reference: in {int((spread['side'] != 'both').sum())} of the {len(spread)} method-level pairs "
        f"every draw falls on the same side of the reference, and the widest spread is `{widest['method']}` "
        f"at {widest['level']}, {widest['top1_min']:.2f}-{widest['top1_max']:.2f}% ({widest['range_pp']:.2f} pp). "
        "Significant wins over the reference: "
        + ("; ".join(sentences) + "." if sentences else "none.")
        + f" Provenance: {provenance}."
    )
