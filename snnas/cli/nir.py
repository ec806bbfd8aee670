"""``snnas nir SPEC|MODEL.pt --out net.nir``: a network in NIR, for neuromorphic hardware and simulators.

A SPEC (preset, genotype string or JSON) is built with the stem policy for ``--resolution`` and
initial weights (``--seed``); a model file (``retrain``'s or ``export``'s ``model.pt``) keeps its
trained weights. See :mod:`snnas.nir_export` for what converts and what is refused.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nir", help="export a network to NIR (neuromorphic intermediate representation)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("spec", metavar="SPEC|MODEL.pt", help="preset, genotype string or JSON, or a model file")
    p.add_argument("--out", required=True, metavar="FILE.nir", help="the NIR file to write (HDF5)")
    p.add_argument("--resolution", type=int, default=None,
                   help="image side (default: the model file's, else 28)")
    p.add_argument("--classes", type=int, default=10, help="classes of a SPEC's classifier (default 10)")
    p.add_argument("--in-channels", type=int, default=1, help="image channels of a SPEC (default 1)")
    p.add_argument("--width-mult", type=float, default=1.0, help="width multiplier of a SPEC (default 1)")
    p.add_argument("--timesteps", type=int, default=None, help="T the readout averages over (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of a SPEC's initial weights")
    p.add_argument("--fold-pools", action="store_true",
                   help="no pooling node: each pool folded into the linear map next to it, for readers without "
                        "AvgPool2d (Norse); the classifier grows by the last feature map's H x W")
    p.add_argument("--json", action="store_true", help="print the node summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from snnas.checkpoint import load_model, read_model_file
    from snnas.compiler import build_model, resolve_genotype
    from snnas.errors import SnnasError
    from snnas.files import check_output_file
    from snnas.genotype.vocabulary import AUTO_STEM, resolve_stem
    from snnas.nir_export import export_graph, node_summary

    check_output_file(args.out, "--out", SnnasError)
    for name in ("resolution", "classes", "in_channels", "timesteps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SnnasError(f"--{name.replace('_', '-')} {value}: expected an integer >= 1")
    if args.spec.endswith(".pt"):
        model = load_model(args.spec)
        extra = read_model_file(args.spec).get("extra") or {}
        resolution = args.resolution or (extra.get("resolution") if isinstance(extra.get("resolution"), int) else 28)
    else:
        resolution = args.resolution or 28
        g = resolve_genotype(args.spec)
        g = g.replace(stem=resolve_stem(AUTO_STEM, g.stem, resolution))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = build_model(g, num_classes=args.classes, in_channels=args.in_channels, width_mult=args.width_mult)
    if args.timesteps is not None:
        model.timesteps = args.timesteps
    graph = export_graph(model, resolution, Path(args.out), fold_pools=args.fold_pools)
    summary = {"file": args.out, "resolution": resolution, "timesteps": model.timesteps,
               "genotype": model.genotype.to_str(), **node_summary(graph)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{args.out}: {summary['nodes']} NIR nodes, {summary['edges']} edges, {resolution} px; run "
              f"{model.timesteps} step(s) of dt {summary['dt']:g} s on the same image and average the outputs")
        print("  node types: " + ", ".join(f"{kind} {n}" for kind, n in summary["node_types"].items()))
        for part, n in summary["by_block"].items():
            print(f"  {part:<20} {n:>4}")
    return 0
