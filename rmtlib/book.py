"""Run the book's notebooks with papermill, cache them, and build the Jupyter Book.

``experiments.yaml`` (at the project root) says which notebook runs with which parameters per
profile. Each notebook is executed into ``book/generated/<name>.ipynb``, the copy the book
renders; a notebook whose source and parameters are unchanged (and whose outputs exist) is not
re-run. A failing notebook stops the run with the notebook and the cell named. Notebooks call
:func:`results_dir` and :func:`save_json` to write their numbers under ``results/<name>/``.

What the reader sees is decided here too: the executed copy's code cells are folded away
(:func:`hide_code_inputs`) unless tagged ``show-input``, and the introduction's verdict table
(``book/generated/verdict.md``, :func:`write_verdict`) is written from the ``verdict`` entries of the
chapters' results files, so it cannot drift from the runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import nbformat
import numpy as np
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from rmtlib.atomic import write_text_atomic
from rmtlib.errors import InputError, RMTError

__all__ = [
    "Experiment",
    "RunResult",
    "NotebookError",
    "CONFIG_NAME",
    "GENERATED",
    "load_experiments",
    "source_hash",
    "run_notebook",
    "run_book",
    "build_book",
    "toc_files",
    "project_root",
    "results_dir",
    "save_json",
    "hide_code_inputs",
    "verdict_rows",
    "write_verdict",
    "glue_references",
    "VERDICT_FILE",
]

CONFIG_NAME = "experiments.yaml"
GENERATED = Path("book") / "generated"
"""Folder (relative to the project root) the executed notebooks are written to."""
_META = "rmtlib_book"
_PROVENANCE_TAG = "rmtlib-provenance"
STUB_MARKER = "has not been executed yet"
SHOW_INPUT = "show-input"
"""Tag of a template code cell whose source the reader should see (every other input is folded away)."""
HIDE_INPUT = "hide-input"
VERDICT_FILE = GENERATED / "verdict.md"
"""The introduction's verdict table, written by :func:`write_verdict` and included by ``book/intro.md``."""
VERDICT_COLUMNS = ("claim", "paper", "measured", "verdict")


class NotebookError(RMTError):
    """A notebook failed while executing; the message names the notebook and the failing cell."""


@dataclass(frozen=True)
class Experiment:
    """One notebook and the parameters it runs with in the chosen profile."""

    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """What happened to one notebook: ``ran`` or ``cached``, where its output is, how long it took."""

    name: str
    status: str
    output: Path
    wall_s: float


# ---------------------------------------------------------------------------------------------
# helpers used inside the notebooks


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding experiments.yaml, else ``start``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return here


def results_dir(output_dir: str | Path) -> Path:
    """Create and return a notebook's output folder; a relative path is taken from the project root.

    So a notebook writes to the same ``results/<name>`` whether papermill runs it from the root or
    JupyterLab runs it from ``notebooks/``.
    """
    path = Path(output_dir)
    if not path.is_absolute():
        path = project_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(obj: Any) -> Any:
    """Plain JSON values from numpy scalars/arrays, paths and tuples; non-finite floats become None."""

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def save_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON atomically (numpy scalars and arrays allowed); NaN becomes null."""
    text = json.dumps(_jsonable(data), indent=2, allow_nan=False)
    return write_text_atomic(text + "\n", path)


# ---------------------------------------------------------------------------------------------
# experiments.yaml


def load_experiments(config: str | Path, profile: str, only: Sequence[str] | None = None) -> list[Experiment]:
    """Read ``config`` and return the experiments of ``profile`` (all, or those named in ``only``).

    Layout::

        profiles: {quick: "...", full: "..."}
        defaults: {seed: 0}              # every notebook, unless it overrides
        notebooks:
          01_mp_law:
            notebook: notebooks/01_mp_law.ipynb   # default notebooks/<name>.ipynb
            params: {...}                         # every profile
            quick: {...}                          # this profile only
            full: {...}

    ``output_dir`` defaults to ``results/<name>``. Every listed notebook must exist.
    """
    config = Path(config)
    if not config.is_file():
        raise InputError(f"no {CONFIG_NAME} at {config}")
    try:
        spec = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(f"{config}: not valid YAML ({err})") from err
    if not isinstance(spec, dict):
        raise InputError(f"{config}: expected a mapping with 'profiles' and 'notebooks', got {type(spec).__name__}")
    profiles = spec.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise InputError(f"{config}: 'profiles' must map profile names to descriptions, got {profiles!r}")
    if not isinstance(spec.get("defaults") or {}, dict):
        raise InputError(f"{config}: 'defaults' must map parameter names to values, got {spec['defaults']!r}")
    if profile not in profiles:
        raise InputError(f"{config}: unknown profile {profile!r}; known: {', '.join(profiles) or 'none'}")
    notebooks = spec.get("notebooks") or {}
    if not isinstance(notebooks, dict) or not notebooks:
        raise InputError(f"{config}: 'notebooks' must map notebook names to their settings")
    if only:
        unknown = [name for name in only if name not in notebooks]
        if unknown:
            raise InputError(f"--only: {', '.join(unknown)} not in {config}; known: {', '.join(notebooks)}")
    root = config.parent
    defaults = dict(spec.get("defaults") or {})
    out: list[Experiment] = []
    for name, entry in notebooks.items():
        if only and name not in only:
            continue
        entry = entry or {}
        if not isinstance(entry, dict):
            raise InputError(f"{config}: notebook {name!r} must map to its settings, got {entry!r}")
        unknown = sorted(set(entry) - {"notebook", "params"} - set(profiles))
        if unknown:  # e.g. a misspelt profile: its parameters would be silently dropped
            raise InputError(
                f"{config}: notebook {name!r} has unknown key(s) {', '.join(unknown)}; "
                f"allowed: notebook, params, {', '.join(profiles)}"
            )
        path = root / entry.get("notebook", f"notebooks/{name}.ipynb")
        if not path.is_file():
            raise InputError(f"{config}: notebook {name!r} is listed but {path.relative_to(root)} does not exist")
        params = {
            **defaults,
            "output_dir": f"results/{name}",
            **(entry.get("params") or {}),
            **(entry.get(profile) or {}),
        }
        out.append(Experiment(name, path, params))
    return out


def source_hash(notebook: str | Path, parameters: dict[str, Any]) -> str:
    """SHA-256 of the notebook's bytes, its canonical parameters and the library (:func:`library_hash`):
    the cache key. Notebooks are thin, so a change of rmtlib's code or assets changes their numbers."""
    digest = hashlib.sha256(Path(notebook).read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(library_hash().encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def library_hash() -> str:
    """SHA-256 over rmtlib's Python files and committed assets (names and bytes)."""
    return package_hash(Path(__file__).resolve().parent)


def package_hash(package: Path) -> str:
    """SHA-256 over the ``.py`` files and ``assets/`` of a package folder (``__pycache__`` ignored)."""
    files = sorted(
        p
        for p in package.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (p.suffix == ".py" or "assets" in p.relative_to(package).parts)
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# running one notebook


def _read_nb(path: Path) -> Any:

    return nbformat.read(str(path), as_version=4)


def _declared_parameters(exp: Experiment) -> dict[str, Any]:
    nb = _read_nb(exp.notebook)
    if not any("parameters" in cell.get("metadata", {}).get("tags", []) for cell in nb.cells):
        raise InputError(f"notebook {exp.name}: {exp.notebook.name} has no cell tagged 'parameters'")

    return papermill.inspect_notebook(str(exp.notebook))


def _is_cached(exp: Experiment, output: Path, key: str, cwd: Path) -> bool:
    if not output.is_file():
        return False
    try:
        meta = _read_nb(output).metadata.get(_META, {})
    except Exception:  # an unreadable output is simply re-made
        return False
    out_dir = exp.parameters.get("output_dir")
    if out_dir and not (cwd / str(out_dir)).exists():
        return False
    return meta.get("hash") == key


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Offline hub; let the kernel choose its inline plotting backend (tests set MPLBACKEND=Agg)."""
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "HF_HUB_OFFLINE")}
    os.environ.pop("MPLBACKEND", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_config() -> Config:
    """Kernel settings for papermill: talk to the kernel over local IPC sockets rather than TCP.

    Over TCP without CurveZMQ keys ipykernel warns, once per notebook, that its traffic is unencrypted
    ("Kernel is running over TCP without encryption"); IPC sockets are files readable by this user
    only, which is what a local build needs. Windows has no IPC transport, so it keeps TCP.
    """
    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
    return config


def machine_description() -> str:
    """One line about the machine the notebooks ran on (OS, CPU model, cores, Python)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}"


def _provenance_cell(exp: Experiment, profile: str, wall_s: float, root: Path) -> Any:

    params = ", ".join(f"`{k}={v!r}`" for k, v in exp.parameters.items())
    device = exp.parameters.get("device")
    where = machine_description() + (f"; device parameter: `{device}`" if device else "")
    rel = exp.notebook.relative_to(root) if exp.notebook.is_relative_to(root) else exp.notebook
    text = (
        ":::{admonition} How this page was made\n:class: note\n"
        f"Executed by `rmtlib book --profile {profile}` on {_dt.date.today().isoformat()} in {wall_s:.0f} s, "
        f"on {where}. Every number and figure on this page was measured in that run, except those "
        "explicitly labelled as the paper's (arXiv 2503.01922) or as coming from another run.\n\n"
        f"Parameters: {params}. To re-run with your own, from the project root: "
        f"`papermill {rel} my_run.ipynb -p seed 1 -p output_dir results/my_run`.\n:::"
    )
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [_PROVENANCE_TAG]
    return cell


def _insert_provenance(nb: Any, cell: Any) -> None:
    """Place the provenance note right after the title cell (or first, if the page has no title cell)."""
    nb.cells = [c for c in nb.cells if _PROVENANCE_TAG not in c.get("metadata", {}).get("tags", [])]
    first = nb.cells[0] if nb.cells else None
    at = 1 if first is not None and first.cell_type == "markdown" and first.source.lstrip().startswith("#") else 0
    nb.cells.insert(at, cell)


def hide_code_inputs(nb: Any) -> int:
    """Tag every code cell ``hide-input`` unless it is tagged ``show-input``; return how many were tagged.

    The rendered book then shows outputs (figures, tables) with their code folded behind a toggle, and
    the few calls a reader should learn from stay visible. The ``parameters`` cell and the one papermill
    injects are hidden like any other. Idempotent.
    """
    tagged = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if SHOW_INPUT in tags or HIDE_INPUT in tags:
            continue
        cell.metadata["tags"] = [*tags, HIDE_INPUT]
        tagged += 1
    return tagged


def _failure_message(exp: Experiment, err: Any, failed: Path) -> str:
    """Name the failing cell by its number in the template (papermill's injected cell not counted)."""
    source = (err.source or "").strip().splitlines()
    first = source[0] if source else "<empty cell>"
    number = err.cell_index + 1
    with contextlib.suppress(Exception):
        cells = _read_nb(failed).cells[: err.cell_index]
        number -= sum("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells)
    return (
        f"notebook {exp.name} failed in cell {number} of {exp.notebook.name} (execution count {err.exec_count}), "
        f"the cell starting `{first}`: {err.ename}: {err.evalue}. Executed copy with the traceback: {failed}"
    )


def run_notebook(
    exp: Experiment,
    out_dir: str | Path,
    *,
    profile: str,
    cwd: str | Path,
    force: bool = False,
    timeout_s: float | None = None,
) -> RunResult:
    """Execute one notebook into ``out_dir/<name>.ipynb`` unless the cache says it is up to date.

    Raises:
        InputError: the notebook has no ``parameters`` cell or a parameter it does not declare.
        NotebookError: a cell raised; the message names the notebook, the cell and the error, and
            the executed copy is kept as ``<name>.failed.ipynb``.
    """

    out_dir, cwd = Path(out_dir), Path(cwd)
    output = out_dir / f"{exp.name}.ipynb"
    failed = out_dir / f"{exp.name}.failed.ipynb"
    declared = _declared_parameters(exp)
    unknown = sorted(set(exp.parameters) - set(declared))
    if unknown:
        raise InputError(
            f"notebook {exp.name}: parameter(s) {', '.join(unknown)} not declared in its parameters cell "
            f"(declared: {', '.join(declared) or 'none'})"
        )
    key = source_hash(exp.notebook, exp.parameters)
    if not force and _is_cached(exp, output, key, cwd):
        return RunResult(exp.name, "cached", output, 0.0)

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".{exp.name}.*.running.ipynb"):  # left by a run that was killed
        stale.unlink()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{exp.name}.", suffix=".running.ipynb", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    start = time.perf_counter()
    try:
        with _kernel_environment():
            papermill.execute_notebook(
                str(exp.notebook),
                str(tmp),
                parameters=exp.parameters,
                kernel_name="python3",
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout_s,
                config=_kernel_config(),
            )
    except PapermillExecutionError as err:
        tmp.chmod(0o644)
        os.replace(tmp, failed)
        # the failed run may have overwritten part of the results: no later run may count as cached on them
        output.unlink(missing_ok=True)
        raise NotebookError(_failure_message(exp, err, failed)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    wall = time.perf_counter() - start
    nb = nbformat.read(str(tmp), as_version=4)
    root = project_root(cwd)
    hide_code_inputs(nb)
    _insert_provenance(nb, _provenance_cell(exp, profile, wall, root))
    nb.metadata[_META] = {
        "hash": key,
        "profile": profile,
        "parameters": exp.parameters,
        "wall_s": round(wall, 2),
        "executed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
    }
    nbformat.write(nb, str(tmp))
    tmp.chmod(0o644)  # mkstemp made it private
    os.replace(tmp, output)
    failed.unlink(missing_ok=True)
    return RunResult(exp.name, "ran", output, wall)


# ---------------------------------------------------------------------------------------------
# the book


def toc_files(root: str | Path) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (the root first), without suffix."""
    toc = Path(root) / "_toc.yml"
    if not toc.is_file():
        raise InputError(f"no _toc.yml in {root}")
    spec = yaml.safe_load(toc.read_text()) or {}
    found: list[str] = [spec["root"]] if "root" in spec else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in spec.items() if k != "root"})
    return [str(Path(f).with_suffix("")) if Path(f).suffix in {".md", ".ipynb"} else f for f in found]


def _chapter_title(root: Path, name: str) -> str:
    """The first heading of ``notebooks/<name>.ipynb`` (``name`` when there is none)."""
    template = root / "notebooks" / f"{name}.ipynb"
    if template.is_file():
        for cell in _read_nb(template).cells:
            if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
                return cell.source.lstrip().splitlines()[0].lstrip("#").strip()
    return name


def _write_stub(path: Path, name: str, root: Path) -> None:
    """A placeholder page for a chapter in the toc whose notebook has not run, so the build can go on."""

    title = _chapter_title(root, name)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\nThis chapter {STUB_MARKER}. Run `rmtlib book --only {name}` (or `make book`) to execute "
            f"`notebooks/{name}.ipynb` and render it here."
        )
    ]
    nb.metadata[_META] = {"stub": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


# ---------------------------------------------------------------------------------------------
# what the reader sees: the verdict table, glued numbers


def _verdict_entries(path: Path) -> list[dict[str, str]]:
    """The ``verdict`` rows of one results JSON (none when it has no such key)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable JSON ({err})") from err
    entries = data.get("verdict") if isinstance(data, dict) else None
    if entries is None:
        return []
    entries = [entries] if isinstance(entries, dict) else entries
    rows = []
    for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in VERDICT_COLUMNS):
            raise InputError(
                f"{path}: verdict entry {i} must map {', '.join(VERDICT_COLUMNS)} to strings, got {entry!r}"
            )
        rows.append({k: entry[k] for k in VERDICT_COLUMNS})
    return rows


def verdict_rows(root: str | Path) -> list[dict[str, str]]:
    """One row per claim for the introduction's table, chapters in the order of ``_toc.yml``.

    A chapter states its claims by writing, into any JSON file of ``results/<name>/``, a key
    ``verdict``: a list of ``{"claim", "paper", "measured", "verdict"}`` strings computed from its run.
    A chapter without one gets a single row pointing to it. Each row carries ``chapter`` (its
    number in the book) and ``page`` (the document to link).
    """
    root = Path(root)
    rows: list[dict[str, str]] = []
    chapters = [e for e in toc_files(root) if Path(e).parent == GENERATED]
    for number, entry in enumerate(chapters, 1):
        name = Path(entry).name
        found = []
        results = root / "results" / name
        for path in sorted(results.glob("*.json")) if results.is_dir() else []:
            found += _verdict_entries(path)
        if not found:
            title = re.sub(r"^\d+\.\s*", "", _chapter_title(root, name))
            found = [{"claim": title, "paper": "", "measured": f"see chapter {number}", "verdict": ""}]
        rows += [{**row, "chapter": str(number), "page": f"/{entry}"} for row in found]
    return rows


def _cell(text: str) -> str:
    """Text safe inside a Markdown pipe-table cell (no newline, pipes escaped)."""
    return " ".join(text.split()).replace("|", "\\|") or "—"


def write_verdict(root: str | Path) -> Path:
    """Write ``book/generated/verdict.md``: claim | paper | measured here | verdict | chapter (linked)."""
    root = Path(root)
    lines = ["| claim | paper | measured here | verdict | chapter |", "| --- | --- | --- | --- | --- |"]
    for row in verdict_rows(root):
        link = f"{{doc}}`{row['chapter']} <{row['page']}>`"
        cells = [_cell(row[k]) for k in VERDICT_COLUMNS]
        lines.append("| " + " | ".join([*cells, link]) + " |")
    return write_text_atomic("\n".join(lines) + "\n", root / VERDICT_FILE)


_GLUE_TEXT = re.compile(r"\{glue:text\}`([^`:]+)(?::([^`]*))?`")


def glue_references(nb: Any) -> list[tuple[str, str]]:
    """``(key, format spec)`` of every ``{glue:text}`key:spec``` in the markdown cells, in page order."""
    return [
        (m.group(1).strip(), m.group(2) or "")
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for m in _GLUE_TEXT.finditer(cell.source)
    ]


def build_book(root: str | Path, *, log: Callable[[str], None] = print, strict: bool = True) -> Path:
    """``jupyter-book build`` the project into ``_build/html``; every toc page must exist.

    Chapters under ``book/generated`` that have not been executed get a placeholder page (and a
    warning in the log); any other missing page is an error. With ``strict`` Sphinx warnings fail.
    """
    root = Path(root).resolve()
    for entry in toc_files(root):
        if any((root / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb", ".rst")):
            continue
        if Path(entry).parent == GENERATED:
            log(f"warning: {entry} has not been executed; writing a placeholder page")
            _write_stub(root / f"{entry}.ipynb", Path(entry).name, root)
        else:
            raise InputError(f"_toc.yml lists {entry} but no {entry}.md / .ipynb exists")
    log(f"verdict table: {write_verdict(root).relative_to(root)}")
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [
        str(exe) if exe.is_file() else (shutil.which("jupyter-book") or "jupyter-book"),
        "build",
        str(root),
        "--builder",
        "html",
    ]
    if strict:
        cmd += ["-W", "--keep-going"]
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=root, text=True, capture_output=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise RMTError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    html = root / "_build" / "html"
    log(f"book built: {html / 'index.html'}")
    return html


def run_book(
    root: str | Path = ".",
    profile: str = "full",
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    build: bool = True,
    log: Callable[[str], None] = print,
) -> list[RunResult]:
    """Execute the profile's notebooks (cached) into ``book/generated`` and build the book.

    Stops at the first failing notebook with a :class:`NotebookError`. Writes a run summary
    (status and wall time per notebook) to ``book/generated/run_summary.json``.
    """
    root = Path(root).resolve()
    experiments = load_experiments(root / CONFIG_NAME, profile, only)
    out_dir = root / GENERATED
    results: list[RunResult] = []
    start = time.perf_counter()
    for i, exp in enumerate(experiments, 1):
        log(f"[{i}/{len(experiments)}] {exp.name} ({profile}) ...")
        result = run_notebook(exp, out_dir, profile=profile, cwd=root, force=force)
        results.append(result)
        log(f"    {result.status}" + (f" in {result.wall_s:.1f} s" if result.status == "ran" else " (unchanged)"))
    notebooks_s = time.perf_counter() - start
    summary = {
        "profile": profile,
        "machine": machine_description(),
        "notebooks_s": round(notebooks_s, 1),
        "notebooks": [{"name": r.name, "status": r.status, "wall_s": round(r.wall_s, 1)} for r in results],
    }
    if build:
        build_book(root, log=log)
    elif (root / "_toc.yml").is_file():
        write_verdict(root)
        summary["total_s"] = round(time.perf_counter() - start, 1)
    save_json(summary, out_dir / "run_summary.json")
    log(f"done in {time.perf_counter() - start:.0f} s")
    return results
