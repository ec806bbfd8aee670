"""The ``snnas`` command: one sub-command per module, each exposing ``register(subparsers)``.

User errors (:class:`snnas.errors.SnnasError`) end as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Any, Callable

from snnas.argparsing import OneLineParser
from snnas.errors import SnnasError, excerpt, one_line

# Sub-command modules under snnas.cli; each defines register(subparsers) and sets `func`.
COMMANDS = ("show", "inspect", "search", "export", "retrain", "study", "nir")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="snnas", description="Architecture search over spiking-network topologies.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"snnas.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command whose module is not installed
            if exc.name != f"snnas.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def run_guarded(func: Callable[..., int | None], *args: Any) -> int:
    """Call ``func(*args)``; a user error becomes one ``snnas: error:`` line and exit status 2
    (the one error handler of the command, the scripts and the benchmarks)."""
    try:
        return int(func(*args) or 0)
    except SnnasError as exc:
        print(f"snnas: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snnas: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a path given by the user that the file system refuses outright
        if exc.errno != errno.ENAMETOOLONG:
            raise
        print(f"snnas: error: the path {excerpt(exc.filename)} is too long for this file system", file=sys.stderr)
        return 2
    except MemoryError:  # an allocation no estimate foresaw (a limit set after the check, fragmentation)
        print("snnas: error: out of memory; lower the width, depth, resolution, T or batch size", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
