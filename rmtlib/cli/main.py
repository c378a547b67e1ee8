"""The ``rmtlib`` command line: ``rmtlib analyze | prune | sweep | train | eval | book | schedule``.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the
sub-command and sets ``func`` (called with the parsed arguments, returning an exit code).
Bad input (rmtlib's own errors, file errors) exits with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from rmtlib.errors import InputError, RMTError

COMMANDS = [
    "rmtlib.cli.analyze",
    "rmtlib.cli.prune",
    "rmtlib.cli.sweep",
    "rmtlib.cli.book",
    "rmtlib.cli.train",
    "rmtlib.cli.schedule",
]

#: commands that need an optional extra (``pip install rmtlib[book]``: papermill, nbformat): without it
#: the other commands still work (a GPU machine has no papermill) and this one says what is missing
OPTIONAL_COMMANDS = {"rmtlib.cli.book": "book"}


def _unavailable(sub: argparse._SubParsersAction, module_name: str, err: ModuleNotFoundError) -> None:
    """Register ``module_name``'s command as one that only explains which package it lacks."""
    name, extra = module_name.rsplit(".", 1)[1], OPTIONAL_COMMANDS[module_name]
    message = f"needs the '{extra}' extra (pip install 'rmtlib[{extra}]'): module {err.name!r} is not installed"
    # its arguments are taken whatever they are ("+" prefix: --profile is just a word here), then refused
    p = sub.add_parser(name, help=f"(unavailable: {message})", prefix_chars="+", add_help=False)
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)

    def refuse(args: argparse.Namespace) -> int:
        raise InputError(message)

    p.set_defaults(func=refuse)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="rmtlib", description="Random-matrix-theory analysis and pruning of neural networks."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # only a missing third-party package of an optional command
            if module_name not in OPTIONAL_COMMANDS or (err.name or "rmtlib").split(".")[0] == "rmtlib":
                raise
            _unavailable(sub, module_name, err)
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RMTError, OSError) as err:  # every file error (a full disk too), not only three kinds
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
