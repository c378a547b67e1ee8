"""``rmtlib book [--profile quick|full] [--only NAME]``: run the notebooks and build the book."""

from __future__ import annotations

import argparse
from pathlib import Path

from rmtlib.book import run_book
from rmtlib.cli.args import add_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "book", "execute the notebooks (papermill, cached) and build the Jupyter Book")
    p.add_argument("--profile", default="full", help="parameter set from experiments.yaml: quick or full")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this notebook (repeatable); the book is still built from all executed chapters",
    )
    p.add_argument("--force", action="store_true", help="re-run notebooks even when the cache says they are current")
    p.add_argument("--no-build", action="store_true", help="execute the notebooks but do not build the HTML")
    p.add_argument("--root", default=".", help="project folder holding experiments.yaml and _toc.yml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    run_book(Path(args.root), args.profile, only=args.only, force=args.force, build=not args.no_build)
    return 0
