"""The layers of rmtlib import one way:
theory <- spectral <- nn <- pruning / train <- experiments <- plots <- book <- cli.

Every import statement of every module (function-local ones included) is read with ``ast`` and
its target's layer compared with the importer's; ARCHITECTURE.md explains the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rmtlib"

#: layer of each top-level part of rmtlib; a module may import its own layer and those below it
LAYERS: dict[str, int] = {
    "errors": 0,
    "atomic": 0,
    "runtime": 0,
    "theory": 1,
    "spectral": 2,
    "nn": 3,
    "pruning": 4,
    "train": 4,
    "experiments": 5,
    "plots": 6,
    "book": 7,  # the notebook runner
    "cli": 8,
}
#: siblings on one layer that must not import each other
SIBLINGS_APART = {("pruning", "train"), ("train", "pruning")}


def _part(module: str) -> str | None:
    """The top-level part of ``rmtlib.x.y`` (``x``), or None for ``rmtlib`` itself / other packages."""
    parts = module.split(".")
    return parts[1] if parts[0] == "rmtlib" and len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py") or p.parent != PACKAGE
    )


def test_every_part_has_a_layer():
    parts = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    wrong = []
    for line, name in _imports(path):
        target = _part(name)
        if name == "rmtlib":
            # the public namespace imports everything: only the version may be read from it (lazily)
            wrong.append(
                f"line {line}: imports the rmtlib namespace"
            ) if "__version__" not in path.read_text() else None
            continue
        if target is None:
            continue
        if LAYERS[target] > LAYERS[own] or (own, target) in SIBLINGS_APART:
            wrong.append(f"line {line}: {own} (layer {LAYERS[own]}) imports {name} (layer {LAYERS[target]})")
    assert not wrong, f"{path.relative_to(PACKAGE)}:\n" + "\n".join(wrong)


def test_the_rule_catches_an_upward_import(tmp_path: Path):
    """The checker itself: a spectral module importing the CLI is reported."""
    fake = tmp_path / "rmtlib" / "spectral" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from rmtlib.cli.args import key_values\nfrom ..theory import mp\n")
    names = [name for _, name in _imports_under(fake, tmp_path / "rmtlib")]
    assert names == ["rmtlib.cli.args", "rmtlib.theory"]
    assert LAYERS[_part(names[0])] > LAYERS["spectral"] >= LAYERS[_part(names[1])]


def _imports_under(path: Path, package: Path) -> list[tuple[int, str]]:
    global PACKAGE
    saved, PACKAGE = PACKAGE, package
    try:
        return _imports(path)
    finally:
        PACKAGE = saved
