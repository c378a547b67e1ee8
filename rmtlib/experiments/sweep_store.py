"""A sweep's results on disk, so an interrupted sweep resumes from Python, a notebook or the command line.

A :class:`SweepStore` holds the table :func:`rmtlib.experiments.sweep.sweep` returns (CSV, rewritten
after every run), beside it ``TABLE.settings.json``, the settings that shape the rows but have no
column (the MP fit, each label's options, the seed, fine-tuning's learning rate, ...), and, when it
has a models folder, every pruned model as ``LABEL_LEVEL.safetensors`` (a gradual sweep restarts
from its last stage). Every file is written atomically (:mod:`rmtlib.atomic`).
:meth:`SweepStore.prepare` compares a sweep's :class:`SweepConfig` with what the store holds and says
what is left to run, or why the store cannot be resumed. ``sweep(..., store="dir", resume=True)``
uses :meth:`SweepStore.folder`; ``rmtlib sweep --out T --save-dir D`` is ``SweepStore(T, models=D)``,
so the command and Python read and write the same files.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
from torch import nn

from rmtlib.atomic import write_or_rescue, write_text_atomic
from rmtlib.errors import InputError
from rmtlib.nn.checkpoints import load_checkpoint, save_checkpoint
from rmtlib.spectral.fit_config import DEFAULT_FIT_CONFIG, check_fit_config, with_fit_config

__all__ = [
    "SWEEP_COLUMNS",
    "STATS_COLUMNS",
    "RESUME_TOP1_TOLERANCE",
    "SweepConfig",
    "ResumePlan",
    "SweepStore",
    "sweep_config",
    "level_text",
]

SWEEP_COLUMNS = [
    "method",
    "target",
    "sparsity",
    "stored_reduction",
    "params_dense",
    "params_stored",
    "params_nonzero",
    "top1_dense",
    "top1_pruned",
    "top1_finetuned",
    "finetune_epochs",
    "finetune_steps",
    "schedule",
    "macs",
    "macs_dense",
    "prune_s",
    "finetune_s",
    "model",
    "dataset",
    "source",
    "ce",
    "kl_to_dense",
    "certified",
    "drop_low_pp",
    "drop_high_pp",
    "reference",
    "diff_pp",
    "ci_low_pp",
    "ci_high_pp",
    "p_value",
    "calibration_seeds",
    "top1_seed_min",
    "top1_seed_max",
]
#: the columns added with the per-sample statistics; a table written before them lacks only these
STATS_COLUMNS = SWEEP_COLUMNS[SWEEP_COLUMNS.index("ce") :]

#: how far a resumed run's dense top-1 may be from the table's, in percentage points (a GPU's or
#: another device's round-off can flip an image)
RESUME_TOP1_TOLERANCE = 0.05
#: the names :meth:`SweepStore.folder` gives the table and the models folder
TABLE_FILE = "sweep.csv"
MODELS_FOLDER = "models"

#: what a table's rows were made with when the settings record does not say (the defaults of sweep)
_DEFAULT_CALIBRATION_SEEDS, _DEFAULT_CALIBRATION_SAMPLES = [0], 128

Describe = Callable[[str, float, Any], Mapping[str, Any]]


def level_text(level: float) -> str:
    """A level as a short, unique text: two decimals (``0.30``) when they are exact, else every digit
    (``0.125``), so two levels never share a file name or a table column."""
    text = f"{level:.2f}"
    return text if float(text) == round(float(level), 12) else repr(float(level))


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep's rows depend on, as a store records it and a resume must match it.

    ``labels`` and ``levels`` say what to run (a resume may add either). ``model``, ``dataset``,
    ``schedule`` and the fine-tuning length (``finetune_epochs`` 0 without fine-tuning, 1 with
    ``finetune_steps``) are columns of the table; ``settings`` (JSON-ready) is the record written
    beside it: every other setting that changes the rows, ``options`` per label. Build it with
    :func:`sweep_config`.
    """

    labels: tuple[str, ...]
    levels: tuple[float, ...]
    schedule: str
    model: str
    dataset: str
    finetune_epochs: int
    finetune_steps: int | None
    reference: str | None
    settings: Mapping[str, Any]


def sweep_config(
    methods: Sequence[str],
    levels: Sequence[float],
    *,
    schedule: str = "oneshot",
    model_name: str = "",
    dataset: str = "",
    finetune: bool = False,
    finetune_epochs: int = 0,
    finetune_steps: int | None = None,
    finetune_lr: float = 1e-4,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    prune_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_batches: int | None = None,
    reference: str | None = None,
    n_boot: int = 2000,
    calibration_seeds: Sequence[int] = (0,),
    calibration_samples: int = 128,
    context: Mapping[str, Any] | None = None,
) -> SweepConfig:
    """The :class:`SweepConfig` of a :func:`~rmtlib.experiments.sweep.sweep` call with these keywords
    (``finetune``: whether it fine-tunes, i.e. has a fine-tuning loader and a budget).

    ``context`` adds what the sweep cannot see but its rows depend on (the command line records the
    model's ``--set`` arguments, batch sizes, the evaluation split, ...). The reference and the
    calibration draw are recorded only when set, so a record written before they existed still matches.
    """
    options = dict(prune_options or {})  # the fit settings as one dict, the defaults' when not given
    fit_config = check_fit_config(options.pop("fit_config", DEFAULT_FIT_CONFIG), "prune_options: fit_config")
    settings: dict[str, Any] = {
        **options,
        "fit_config": fit_config.to_dict(),
        "seed": seed,
        "options": dict(method_options or {}),
        "finetune_lr": finetune_lr,
        "eval_batches": eval_batches,
    }
    if reference is not None:
        settings.update(reference=reference, n_boot=n_boot)
    seeds = [int(s) for s in calibration_seeds]
    if seeds != _DEFAULT_CALIBRATION_SEEDS or calibration_samples != _DEFAULT_CALIBRATION_SAMPLES:
        settings.update(calibration_seeds=seeds, calibration_samples=calibration_samples)
    clash = sorted(set(context or {}) & set(settings))
    if clash:
        raise InputError(f"sweep store: context keys {clash} are settings the sweep records itself")
    settings.update(context or {})
    return SweepConfig(
        labels=tuple(methods),
        levels=tuple(float(level) for level in levels),
        schedule=schedule,
        model=model_name,
        dataset=dataset,
        finetune_epochs=(1 if finetune_steps else int(finetune_epochs)) if finetune else 0,
        finetune_steps=int(finetune_steps) if finetune and finetune_steps else None,
        reference=reference,
        settings=json.loads(json.dumps(settings, default=str)),  # the form it has when read back
    )


@dataclass(frozen=True, eq=False)
class ResumePlan:
    """What :meth:`SweepStore.prepare` found: the rows already there (``previous``; None: a fresh
    sweep), what is left (``todo``: label -> (the stage a gradual label restarts from or None, the
    levels to run)) and the per-label options the record holds (kept when it is written again)."""

    previous: pd.DataFrame | None
    todo: dict[str, tuple[float | None, list[float]]]
    options: dict[str, Any]


def _with_calibration_count(recorded: dict[str, Any]) -> dict[str, Any]:
    """A record with the calibration draw's real size. ``rmtlib sweep --calibration DATA:COUNT`` draws COUNT
    images, but its records written before the store recorded ``--calibration-samples`` instead (and left
    it out at its default); the count in ``calibration`` is what those runs drew."""
    spec = recorded.get("calibration")
    _, sep, count = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not (sep and count.isdigit()):
        return recorded
    out = {**recorded, "calibration_samples": int(count)}
    out.setdefault("calibration_seeds", list(_DEFAULT_CALIBRATION_SEEDS))
    if out["calibration_seeds"] == _DEFAULT_CALIBRATION_SEEDS and int(count) == _DEFAULT_CALIBRATION_SAMPLES:
        del out["calibration_seeds"], out["calibration_samples"]  # the defaults are not recorded
    return out


class SweepStore:
    """A sweep's table (``table``, CSV), its settings record beside it and, with ``models``, a folder
    holding each pruned model; either may be None (no table: models only).

    ``context``: settings recorded beside the table besides those of :func:`sweep_config` (what
    identifies the model and data beyond the table's columns). ``describe(label, level, result)``, with the
    run's :class:`~rmtlib.pruning.PruneResult`: the metadata a pruned model is saved with (default: label,
    method, options, target, schedule, seed).
    """

    def __init__(
        self,
        table: str | os.PathLike | None,
        *,
        models: str | os.PathLike | None = None,
        context: Mapping[str, Any] | None = None,
        describe: Describe | None = None,
    ):
        if table is None and models is None:
            raise InputError("SweepStore: give a table, a models folder, or both")
        self.table = None if table is None else Path(table)
        self.models = None if models is None else Path(models)
        self.context = dict(context or {})
        self.describe = describe
        self._prepared: tuple[Any, ...] | None = None

    @classmethod
    def folder(
        cls, path: str | os.PathLike, *, save_models: bool = True, context: Mapping[str, Any] | None = None
    ) -> SweepStore:
        """The store in folder ``path``: ``sweep.csv`` with its record and, with ``save_models``, every
        pruned model in ``models/`` (a gradual sweep needs them to resume)."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise InputError(f"sweep store: {folder} is a file, not a folder")
        return cls(folder / TABLE_FILE, models=folder / MODELS_FOLDER if save_models else None, context=context)

    @classmethod
    def open(cls, store: SweepStore | str | os.PathLike) -> SweepStore:
        """``store`` itself, or the store in the folder it names (:meth:`folder`)."""
        if isinstance(store, SweepStore):
            return store
        if isinstance(store, (str, os.PathLike)):
            return cls.folder(store)
        raise InputError(f"sweep: store must be a SweepStore or a folder, got {type(store).__name__}")

    def __repr__(self) -> str:
        return f"SweepStore(table={self.table}, models={self.models})"

    @property
    def settings_path(self) -> Path | None:
        """The settings record beside the table: ``TABLE.settings.json``."""
        return None if self.table is None else self.table.with_name(self.table.name + ".settings.json")

    def model_path(self, label: str, level: float) -> Path:
        """Where the model of ``label`` at ``level`` is saved: ``MODELS/LABEL_LEVEL.safetensors``."""
        return (self.models or Path(".")) / f"{label}_{level_text(level)}.safetensors"

    def exists(self) -> bool:
        """Whether the store holds a table."""
        return self.table is not None and self.table.exists()

    def read(self) -> pd.DataFrame:
        """The table, checked to be a sweep's (columns and dense row), in :data:`SWEEP_COLUMNS`; a table
        written before the per-sample statistics has them empty."""
        return self._read()[0]

    def _read(self) -> tuple[pd.DataFrame, bool]:
        try:
            previous = pd.read_csv(self.table)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise InputError(f"{self.table} is not a sweep table ({err})") from None
        missing = [c for c in SWEEP_COLUMNS if c not in previous.columns]
        extra = set(previous.columns) - set(SWEEP_COLUMNS)
        if set(missing) - set(STATS_COLUMNS) or extra or not (previous["method"] == "dense").any():
            raise InputError(f"{self.table} is not a table written by rmtlib sweep (columns or dense row missing)")
        return previous.reindex(columns=SWEEP_COLUMNS), bool(missing)

    def prepare(self, config: SweepConfig, *, resume: bool = False) -> ResumePlan:
        """Check ``config`` against the store and say what is left to run (:class:`ResumePlan`).

        Without ``resume`` an existing table is refused (a repeated call cannot replace finished
        results; :meth:`clear` starts again). With it, the table must come from the same kind of sweep
        (its columns: model, dataset, schedule, fine-tuning length) made with the same settings (the
        record; options compared for the labels it has rows of, so a resume may add a label), and a
        gradual label restarts from its last finished stage, which must be in the models folder.
        :class:`InputError` names the file and the setting that differs. A table without a record
        (written before records existed) is resumed with a warning. The answer is kept until the
        store's files change, so a caller may check early and the sweep find the same plan.
        """
        stamp = (config, bool(resume), self._stamp())
        if self._prepared is not None and self._prepared[:3] == stamp:
            return self._prepared[3]
        plan = self._plan(config, resume)
        self._prepared = (*stamp, plan)
        return plan

    def _stamp(self) -> tuple[Any, ...]:
        """When and how large the table and its record are (a plan kept across a change is stale)."""
        out: list[Any] = []
        for path in (self.table, self.settings_path):
            try:
                stat = path.stat() if path is not None else None
            except OSError:
                stat = None
            out.append(None if stat is None else (stat.st_mtime_ns, stat.st_size))
        return tuple(out)

    def _plan(self, config: SweepConfig, resume: bool) -> ResumePlan:
        if self.table is None:
            if resume:
                raise InputError("sweep store: resuming needs a table; this store keeps models only")
            return ResumePlan(None, {}, {})
        if not self.table.exists():
            return ResumePlan(None, {}, {})
        if not resume:
            raise InputError(
                f"sweep store: {self.table} exists; resume to finish that sweep, or clear the store to start again"
            )
        previous, old = self._read()
        if old and config.reference is not None:
            raise InputError(
                f"{self.table} was written before sweeps compared runs with a reference; "
                "resume it without a reference, or start another store"
            )
        self._check_columns(previous, config)
        options = self._check_settings(previous, config)
        todo = self._remaining(previous, config)
        if todo and config.reference is not None and config.schedule == "gradual":
            raise InputError(
                f"{self.table}: a gradual sweep with a reference cannot be resumed (the reference's stages "
                "would have to be rebuilt beside each label's); start another store, or resume without the reference"
            )
        for label, (start, _) in todo.items():
            if start is not None and (self.models is None or not self.model_path(label, start).is_file()):
                where = "" if self.models else " (this store keeps no models: give it a models folder, --save-dir)"
                raise InputError(
                    f"{label} restarts a gradual sweep after its {start:.2f} stage, which needs that model: "
                    f"{self.model_path(label, start)}{where}"
                )
        return ResumePlan(previous, todo, options)

    def _check_columns(self, previous: pd.DataFrame, config: SweepConfig) -> None:
        """The settings the table has columns for: model, dataset, schedule, fine-tuning length."""
        want = {
            "model": config.model,
            "dataset": config.dataset,
            "schedule": config.schedule,
            "finetune_epochs": config.finetune_epochs,
        }
        runs = previous[previous["method"] != "dense"]
        for column, value in want.items():
            values = previous[column] if column in ("model", "dataset", "schedule") else runs[column]
            found = {"" if pd.isna(v) else v for v in values}  # an empty name reads back from CSV as NaN
            if found and found != {value}:
                raise InputError(
                    f"{self.table} was made with {column}={sorted(map(str, found))}, this run asks "
                    f"{value}; resume with the same settings, or start another store"
                )
        steps = {None if pd.isna(v) else int(v) for v in runs["finetune_steps"]}
        if steps and steps != {config.finetune_steps}:
            raise InputError(
                f"{self.table} was made with finetune_steps={sorted(map(str, steps))}, this run asks "
                f"{config.finetune_steps}; resume with the same settings, or start another store"
            )

    def _check_settings(self, previous: pd.DataFrame, config: SweepConfig) -> dict[str, Any]:
        """Refuse a table made with other settings (its record); returns the record's options."""
        path = self.settings_path
        if not path.is_file():
            warnings.warn(
                f"{path} is missing, so only the model, data, schedule, fine-tuning length and dense model are checked",
                stacklevel=4,
            )
            return {}
        try:
            recorded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path} is not a settings record ({err}); remove it to resume anyway") from None
        if not isinstance(recorded, dict):
            raise InputError(f"{path} is not a settings record (a JSON object); remove it to resume anyway")
        recorded = _with_calibration_count(recorded)
        # older records: the fit settings as loose alpha, beta, ... keys, or none (the defaults)
        recorded = with_fit_config(recorded, source=str(path), default=DEFAULT_FIT_CONFIG)
        wanted = config.settings
        differ = [
            f"{key}: table {recorded.get(key)!r}, this run {wanted.get(key)!r}"
            for key in sorted(set(wanted) | set(recorded))
            if key != "options" and recorded.get(key) != wanted.get(key)
        ]
        recorded_options = recorded.get("options") or {}
        for label in sorted(set(previous["method"]) - {"dense"}):
            if recorded_options.get(label, {}) != wanted["options"].get(label, {}):
                differ.append(
                    f"options of {label}: table {recorded_options.get(label, {})!r}, "
                    f"this run {wanted['options'].get(label, {})!r}"
                )
        if differ:
            raise InputError(
                f"{self.table} was made with other settings ({'; '.join(differ)}); resume with the same "
                "settings, or start another store"
            )
        return recorded_options

    def _remaining(self, previous: pd.DataFrame, config: SweepConfig) -> dict[str, tuple[float | None, list[float]]]:
        """label -> (stage it restarts from or None, levels to run). One-shot runs are independent, so
        any missing (label, level) is run; a gradual sweep goes through its levels in increasing order,
        so the finished ones must be the lowest, and it restarts from the highest of them."""
        done = {(row.method, round(float(row.target), 9)) for row in previous.itertuples() if row.method != "dense"}
        todo: dict[str, tuple[float | None, list[float]]] = {}
        for label in config.labels:
            if config.schedule == "gradual":
                ordered = sorted(config.levels)
                finished = [level for level in ordered if (label, round(level, 9)) in done]
                if finished != ordered[: len(finished)]:
                    raise InputError(
                        f"{self.table} has {label} at {finished} but not all the lower levels of "
                        f"{ordered}; a gradual sweep cannot restart there"
                    )
                levels, start = ordered[len(finished) :], (finished[-1] if finished else None)
            else:
                levels, start = [level for level in config.levels if (label, round(level, 9)) not in done], None
            if levels:
                todo[label] = (start, levels)
        return todo

    def check_dense_model(self, previous: pd.DataFrame, params: int, top1: float) -> None:
        """Refuse to resume with another dense model than the table's (its parameters, and its top-1
        within :data:`RESUME_TOP1_TOLERANCE`): another checkpoint, architecture or evaluation set would
        append rows that cannot be compared with the finished ones."""
        dense = previous[previous["method"] == "dense"].iloc[0]
        if params != int(dense["params_dense"]) or abs(top1 - float(dense["top1_dense"])) > RESUME_TOP1_TOLERANCE:
            raise InputError(
                f"{self.table} was made with a dense model of {int(dense['params_dense']):,} parameters "
                f"and top-1 {float(dense['top1_dense']):.4f}%, this run's has {params:,} and {top1:.4f}%; "
                "resume with the same model, evaluation data and device, or start another store"
            )

    def write(self, table: pd.DataFrame, settings: Mapping[str, Any]) -> None:
        """Write the settings record, then the table (so a table never lacks its record), atomically;
        a write that fails (a full disk) leaves a copy in the temporary folder and says where."""
        if self.table is None:
            return
        record = json.dumps(settings, indent=2, default=float) + "\n"
        write_text_atomic(record, self.settings_path)
        write_or_rescue(lambda path: write_text_atomic(table.to_csv(index=False), path), self.table, "sweep table")
        self._prepared = None

    def clear(self) -> None:
        """Remove the table and its record (models are replaced as the next sweep saves them)."""
        for path in (self.table, self.settings_path):
            if path is not None:
                path.unlink(missing_ok=True)
        self._prepared = None

    def save_model(self, label: str, level: float, model: nn.Module, metadata: Mapping[str, Any]) -> Path:
        """Save ``model`` as the one of ``label`` at ``level`` (:class:`InputError` without a models folder)."""
        if self.models is None:
            raise InputError("sweep store: this store keeps no models (give it a models folder)")
        return save_checkpoint(model, self.model_path(label, level), metadata)

    def load_model(self, label: str, level: float, like: nn.Module) -> nn.Module:
        """The saved model of ``label`` at ``level``, loaded into a copy of ``like`` (its architecture;
        low-rank layers are rebuilt from the checkpoint)."""
        return load_checkpoint(self.model_path(label, level), copy.deepcopy(like))[0]
