"""``python -m rmtlib`` runs the command line."""

import sys

from rmtlib.cli.main import console

sys.exit(console())
