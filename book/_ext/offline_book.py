"""Sphinx extension for this book: render formulas offline and drop duplicated page scripts.

- MathJax: when the ``jupyter-server-mathjax`` package is installed (the ``book`` extra), its
  MathJax 2.7 is copied into ``_static/mathjax`` and used instead of the CDN, so the book shows its
  formulas without network (class rooms, CI's browser test). Without the package: the CDN.
- sphinx-thebe registers its configuration script twice under Jupyter Book 1.0, which makes the
  browser report "Identifier 'THEBE_JS_URL' has already been declared"; identical scripts are
  emitted once.
- Launch buttons (Colab, Binder): shown only when ``repository.url`` is set in ``_config.yml``
  (empty by default; the theme would fail on an empty one). A chapter page is rendered from the
  executed copy ``book/generated/<name>.ipynb``, which is not committed, so its buttons open the
  template ``notebooks/<name>.ipynb`` instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

LOCAL_PATH = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"


def _mathjax_source() -> Path | None:
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    return static if (static / "MathJax.js").is_file() else None


def _use_local_mathjax(app: Any, config: Any) -> None:
    if _mathjax_source() is None:
        return
    config.mathjax_path = LOCAL_PATH
    config.mathjax3_config = None
    config.myst_update_mathjax = False
    config.mathjax2_config = {
        "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
        "TeX": {"extensions": ["AMSmath.js", "AMSsymbols.js"]},
        # the package ships the STIX-Web fonts only
        "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
        "SVG": {"font": "STIX-Web"},
        "messageStyle": "none",
        "showMathMenu": False,
    }


def _copy_mathjax(app: Any, exception: Exception | None) -> None:
    source = _mathjax_source()
    if exception is None and source is not None and app.builder.format == "html":
        shutil.copytree(source, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        # the same script is registered once with filename None and once with "" (same body)
        name = getattr(script, "filename", script) or ""
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


GENERATED_PATH = "book/generated/"
TEMPLATE_PATH = "notebooks/"
ENCODED_GENERATED, ENCODED_TEMPLATE = "book%2Fgenerated%2F", "notebooks%2F"


def _launch_only_with_repository(app: Any, config: Any) -> None:
    """No launch buttons without a repository to launch from."""
    options = config.html_theme_options
    if not str(options.get("repository_url") or "").strip():
        options["launch_buttons"] = {}


def _launch_templates(buttons: list) -> None:
    """Point every launch link at ``notebooks/<name>.ipynb`` rather than the uncommitted executed copy.

    Launch links are absolute (Colab, Binder); the download buttons' relative links stay as they are.
    """
    for button in buttons:
        if not isinstance(button, dict):
            continue
        url = button.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            for generated, template in ((GENERATED_PATH, TEMPLATE_PATH), (ENCODED_GENERATED, ENCODED_TEMPLATE)):
                url = url.replace(generated, template)
            button["url"] = url
        _launch_templates(button.get("buttons") or [])


def _fix_launch_links(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    _launch_templates(context.get("header_buttons") or [])


def setup(app: Any) -> dict:
    app.connect("config-inited", _use_local_mathjax)
    app.connect("config-inited", _launch_only_with_repository)
    app.connect("html-page-context", _fix_launch_links, priority=999)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
