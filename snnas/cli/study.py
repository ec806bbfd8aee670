"""``snnas study check URL``: is a storage reachable and usable? (one line, no password shown).
``snnas study create ...``: the same as ``search.py --create-only``, for scripts that start workers."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="check a storage, or create a study before starting workers")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="connect to a storage URL and report it (password hidden)")
    check.add_argument("url")
    check.set_defaults(func=run_check)
    create = actions.add_parser("create", help="create the search's studies and enqueue its seeds, then exit")
    from snnas.cli.search import add_arguments

    add_arguments(create)
    create.set_defaults(func=run_create)


def run_check(args: argparse.Namespace) -> int:
    from snnas.study.storage import check_storage

    print(check_storage(args.url))
    return 0


def run_create(args: argparse.Namespace) -> int:
    from snnas.cli.search import run

    args.create_only = True
    return run(args)
