"""``snnas inspect SPEC [SPEC ...]``: the paper's measurements for networks at initialisation.

Each SPEC (preset name, genotype string or genotype JSON file) is built under ``--seed`` and run
on one batch: with ``--data``, the first shuffled batch of that data's validation split; without
it, a seeded batch of standard-normal images (what normalised images look like to the first
layer). Prints firing rates, gradient stability, SAHD, params, MACs, SOPs, the neurons' own MACs
(the gwr neuron's carry) and energy; ``--json`` prints them as JSON instead (one object, or a list
for several SPECs); ``--plots DIR`` draws the layer-wise firing rates and gradient stability
(several SPECs overlaid) and each architecture.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_RESOLUTION = 64
DEFAULT_TIMESTEPS = 4
DEFAULT_BATCH = 16


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="firing rates, gradient stability, SOPs/energy and SAHD of genotypes at initialisation",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="+", metavar="SPEC", help="preset name, genotype string or genotype JSON file")
    p.add_argument("--data", metavar="SPEC", help="data spec (fashion-5, imagenet-20:ROOT, folder:ROOT, ...); "
                   "default: a seeded standard-normal batch")
    p.add_argument("--resolution", type=_positive_int, metavar="R",
                   help=f"image size (default {DEFAULT_RESOLUTION}; with --data, the data's own size)")
    p.add_argument("--timesteps", type=_positive_int, default=DEFAULT_TIMESTEPS, metavar="T",
                   help=f"time steps (default {DEFAULT_TIMESTEPS})")
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH, metavar="B",
                   help=f"images in the batch (default {DEFAULT_BATCH}; SAHD needs 2 or more)")
    p.add_argument("--classes", type=_positive_int, default=10, metavar="N",
                   help="classes of the head without --data (default 10)")
    p.add_argument("--in-channels", type=_positive_int, default=3, metavar="C",
                   help="image channels without --data (default 3)")
    p.add_argument("--width-mult", type=_positive_float, default=1.0, metavar="W", help="width multiplier (default 1)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the weights and of the batch (default 0)")
    p.add_argument("--bn-stats", choices=("batch", "running"), default="batch",
                   help="BatchNorm statistics: the batch's, as in training (default), or the stored running ones")
    p.add_argument("--layers", action="store_true", help="also print every spiking layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures to DIR")
    p.add_argument("--allow-large", action="store_true", help="build even when the weights would not fit in memory")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Batch:
    x: Any  # torch.Tensor [B, C, H, W]
    num_classes: int
    in_channels: int
    description: str


def seeded_model(spec, seed: int, **build_kwargs):
    """``build_model`` with weights drawn under ``seed``, leaving the global RNG as it was."""
    import torch

    from snnas.compiler import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, **build_kwargs)


def random_batch(batch_size: int, in_channels: int, resolution: int, seed: int):
    """A seeded batch of standard-normal images, the scale of normalised data."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, in_channels, resolution, resolution, generator=generator)


def load_batch(args: argparse.Namespace) -> Batch:
    import torch

    if args.data is None:
        resolution = args.resolution or DEFAULT_RESOLUTION
        x = random_batch(args.batch_size, args.in_channels, resolution, args.seed)
        return Batch(x, args.classes, args.in_channels,
                     f"{args.batch_size} standard-normal images, {resolution} px, seed {args.seed}")
    from snnas.data import BatchLoader, load_splits

    splits = load_splits(args.data, resolution=args.resolution, data_seed=args.seed)
    loader = BatchLoader(splits.val, batch_size=args.batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(args.seed))
    x, _ = next(iter(loader))
    return Batch(x, splits.num_classes, splits.in_channels,
                 f"{x.shape[0]} validation images of {splits.spec}, {x.shape[-1]} px, seed {args.seed}")


def _label(spec: str, genotype, taken: set[str]) -> str:
    from snnas.presets import list_presets

    if spec in list_presets():
        base = spec
    elif spec.endswith(".json"):
        base = Path(spec).stem
    else:
        base = f"genotype-{genotype.key[:10]}"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    taken.add(label)
    return label


def _result(label: str, genotype, prof, batch: Batch, args: argparse.Namespace) -> dict:
    return {"spec": label, "genotype": genotype.to_str(), "key": genotype.key,
            "input": {"description": batch.description, "shape": list(batch.x.shape), "timesteps": args.timesteps,
                      "bn_stats": args.bn_stats, "width_mult": args.width_mult, "seed": args.seed},
            **prof.to_dict()}


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {suffix}"
    return f"{value:.0f}"


def _sahd_text(value: float | None) -> str:
    if value is None:
        return "n/a (needs a batch of 2 or more)"
    return f"{value:.4g}" if math.isfinite(value) else "-inf (singular kernel: images share spike patterns)"


def _summary(label: str, genotype, prof, batch: Batch, show_layers: bool) -> str:
    ops, firing, grad = prof.ops, prof.firing, prof.grad
    lines = [f"{label}   {genotype.to_str()}",
             f"  input        {batch.description}, T={ops.timesteps}",
             f"  params       {_si(ops.params)}",
             f"  MACs         {_si(ops.macs)} per image and time step (dense, architecture only)",
             f"  executed     {_si(ops.sops)} SOPs + {_si(ops.mac_ops)} MACs per image over {ops.timesteps} steps",
             *([f"  neurons      {_si(ops.neuron_mac_ops)} MACs per image over {ops.timesteps} steps "
                f"(the gwr neuron's carry between windows)"] if ops.neuron_mac_ops else []),
             f"  energy       {ops.energy_mj:.4g} mJ per image ({ops.e_ac_pj} pJ/SOP, {ops.e_mac_pj} pJ/MAC)",
             f"  firing rate  overall {firing.overall:.4f}, layer mean {firing.layer_mean:.4f}",
             "               " + ", ".join(f"{k} {v:.3f}" for k, v in firing.by_stage.items()),
             f"  grad. stab.  product {grad.product:.3g} (log10 {grad.log10_product:.2f}) over {len(grad.layers)} "
             f"layers, geometric mean {grad.geometric_mean:.4f}",
             f"  SAHD         {_sahd_text(prof.sahd)}"]
    if show_layers:
        grads = grad.values
        lines.append(f"  {'layer':<44} {'firing':>8} {'grad':>8}")
        for entry in firing.layers:
            g = grads.get(entry.layer.name, float("nan"))
            lines.append(f"  {entry.layer.name:<44} {entry.rate:>8.4f} {g:>8.4f}")
    return "\n".join(lines)


def _comparison(rows: list[tuple[str, Any]]) -> str:
    head = f"{'spec':<24} {'params':>9} {'SOPs':>9} {'energy mJ':>10} {'firing':>7} {'grad prod':>10} {'SAHD':>9}"
    lines = [head]
    for label, prof in rows:
        sahd = f"{prof.sahd:.4g}" if prof.sahd is not None else "n/a"
        lines.append(f"{label:<24} {_si(prof.ops.params):>9} {_si(prof.ops.sops):>9} {prof.ops.energy_mj:>10.4g} "
                     f"{prof.firing.overall:>7.4f} {prof.grad.product:>10.3g} {sahd:>9}")
    return "\n".join(lines)


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)


def _plots(directory: str, profiles: dict[str, Any], genotypes: dict[str, Any]) -> list[str]:
    from snnas.plots.architecture import draw_architecture
    from snnas.plots.diagnostics import plot_firing_rates, plot_grad_stability

    out = Path(directory)
    written = [plot_firing_rates({k: p.firing for k, p in profiles.items()}, out / "firing_rates.png"),
               plot_grad_stability({k: p.grad for k, p in profiles.items()}, out / "grad_stability.png")]
    for label, g in genotypes.items():
        name = "architecture.png" if len(genotypes) == 1 else f"architecture_{_file_name(label)}.png"
        written.append(draw_architecture(g, out / name, title=f"{label}: {g.to_str()}"))
    return [str(p) for p in written]


def run(args: argparse.Namespace) -> int:
    from snnas.compiler import resolve_genotype
    from snnas.errors import SnnasError
    from snnas.files import check_output_dir
    from snnas.metrics import profile

    if args.plots:
        check_output_dir(args.plots, "--plots", SnnasError)
    taken: set[str] = set()
    genotypes = {}
    for spec in args.specs:  # every SPEC is checked before any work starts
        g = resolve_genotype(spec)
        genotypes[_label(spec, g, taken)] = g
    batch = load_batch(args)
    profiles, results = {}, []
    for label, g in genotypes.items():
        print(f"inspecting {label} ...", file=sys.stderr, flush=True)
        model = seeded_model(g, args.seed, allow_large=args.allow_large, num_classes=batch.num_classes,
                             in_channels=batch.in_channels,
                             timesteps=args.timesteps, width_mult=args.width_mult)
        prof = profile(model, batch.x, bn_stats=args.bn_stats)
        profiles[label] = prof
        results.append(_result(label, g, prof, batch, args))
    plots = _plots(args.plots, profiles, genotypes) if args.plots else []
    if args.json:
        payload: Any = results[0] if len(results) == 1 else results
        if plots:
            for r in results:
                r["plots"] = plots
        print(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False))
        return 0
    for label, g in genotypes.items():
        print(_summary(label, g, profiles[label], batch, args.layers))
        print()
    if len(profiles) > 1:
        print(_comparison(list(profiles.items())))
    for path in plots:
        print(f"wrote {path}")
    return 0
