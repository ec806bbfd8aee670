"""Command-line parsing with the project's error convention (one line, exit status 2)."""
from __future__ import annotations

import argparse

from snnas.errors import one_line


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's error convention: one ``snnas: error:`` line and exit status 2
    (argparse's own prints the usage block first), naming the command and ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"snnas: error: {one_line(message)} (see {self.prog} --help)\n")
