"""The command line: `pairsift.cli.main` is the console script."""

from .main import cli, main
from .select import select_cmd

__all__ = ["cli", "main", "select_cmd"]
