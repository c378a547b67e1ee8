"""The rendered book in headless Chromium, as a reader sees it at 1280 x 900.

Every chapter loads, images load, no error output, links resolve; every figure is legible (no wider
than 2.6:1, not shrunk below 60% of its natural size), numbered with a caption and alt text; code is
folded away unless tagged ``show-input``; no raw ``$`` in tables, none wider than the text column; the
introduction opens with its verdict table linking the chapters; the numbers glued into the prose equal
the results files.

Needs the built book (``make book PROFILE=quick``) and Debian's ``chromium`` (installed by ``.ci/run``).
Without them the tests skip, except under CI (``CI=true``), where skipping would hide a broken book.
Screenshots of every page are saved to ``_build/screenshots/<page>.png``.
"""

from __future__ import annotations

import ast
import functools
import html
import http.server
import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from rmtlib.book import GENERATED, STUB_MARKER, glue_references, toc_files

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path(os.environ.get("RMTLIB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ERROR_SELECTORS = ", ".join(
    [
        ".output.stderr",
        ".output.traceback",
        ".output.error",
        ".cell_output .ansi-red-fg",
        ".output_error",
    ]
)

PAGE_REPORT_JS = (
    """
async () => {
  if (window.MathJax && window.MathJax.Hub) {  // wait until the formulas are typeset (MathJax 2)
    await new Promise(done => { window.MathJax.Hub.Queue(done); setTimeout(done, 20000); });
  }
  for (const img of document.images) { img.loading = 'eager'; }
  await Promise.all(Array.from(document.images).map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  // folded away: inside a closed <details> (the book's hide-input toggle) or not rendered at all
  const shown = el => !el.closest('details:not([open])') && el.checkVisibility();
  return {
    title: document.title,
    h1: Array.from(document.querySelectorAll('main h1, article h1, h1')).map(h => h.innerText.trim()),
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth,
                                                  ok: i.complete && i.naturalWidth > 0})),
    errors: Array.from(document.querySelectorAll(%r)).map(e => e.innerText.slice(0, 300)),
    text: document.body.innerText,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    figures: Array.from(document.querySelectorAll('main img, article img')).map(img => {
      const figure = img.closest('figure');
      const caption = figure ? figure.querySelector('figcaption') : null;
      return {src: img.currentSrc || img.src, natural: [img.naturalWidth, img.naturalHeight],
              shown: img.getBoundingClientRect().width, alt: (img.getAttribute('alt') || '').trim(),
              caption: caption ? caption.innerText.trim() : '', numbered: !!(caption && caption.querySelector(
                '.caption-number'))};
    }),
    visible_inputs: Array.from(document.querySelectorAll('.cell .cell_input')).filter(shown).map(el => ({
      show: el.closest('.cell').classList.contains('tag_show-input'), text: el.textContent.trim().slice(0, 80)})),
    hidden_inputs: Array.from(document.querySelectorAll('.cell .cell_input')).filter(el => !shown(el)).length,
    tables: Array.from(document.querySelectorAll('main table, article table')).map(t => ({
      text: t.innerText,
      // how far the table reaches past the text column (a wider table scrolls, its last columns hidden)
      overflow: t.scrollWidth - ((document.querySelector('article p') || document.body).clientWidth),
      header: Array.from(t.querySelectorAll('thead th')).map(th => th.innerText.trim().toLowerCase()),
      row_links: Array.from(t.querySelectorAll('tbody tr')).map(tr => Array.from(
          tr.querySelectorAll('a[href]')).map(a => a.href)),
    })),
  };
}
"""
    % ERROR_SELECTORS
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI runs `make book PROFILE=quick` and installs chromium before the tests)")
    pytest.skip(reason)


def _pages() -> dict[str, Path]:
    """Screenshot name -> built HTML file, for every page of the table of contents."""
    pages: dict[str, Path] = {}
    for entry in toc_files(ROOT):
        name = Path(entry).name if Path(entry).name not in pages else entry.replace("/", "_")
        pages[name] = HTML / f"{entry}.html"
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        _unavailable(f"no built book at {HTML}: run `make book PROFILE=quick` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def visited(server):
    """Open every toc page once; return per-page reports and the external requests that were blocked."""
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM}: `apt-get install chromium chromium-driver`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    reports: dict[str, dict] = {}
    blocked: list[str] = []

    def route(route_obj):
        if route_obj.request.url.startswith(server):
            route_obj.continue_()
        else:  # the book must render offline: nothing leaves the machine
            blocked.append(route_obj.request.url)
            route_obj.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/*", route)
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on("response", lambda r: r.status >= 400 and page_errors.append(f"HTTP {r.status} for {r.url}"))
        for name, path in _pages().items():
            url = f"{server}/{path.relative_to(HTML).as_posix()}"
            page_errors.clear()
            response = page.goto(url, wait_until="load", timeout=60_000)
            report = page.evaluate(PAGE_REPORT_JS)
            report.update(url=url, status=response.status if response else None, page_errors=list(page_errors))
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            reports[name] = report
        landing = page.goto(f"{server}/index.html", wait_until="load")
        page.wait_for_load_state("load")
        reports["__index__"] = {"status": landing.status if landing else None, "final_url": page.url}
        browser.close()
    return {"pages": reports, "blocked": blocked}


def _chapters(visited: dict) -> dict[str, dict]:
    return {k: v for k, v in visited["pages"].items() if k != "__index__"}


def test_every_toc_page_was_built():
    if not (HTML / "index.html").is_file():
        _unavailable(f"no built book at {HTML}: run `make book PROFILE=quick` first")
    missing = [str(p.relative_to(ROOT)) for p in _pages().values() if not p.is_file()]
    assert not missing, f"pages in _toc.yml that were not built: {missing}"


def test_every_page_loads_with_a_title_and_no_script_errors(visited):
    for name, report in _chapters(visited).items():
        assert report["status"] == 200, f"{name}: HTTP {report['status']} for {report['url']}"
        assert report["h1"], f"{name}: no heading on {report['url']}"
        assert not report["page_errors"], f"{name}: JavaScript or resource errors {report['page_errors']}"
    index = visited["pages"]["__index__"]
    assert index["status"] == 200 and index["final_url"].endswith(".html"), (
        f"index.html does not land on a page: {index}"
    )


def test_every_image_loaded_with_nonzero_size(visited):
    broken = [
        (name, img["src"]) for name, report in _chapters(visited).items() for img in report["images"] if not img["ok"]
    ]
    assert not broken, f"images that did not load: {broken}"
    chapters = [name for name, path in _pages().items() if "generated" in path.parts]
    for name in chapters:  # an executed chapter without a single figure means its outputs were lost
        assert visited["pages"][name]["images"], f"{name}: chapter page shows no figure"


def test_no_traceback_error_output_or_placeholder_on_any_page(visited):
    for name, report in _chapters(visited).items():
        assert not report["errors"], f"{name}: error/stderr output on the page: {report['errors']}"
        assert "Traceback (most recent call last)" not in report["text"], f"{name}: a Python traceback is shown"
        raw_tex = re.findall(r"\\\(.{0,40}", report["text"])
        assert not raw_tex, f"{name}: formulas shown as raw TeX (MathJax did not typeset): {raw_tex[:3]}"
        assert STUB_MARKER not in report["text"], f"{name}: chapter not executed (placeholder page); run `make book`"


def test_images_are_served_locally(visited):
    external_images = [u for u in visited["blocked"] if re.search(r"\.(png|jpe?g|svg|gif|webp)(\?|$)", u)]
    assert not external_images, f"images fetched from outside the book: {external_images}"


def test_internal_links_resolve(visited, server):
    broken = []
    cache: dict[Path, str] = {}
    for name, report in _chapters(visited).items():
        for href in report["links"]:
            if not href.startswith(server):
                continue
            parsed = urlparse(href)
            target = HTML / unquote(parsed.path).lstrip("/")
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append((name, href))
                continue
            if parsed.fragment and target.suffix == ".html":
                text = cache.setdefault(target, target.read_text(errors="replace"))
                if f'id="{unquote(parsed.fragment)}"' not in text:
                    broken.append((name, href))
    assert not broken, f"internal links that do not resolve: {broken[:20]}"


# ---------------------------------------------------------------------------------------------
# what a reader sees

MAX_ASPECT = 2.6
MIN_SHOWN = 0.6


def _figures(visited: dict):
    for name, report in _chapters(visited).items():
        for figure in report["figures"]:
            yield name, figure


def test_every_figure_is_legible_as_displayed(visited):
    """No figure wider than 2.6:1 (two panels per row at most), none shrunk below 60% of its natural size."""
    wide, shrunk = [], []
    for name, figure in _figures(visited):
        width, height = figure["natural"]
        if not width or not height:
            continue  # not loaded: test_every_image_loaded_with_nonzero_size says so
        if width / height > MAX_ASPECT:
            wide.append((name, figure["src"].rsplit("/", 1)[-1], f"{width}x{height}"))
        if figure["shown"] < MIN_SHOWN * width:
            shrunk.append((name, figure["src"].rsplit("/", 1)[-1], f"{figure['shown']:.0f} of {width} px"))
    assert not wide, f"figures wider than {MAX_ASPECT}:1: {wide}"
    assert not shrunk, f"figures shown below {MIN_SHOWN:.0%} of their natural width (unreadable fonts): {shrunk}"


def test_every_figure_is_numbered_with_a_caption_and_alt_text(visited):
    missing = [
        (name, figure["src"].rsplit("/", 1)[-1], "caption" if not figure["caption"] else "number")
        for name, figure in _figures(visited)
        if not (figure["caption"] and figure["numbered"])
    ]
    missing += [
        (name, figure["src"].rsplit("/", 1)[-1], "alt") for name, figure in _figures(visited) if not figure["alt"]
    ]
    assert not missing, f"figures without a numbered caption or alt text (myst-nb cell metadata): {missing}"


def test_code_is_hidden_by_default_except_show_input_cells(visited):
    chapters = [name for name, path in _pages().items() if GENERATED.name in path.parts]
    for name in chapters:
        report = visited["pages"][name]
        shown = [cell["text"] for cell in report["visible_inputs"] if not cell["show"]]
        assert not shown, f"{name}: code shown that is not tagged show-input: {shown[:3]}"
        if STUB_MARKER not in report["text"]:
            assert report["hidden_inputs"], f"{name}: no folded code cell (was the page made by the book runner?)"


def test_no_raw_dollar_in_tables(visited):
    raw = [(name, t["text"][:120]) for name, r in _chapters(visited).items() for t in r["tables"] if "$" in t["text"]]
    assert not raw, f"tables showing raw $ (math split by a | or not typeset): {raw}"


def test_every_table_fits_the_text_column(visited):
    """A table wider than the 688-px column scrolls sideways with its last columns out of sight."""
    wide = [
        (name, round(t["overflow"]), t["header"][:4] or t["text"][:60])
        for name, r in _chapters(visited).items()
        for t in r["tables"]
        if t["overflow"] > 2
    ]
    assert not wide, f"tables wider than the text column (page, px too wide, first headers): {wide}"


def test_introduction_opens_with_a_verdict_table_linking_every_chapter(visited):
    intro = visited["pages"][Path(toc_files(ROOT)[0]).name]
    tables = [t for t in intro["tables"] if {"claim", "paper", "verdict", "chapter"} <= set(t["header"])]
    assert tables, f"no verdict table (claim | paper | measured here | verdict | chapter) on {intro['url']}"
    rows = tables[0]["row_links"]
    chapters = [e for e in toc_files(ROOT) if Path(e).parent == GENERATED]
    assert rows and all(links for links in rows), "a verdict row without a link to its chapter"
    linked = {urlparse(link).path.rsplit("/", 1)[-1].removesuffix(".html") for links in rows for link in links}
    assert {Path(c).name for c in chapters} <= linked, f"chapters missing from the verdict table: {chapters}"
    assert intro["text"].find("verdict") < intro["text"].find("What the paper claims"), "the verdict is not up front"


def _glued_in_run(notebook) -> dict:
    """key -> value of every ``glue(key, value)`` output of an executed notebook (numbers and strings)."""
    found = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = output.get("data", {})  # under papermill the mime type carries a papermill.record prefix
            text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
            if name and text is not None:
                try:
                    found[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):  # a rich object (Markdown, a figure): not a number to format
                    continue
    return found


_PASTED = re.compile(r'<span class="pasted-text">(.*?)</span>', re.S)


def test_glued_numbers_in_the_html_equal_the_results_files():
    """Each {glue:text}`key:spec` of a chapter renders as format(value, spec), value from results/<name>/*.json."""
    if not (HTML / "index.html").is_file():
        _unavailable(f"no built book at {HTML}: run `make book PROFILE=quick` first")
    checked = 0
    for entry in toc_files(ROOT):
        executed = ROOT / f"{entry}.ipynb"
        if Path(entry).parent != GENERATED or not executed.is_file():
            continue
        references = glue_references(nbformat.read(str(executed), as_version=4))
        if not references:
            continue
        notebook = nbformat.read(str(executed), as_version=4)
        values = _glued_in_run(notebook)  # what the run glued (myst-nb's outputs in the executed notebook)
        for path in sorted((ROOT / "results" / Path(entry).name).glob("*.json")):
            data = json.loads(path.read_text())
            recorded = data.get("glue", {}) if isinstance(data, dict) else {}
            for key, value in recorded.items():  # a chapter that records its glue: the run and the file agree
                if key in values and isinstance(value, (int, float)) and isinstance(values[key], (int, float)):
                    assert values[key] == pytest.approx(value, rel=1e-12), f"{entry}: {key} differs from {path.name}"
            values.update(recorded)
        missing = sorted({key for key, _ in references} - set(values))
        assert not missing, f"{entry}: glued keys neither glued by the run nor in results/*.json 'glue': {missing}"
        expected = [format(values[key], spec) for key, spec in references]
        shown = [html.unescape(text) for text in _PASTED.findall((HTML / f"{entry}.html").read_text())]
        assert shown == expected, f"{entry}: glued numbers on the page differ from the results files"
        checked += 1
    assert checked, "no chapter glues a number into its prose"
