"""``snnas show SPEC``: a genotype's string, key and parameter count, optionally drawn."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a genotype's string, key and parameter count",
                       description="SPEC is a preset name, a genotype string or a genotype JSON file.")
    p.add_argument("spec", nargs="?", help="preset name, genotype string or path to genotype JSON")
    p.add_argument("--classes", type=int, default=1000, help="number of classes for the parameter count (default 1000)")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="FILE.png", help="draw the architecture to a PNG file")
    p.add_argument("--list", action="store_true", help="list the preset names")
    p.add_argument("--space", metavar="NAME|FILE.toml",
                   help="describe a search space instead: its genes, size and how many networks it folds")
    p.add_argument("--resolution", type=int, default=28, help="image side that resolves a space's stem (default 28)")
    p.add_argument("--allow-large", action="store_true", help="build even when the weights would not fit in memory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snnas.compiler import build_model, count_parameters, resolve_genotype
    from snnas.errors import SnnasError
    from snnas.files import check_output_file
    from snnas.presets import list_presets

    if args.list:
        print("\n".join(list_presets()))
        return 0
    if args.space:
        return show_space(args.space, args.resolution, args.json)
    if args.spec is None:
        raise SnnasError("show: give a SPEC (preset name, genotype string or JSON file), or --list")
    if args.draw:
        check_output_file(args.draw, "--draw", SnnasError)
    g = resolve_genotype(args.spec)
    model = build_model(g, num_classes=args.classes, in_channels=args.in_channels, width_mult=args.width_mult,
                        allow_large=args.allow_large)
    info = {"string": g.to_str(), "key": g.key, "canonical_key": g.canonical().key,
            "params": count_parameters(model), "stages": len(g.stages),
            "blocks": sum(s.depth for s in g.stages), "genotype": g.to_dict()}
    if args.draw:
        from snnas.plots.architecture import draw_architecture

        info["drawing"] = str(draw_architecture(g, args.draw))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(f"genotype  {info['string']}")
        print(f"key       {info['key']}" + ("" if info["canonical_key"] == info["key"] else f"  (canonical {info['canonical_key']})"))
        print(f"params    {info['params']:,}  ({args.classes} classes)")
        if args.draw:
            print(f"drawing   {info['drawing']}")
    return 0


def show_space(name: str, resolution: int, as_json: bool) -> int:
    from snnas.spaces import load_space
    from snnas.spaces.size import space_size

    space = load_space(name, resolution=resolution)
    size = space_size(space)
    info = {"name": space.name, "source": space.source, "builder": space.builder, "description": space.description,
            "genes": {g: list(c) for g, c in space.context.genes.items()},
            "per_stage": sorted(space.context.per_stage), "seeds": list(space.seed_presets),
            "objectives": list(space.objectives),
            "points": size.points, "networks": size.networks, "walked_whole": size.exact_walk}
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"space     {space.name} ({space.source}): {space.description}")
    for gene, choices in space.context.genes.items():
        where = "per stage" if gene in space.context.per_stage else "network"
        print(f"  {gene:<11} {where:<9} {', '.join(choices)}")
    how = "every point built" if size.exact_walk else "stage by stage"
    print(f"size      {size.points:,} points, {size.networks:,} distinct networks "
          f"({100 * size.folded:.1f}% fold into another point's network; counted {how})")
    print(f"seeds     {len(space.seed_presets)}: {', '.join(space.seed_presets)}")
    print(f"objectives {', '.join(space.objectives)} (a search's default; --objectives overrides)")
    return 0
