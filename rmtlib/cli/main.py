"""The ``rmtlib`` command line: ``rmtlib analyze | prune | sweep | train | eval | book | schedule``.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the
sub-command and sets ``func`` (called with the parsed arguments, returning an exit code).
Bad input (rmtlib's own errors, missing files) exits with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from rmtlib.errors import RMTError

COMMANDS = [
    "rmtlib.cli.analyze",
    "rmtlib.cli.prune",
    "rmtlib.cli.sweep",
    "rmtlib.cli.book",
    "rmtlib.cli.train",
    "rmtlib.cli.schedule",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="rmtlib", description="Random-matrix-theory analysis and pruning of neural networks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RMTError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"rmtlib {args.command}: error: {err}", file=sys.stderr)
        return 2


def console() -> int:
    """The ``rmtlib`` console script: :func:`main`, with Ctrl-C reported in one line (exit 130) instead
    of a traceback. Every output rmtlib writes is atomic, so what is on disk is whole."""
    try:
        return main()
    except KeyboardInterrupt:
        print(
            "\nrmtlib: interrupted; files already written are complete (a sweep continues with --resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(console())
