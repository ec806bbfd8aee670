"""``snnas export`` (and ``scripts/export.py``): a ranked network of a search to ``DIR/<key>/``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", required=True, help="the search's study name (phase 2 is read with it)")
    p.add_argument("--storage", default=None,
                   help="sqlite:///F, postgresql://..., journal:///F (default RUNS/<study>/study.db)")
    p.add_argument("--runs", type=Path, default=Path("runs"),
                   help="the search's output root, holding <study>/study.db and <study>/artifacts/ (default runs)")
    p.add_argument("--artifacts", default=None, metavar="DIR|s3://BUCKET/PREFIX",
                   help="the study's artifact store (default: the one the study records, else RUNS/<study>/artifacts)")
    p.add_argument("--rank", type=int, default=1, help="which network of the final ranking (default 1, the best)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/<key>/")
    p.add_argument("--nir", action="store_true", help="also write net.nir, the network in NIR (pip install 'snnas[nir]')")
    p.add_argument("--resolution", type=int, default=None,
                   help="image side the NIR graph is built for (default: the one the weights were trained at)")
    p.add_argument("--nir-fold-pools", action="store_true",
                   help="net.nir without pooling nodes, each pool folded into the linear map next to it (for "
                        "readers without AvgPool2d, such as Norse); the classifier grows by the last map's H x W")


def run(args: argparse.Namespace) -> int:
    from snnas.errors import SnnasError
    from snnas.files import check_output_dir
    from snnas.search.export import export_network, open_search

    if args.nir_fold_pools and not args.nir:
        raise SnnasError("--nir-fold-pools shapes net.nir: add --nir")
    check_output_dir(args.out, "--out", SnnasError)
    searches = open_search(args.study, args.storage, args.runs, args.artifacts)
    result = export_network(searches, args.rank, args.out, nir=args.nir, resolution=args.resolution,
                            nir_fold_pools=args.nir_fold_pools)
    row = result.row
    name = " = ".join(row.names) if row.names else row.genotype
    phase = "phase-2" if result.weights_phase == "phase2" else "phase-1"
    print(f"rank {row.rank}: {name} (key {row.key}), {phase} weights")
    print(f"exported to {result.path}/: genotype.json model.pt architecture.png card.md" + (" net.nir" if args.nir else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a ranked network of a search: genotype, weights, picture, card",
                       description="Write DIR/<key>/genotype.json, model.pt, architecture.png and card.md for "
                                   "the network at --rank of the search's final ranking.")
    add_arguments(p)
    p.set_defaults(func=run)
