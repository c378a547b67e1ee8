"""The book runner on tiny fake notebooks: parameters injected, cache, failures named, config errors."""

import importlib.util
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest

from rmtlib import book
from rmtlib.book import NotebookError, load_experiments, run_book, save_json
from rmtlib.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, body: list[str], params: str = 'value = 1\noutput_dir = "results/fake"') -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A fake chapter"), cell] + [nbformat.v4.new_code_cell(b) for b in body]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


WRITE = (
    "from pathlib import Path\n"
    "out = Path(output_dir); out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'value.txt').write_text(str(value * 2))\n"
    "with open(out / 'runs.log', 'a') as f: f.write('run\\n')"
)


def _project(tmp_path: Path, quick: dict, notebooks: dict | None = None) -> Path:
    spec = {
        "profiles": {"quick": "short", "full": "long"},
        "defaults": {},
        "notebooks": notebooks or {"fake": {"params": {"value": 1}, "quick": quick}},
    }
    (tmp_path / "experiments.yaml").write_text(json.dumps(spec))  # JSON is valid YAML
    return tmp_path


def test_parameters_are_injected_cached_and_rerun_on_change(tmp_path):
    _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE])
    root = _project(tmp_path, {"value": 21})
    runs = tmp_path / "results" / "fake" / "runs.log"

    first = run_book(root, "quick", build=False, log=lambda _: None)
    assert [r.status for r in first] == ["ran"]
    assert (tmp_path / "results" / "fake" / "value.txt").read_text() == "42"
    out = nbformat.read(str(tmp_path / "book" / "generated" / "fake.ipynb"), as_version=4)
    assert out.metadata["rmtlib_book"]["parameters"] == {"output_dir": "results/fake", "value": 21}
    # provenance note right after the title, naming the profile
    assert "rmtlib-provenance" in out.cells[1].metadata["tags"] and "--profile quick" in out.cells[1].source
    summary = json.loads((tmp_path / "book" / "generated" / "run_summary.json").read_text())
    assert summary["notebooks"][0]["status"] == "ran"

    second = run_book(root, "quick", build=False, log=lambda _: None)
    assert [r.status for r in second] == ["cached"]
    assert runs.read_text().count("run") == 1  # not executed again

    _project(tmp_path, {"value": 5})
    third = run_book(root, "quick", build=False, log=lambda _: None)
    assert [r.status for r in third] == ["ran"]
    assert (tmp_path / "results" / "fake" / "value.txt").read_text() == "10"
    assert runs.read_text().count("run") == 2


def test_a_library_change_or_a_failed_run_is_never_cached(tmp_path, monkeypatch):
    """The cache key covers rmtlib's code; a run that failed (after writing part of its results) leaves
    nothing a later run with the old parameters could take as up to date."""
    _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE + "\nassert value != 5, 'planted failure'"])
    root = _project(tmp_path, {"value": 1})
    assert [r.status for r in run_book(root, "quick", build=False, log=lambda _: None)] == ["ran"]
    assert [r.status for r in run_book(root, "quick", build=False, log=lambda _: None)] == ["cached"]
    monkeypatch.setattr(book, "library_hash", lambda: "another library")
    assert [r.status for r in run_book(root, "quick", build=False, log=lambda _: None)] == ["ran"]
    _project(tmp_path, {"value": 5})
    with pytest.raises(NotebookError):
        run_book(root, "quick", build=False, log=lambda _: None)
    assert (tmp_path / "results" / "fake" / "value.txt").read_text() == "10"  # written before the failure
    _project(tmp_path, {"value": 1})
    assert [r.status for r in run_book(root, "quick", build=False, log=lambda _: None)] == ["ran"]
    assert (tmp_path / "results" / "fake" / "value.txt").read_text() == "2"


def test_package_hash_covers_code_and_assets(tmp_path):
    package = tmp_path / "pkg"
    (package / "assets").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "assets" / "w.bin").write_bytes(b"weights")
    first = book.package_hash(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "a.pyc").write_bytes(b"compiled")
    (package / "notes.txt").write_text("not code")
    assert book.package_hash(package) == first  # caches and other files do not count
    (package / "assets" / "w.bin").write_bytes(b"weight5")
    second = book.package_hash(package)
    (package / "a.py").write_text("x = 2\n")
    assert len({first, second, book.package_hash(package)}) == 3


def test_failing_notebook_names_notebook_and_cell(tmp_path):
    _notebook(tmp_path / "notebooks" / "broken.ipynb", ["x = 1", "raise ValueError('planted failure')", "y = 2"])
    root = _project(tmp_path, {}, {"broken": {"params": {"value": 3}}})
    with pytest.raises(NotebookError) as info:
        run_book(root, "quick", build=False, log=lambda _: None)
    msg = str(info.value)
    # template cells: 1 title, 2 parameters, 3 `x = 1`, 4 the raise
    assert "notebook broken failed in cell 4 of broken.ipynb" in msg
    assert "raise ValueError('planted failure')" in msg and "ValueError: planted failure" in msg
    generated = tmp_path / "book" / "generated"
    assert (generated / "broken.failed.ipynb").is_file()
    assert not (generated / "broken.ipynb").exists()  # nothing half-written
    assert not list(generated.glob(".*running*"))


def test_listed_but_missing_notebook_is_a_clear_error(tmp_path):
    _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE])
    root = _project(tmp_path, {}, {"fake": {"qiuck": {"value": 2}}})
    with pytest.raises(InputError, match="'fake' has unknown key\\(s\\) qiuck; allowed: notebook, params, quick, full"):
        load_experiments(root / "experiments.yaml", "quick")
    root = _project(tmp_path, {}, {"fake": {}, "02_later": {}})
    with pytest.raises(InputError, match=r"'02_later' is listed but notebooks/02_later.ipynb does not exist"):
        load_experiments(root / "experiments.yaml", "quick")
    with pytest.raises(InputError, match="unknown profile 'huge'"):
        load_experiments(root / "experiments.yaml", "huge")
    with pytest.raises(InputError, match="--only: nope not in"):
        load_experiments(root / "experiments.yaml", "quick", only=["nope"])


def test_undeclared_parameter_and_missing_parameters_cell_are_refused(tmp_path):
    _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE])
    root = _project(tmp_path, {"vlaue": 2})  # typo: must not be silently injected
    with pytest.raises(InputError, match="parameter\\(s\\) vlaue not declared"):
        run_book(root, "quick", build=False, log=lambda _: None)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("value = 1")]
    nbformat.write(nb, str(tmp_path / "notebooks" / "fake.ipynb"))
    _project(tmp_path, {})
    with pytest.raises(InputError, match="no cell tagged 'parameters'"):
        run_book(root, "quick", build=False, log=lambda _: None)


def test_build_writes_placeholder_for_unexecuted_chapter_and_refuses_missing_pages(tmp_path, monkeypatch):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n- file: book/generated/09_new\n")
    calls = []
    monkeypatch.setattr(
        book.subprocess,
        "run",
        lambda cmd, **kw: calls.append(cmd) or type("P", (), {"returncode": 0, "stdout": "", "stderr": ""})(),
    )
    book.build_book(tmp_path, log=lambda _: None)
    stub = nbformat.read(str(tmp_path / "book" / "generated" / "09_new.ipynb"), as_version=4)
    assert book.STUB_MARKER in stub.cells[0].source
    assert calls and calls[0][1:3] == ["build", str(tmp_path.resolve())]
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n- file: book/missing\n")
    with pytest.raises(InputError, match="_toc.yml lists book/missing"):
        book.build_book(tmp_path, log=lambda _: None)


def test_save_json_writes_numpy_and_nan_as_plain_json(tmp_path):
    path = save_json(
        {"a": np.float64(1.5), "b": np.arange(3), "c": math.nan, "d": (1, np.int64(2))}, tmp_path / "x.json"
    )
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2]}


def test_results_dir_is_relative_to_project_root(tmp_path, monkeypatch):
    (tmp_path / "experiments.yaml").write_text("profiles: {quick: x}\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # as JupyterLab runs a notebook
    assert book.results_dir("results/ch1") == (tmp_path / "results" / "ch1").resolve()
    assert (tmp_path / "results" / "ch1").is_dir()


def test_cli_reports_bad_profile_with_exit_code_2(tmp_path, capsys):
    from rmtlib.cli.main import main

    _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE])
    _project(tmp_path, {})
    assert main(["book", "--profile", "huge", "--root", str(tmp_path), "--no-build"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("profiles: 3\nnotebooks: {a: {}}\n", "'profiles' must map"),
        ("just a string\n", "expected a mapping"),
        ("profiles: {quick: q}\ndefaults: [1]\nnotebooks: {a: {}}\n", "'defaults' must map"),
    ],
)
def test_a_malformed_config_is_an_input_error_naming_the_file(tmp_path, text, message):
    """These used to be a TypeError / AttributeError traceback."""
    config = tmp_path / "experiments.yaml"
    config.write_text(text)
    with pytest.raises(InputError, match=message):
        load_experiments(config, "quick")


def test_code_inputs_are_hidden_unless_tagged_show_input_and_the_kernel_talks_over_ipc(tmp_path, capfd):
    """The executed copy folds every input away (parameters and injected cells too) except `show-input`;
    the kernel runs over IPC sockets, so ipykernel has no unencrypted-TCP warning to print."""
    path = _notebook(tmp_path / "notebooks" / "fake.ipynb", [WRITE, "print(value)"])
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[-1].metadata["tags"] = ["show-input"]
    nbformat.write(nb, str(path))
    root = _project(tmp_path, {"value": 4})
    run_book(root, "quick", build=False, log=lambda _: None)
    out = nbformat.read(str(tmp_path / "book" / "generated" / "fake.ipynb"), as_version=4)
    code = [c for c in out.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    assert len(code) == 4 and "injected-parameters" in tags[1]  # parameters, injected, WRITE, print
    assert [("hide-input" in t, "show-input" in t) for t in tags] == [(True, False)] * 3 + [(False, True)]
    assert code[-1].outputs[0]["text"] == "4\n"
    assert book.hide_code_inputs(out) == 0  # idempotent
    assert "without encryption" not in "".join(capfd.readouterr())


def _toc(root: Path, names: list[str]) -> None:
    chapters = "".join(f"- file: book/generated/{n}\n" for n in names)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{chapters}")


def test_verdict_table_comes_from_the_chapters_results_and_links_each_chapter(tmp_path):
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", [WRITE])
    nb = nbformat.read(str(tmp_path / "notebooks" / "01_a.ipynb"), as_version=4)
    nb.cells[0].source = "# 1. The first | chapter"
    nbformat.write(nb, str(tmp_path / "notebooks" / "01_a.ipynb"))
    _toc(tmp_path, ["01_a", "02_b"])
    row = {"claim": "loss falls | monotone", "paper": "90.53%", "measured": "98.2%\nin 3 runs", "verdict": "no"}
    save_json({"spread": 1.0, "verdict": [row]}, tmp_path / "results" / "02_b" / "summary.json")
    save_json({"no verdict here": 1}, tmp_path / "results" / "02_b" / "other.json")
    rows = book.verdict_rows(tmp_path)
    assert [(r["claim"], r["measured"], r["chapter"], r["page"]) for r in rows] == [
        ("The first | chapter", "see chapter 1", "1", "/book/generated/01_a"),
        ("loss falls | monotone", "98.2%\nin 3 runs", "2", "/book/generated/02_b"),
    ]
    lines = book.write_verdict(tmp_path).read_text().splitlines()
    assert lines[0] == "| claim | paper | measured here | verdict | chapter |"
    assert lines[2] == "| The first \\| chapter | — | see chapter 1 | — | {doc}`1 </book/generated/01_a>` |"
    assert lines[3] == "| loss falls \\| monotone | 90.53% | 98.2% in 3 runs | no | {doc}`2 </book/generated/02_b>` |"
    save_json({"verdict": [{"claim": "x", "paper": 1}]}, tmp_path / "results" / "02_b" / "bad.json")
    with pytest.raises(InputError, match=r"bad.json: verdict entry 0 must map claim, paper, measured, verdict"):
        book.write_verdict(tmp_path)


def test_glue_references_in_page_order():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Gain {glue:text}`gain:+.2f` pp, {glue:text}`n`, code `x`"),
        nbformat.v4.new_code_cell("glue('gain', 1.0)  # {glue:text}`not:this`"),
        nbformat.v4.new_markdown_cell("{glue:text}`ratio:.2f` x"),
    ]
    assert book.glue_references(nb) == [("gain", "+.2f"), ("n", ""), ("ratio", ".2f")]


def _offline_book_extension():
    spec = importlib.util.spec_from_file_location("offline_book", ROOT / "book" / "_ext" / "offline_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_buttons_only_with_a_repository_and_pointing_at_the_templates():
    ext = _offline_book_extension()
    launch = {"colab_url": "https://colab.research.google.com", "binderhub_url": "https://mybinder.org"}
    config = type("C", (), {"html_theme_options": {"repository_url": "", "launch_buttons": dict(launch)}})()
    ext._launch_only_with_repository(None, config)
    assert config.html_theme_options["launch_buttons"] == {}
    config.html_theme_options = {"repository_url": "https://github.com/o/rmtlib", "launch_buttons": dict(launch)}
    ext._launch_only_with_repository(None, config)
    assert config.html_theme_options["launch_buttons"] == launch
    url = "https://colab.research.google.com/github/o/rmtlib/blob/main/book/generated/04_regularization.ipynb"
    binder = "https://mybinder.org/v2/gh/o/rmtlib/main?urlpath=tree/book%2Fgenerated%2F04_regularization.ipynb"
    download = "../../_sources/book/generated/04_regularization.ipynb"
    buttons = [{"url": url}, {"label": "no url"}, {"url": binder}]
    context = {"header_buttons": [{"type": "group", "buttons": buttons}, {"url": download}]}
    ext._fix_launch_links(None, "book/generated/04_regularization", "page.html", context, None)
    assert buttons[0]["url"].endswith("/blob/main/notebooks/04_regularization.ipynb")
    assert buttons[2]["url"].endswith("urlpath=tree/notebooks%2F04_regularization.ipynb")
    assert context["header_buttons"][1]["url"] == download  # the download button keeps the executed copy


def test_committed_notebooks_are_valid_nbformat_without_outputs():
    """Every chapter validates against its nbformat schema (cell ids included: a cell added by hand without
    one warned at every build), and is committed without outputs (the runner's copies hold them)."""
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        raw = json.loads(path.read_text())  # as stored: nbformat.read would add the missing ids itself
        assert all("id" in cell for cell in raw["cells"]), path.name
        nbformat.validate(nbformat.from_dict(raw))
        assert not any(cell.get("outputs") for cell in raw["cells"] if cell["cell_type"] == "code"), path.name
