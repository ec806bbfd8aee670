"""The ground-truth table: every canonical network of a space's uniform part, fully trained.

For each network (one residual connection and one wiring for the whole network, at each depth;
equivalent genotypes folded by ``canonical()``) and each seed, this trains exactly the network the
search builds for the data (same stem, same canonical key) through the one training path
(``snnas.fit``), on every training image outside the validation split, then records validation
accuracy per epoch, the official test accuracy, params, SOPs, firing rate, wall time and the
``retrain`` command that reproduces the row.

    python bench/groundtruth.py                                  # fashion-10, dense_additive, seeds 0,1,2
    python bench/groundtruth.py --threads 1 & python bench/groundtruth.py --threads 1   # two at once
    python bench/groundtruth.py --data imagenet-20:ROOT          # a table for your own data
    python bench/groundtruth.py --report-only                    # print the table as it stands

Resumable: every run checkpoints each epoch under ``--work`` and lands in the JSON when it ends,
so a kill loses at most the epoch in flight; two processes claim runs with a lock per run and
merge results under a file lock. ResNet-18 networks come first, seed by seed, so a partial table
is a complete table of the smaller networks.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from benchlib import SharedResults, set_threads, work_through

from snnas.cli import run_guarded
from snnas.cli.retrain import retrain_command
from snnas.data import load_splits
from snnas.errors import SnnasError
from snnas.fit import FitSettings, GenotypeFit, built_genotype, fit_history, val_curve
from snnas.groundtruth import TABLE_FORMAT, GroundTruthError, Table, default_table_path
from snnas.presets import get_preset, list_presets
from snnas.spaces import load_space
from snnas.train import Callback


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", default="fashion-10", help="data spec (default fashion-10)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--space", default="dense_additive", help="space whose uniform part is tabulated")
    p.add_argument("--recipe", default="short", help="training recipe (default short)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--timesteps", default="1", help="T per phase, e.g. 1 or 1,4 (default 1)")
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--depths", default=None, help="only these depths, e.g. 18")
    p.add_argument("--blocks", default=None, help="only these blocks, e.g. pa_a,origin")
    p.add_argument("--train-per-class", type=int, default=None, help="default: every training image")
    p.add_argument("--val-per-class", type=int, default=None, help="default: a tenth of each class")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/groundtruth_<data>.json)")
    p.add_argument("--work", type=Path, default=Path("runs/groundtruth"), help="checkpoints of runs in flight")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 per process when running two)")
    p.add_argument("--device", default=None)
    p.add_argument("--report-only", action="store_true", help="print the table; train nothing")
    return p.parse_args(argv)


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise SnnasError(f"--{name} {text!r}: expected non-negative integers separated by commas")
    return values


def preset_names(space, settings: FitSettings, resolution: int) -> dict[str, list[str]]:
    """Canonical key -> the preset names that build that network (the space's seeds first)."""
    names: dict[str, list[str]] = {}
    order = list(space.seed_presets) + [n for n in list_presets() if n not in space.seed_presets]
    for name in order:
        g = get_preset(name).replace(stem=space.context.stem, neuron=space.context.neuron)
        names.setdefault(built_genotype(g, settings, resolution).key, []).append(name)
    return names


def table_networks(space, settings: FitSettings, resolution: int, depths: list[int] | None,
                   blocks: list[str] | None) -> list[dict[str, Any]]:
    """The space's uniform networks, one per canonical key, in file order (depth first)."""
    presets = preset_names(space, settings, resolution)
    out, seen = [], set()
    for params, genotype in space.uniform():
        gene = {name.split(".", 1)[-1]: value for name, value in params.items()}
        if depths is not None and int(gene.get("depth", 0)) not in depths:
            continue
        if blocks is not None and gene.get("block") not in blocks:
            continue
        built = built_genotype(genotype, settings, resolution)
        if built.key in seen:
            continue
        seen.add(built.key)
        names = presets.get(built.key, [])
        out.append({"key": built.key, "genotype": built.to_str(), "preset": names[0] if names else None,
                    "presets": names, **{k: gene[k] for k in ("depth", "block", "connect") if k in gene}})
    if not out:
        raise SnnasError(f"space {space.name!r}: no network left after --depths/--blocks")
    return out


def reproduce_command(net: dict[str, Any], args: argparse.Namespace, settings: FitSettings, seed: int) -> str:
    """The ``retrain`` command that trains this row again (the same training path)."""
    return retrain_command(net["genotype"], args.data, settings.replace(seed=seed), resolution=args.resolution,
                           train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                           data_seed=args.data_seed)


class PrintEpoch(Callback):
    def __init__(self, label: str):
        self.label = label

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        print(f"  {self.label} epoch {epoch}/{metrics.get('epochs')}: val {metrics.get('val_acc', float('nan')):.4f} "
              f"({metrics.get('images_per_s', 0):.0f} img/s)", flush=True)
        return False


def train_row(net: dict[str, Any], seed: int, splits, settings: FitSettings, work: Path, command: str,
              device: str | None = None) -> dict[str, Any]:
    """One full training of ``net`` (checkpointed under ``work``, resumed from it) and its row."""
    started = time.monotonic()
    fit = GenotypeFit(net["genotype"], splits, settings.replace(seed=seed), device=device)
    if fit.genotype.key != net["key"]:
        raise SnnasError(f"{net['genotype']}: builds {fit.genotype.key}, not {net['key']}")
    label = net.get("preset") or net["key"]
    results = fit.run(out_dir=work, resume=True, callbacks=[PrintEpoch(f"{label} s{seed}")])
    history = fit_history(results)
    test = fit.evaluate(splits.test)
    measured = fit.measure()
    return {
        **net, "seed": seed, "test_acc": test["acc"], "test_loss": test["loss"], "test_images": test["images"],
        "val_acc": history[-1].get("val_acc"), "val_curve": val_curve(results),
        "train_loss_curve": [m["train_loss"] for m in history], "params": fit.params,
        "sops": measured["sops"], "macs": measured["macs"], "neuron_mac_ops": measured["neuron_mac_ops"],
        "energy_mj": measured["energy_mj"],
        "firing_rate": measured["firing_rate"], "firing_by_stage": measured["firing_by_stage"],
        "epochs_run": len(history), "train_s": round(sum(m["train_s"] for m in history), 1),
        "wall_s": round(time.monotonic() - started, 1), "resumed_from": results[0].resumed_from,
        "threads": torch.get_num_threads(), "command": command,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def print_table(table: Table, expected: int | None = None) -> None:
    nets = table.networks()
    seeds = table.seeds()
    fit = table.settings.get("fit") or {}
    print(f"\nground truth: {table.settings.get('data')} | recipe {fit.get('recipe')}, epochs {fit.get('epochs')}, "
          f"T {fit.get('timesteps')}, width {fit.get('width_mult')}, stem {fit.get('stem')} | "
          f"{len(table.runs)} runs of {len(nets)} networks, seeds {seeds}"
          + (f" ({expected - len(table.runs)} runs still to train)" if expected and expected > len(table.runs) else ""))
    print("\n| rank | network | depth | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean test % | spread | params | MSOPs / image | wall s |")
    print("|---:|---|---:|" + "---:|" * len(seeds) + "---:|---:|---:|---:|---:|")
    for rank, n in enumerate(nets, 1):
        label = n.preset or f"{n.extra.get('block')}/{n.extra.get('connect')}"
        print(f"| {rank} | {label} | {n.extra.get('depth', '')} | "
              + " | ".join(_pct(n.accs.get(s)) for s in seeds)
              + f" | **{100 * n.mean:.2f}** | {100 * n.spread:.2f} | {n.params or 0:,} | "
              f"{(n.sops or 0) / 1e6:.2f} | {n.wall_s or 0:.0f} |")
    spreads = [n.spread for n in nets if len(n.accs) > 1]
    if spreads:
        print(f"\nseed-to-seed spread (max - min) of a network's test accuracy: median {100 * sorted(spreads)[len(spreads) // 2]:.2f}, "
              f"max {100 * max(spreads):.2f} points")
    for (a, b), tau in table.seed_taus().items():
        print(f"seed {a} vs seed {b}: Kendall tau {tau:.3f}")
    if len(seeds) > 1:
        print(f"mean seed-to-seed tau (the noise floor of any ranking against this table): {table.seed_tau():.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    seeds = _ints(args.seeds, "seeds")
    depths = _ints(args.depths, "depths") if args.depths else None
    blocks = [b for b in args.blocks.split(",") if b] if args.blocks else None
    settings = FitSettings(recipe=args.recipe, epochs=(args.epochs,), timesteps=tuple(_ints(args.timesteps, "timesteps")),
                           width_mult=args.width_mult)
    out = args.out or default_table_path(args.data)
    splits = load_splits(args.data, resolution=args.resolution, data_seed=args.data_seed, cache_dir=args.cache_dir,
                         train_per_class=args.train_per_class, val_per_class=args.val_per_class)
    space = load_space(args.space, resolution=splits.resolution)
    networks = table_networks(space, settings, splits.resolution, depths, blocks)
    table_settings = {
        "data": args.data, "data_seed": args.data_seed, "space": space.name, "recipe": args.recipe,
        "fit": {k: v for k, v in settings.to_dict().items() if k != "seed"},
        "phases": [{k: v for k, v in p.config.to_dict().items() if k != "seed"} for p in settings.phases()],
        "train_per_class": args.train_per_class, "val_per_class": args.val_per_class, "resolution": splits.resolution,
        "images": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
    }
    results = SharedResults(out, TABLE_FORMAT, table_settings, identity=lambda r: (r["key"], r["seed"]))
    order = [(net, seed) for depth in sorted({n.get("depth", "") for n in networks}, key=str)
             for seed in seeds for net in networks if net.get("depth", "") == depth]
    print(f"{len(networks)} networks x {len(seeds)} seeds on {splits!r} -> {out} "
          f"({torch.get_num_threads()} threads, {platform.node()}, pid {os.getpid()})", flush=True)
    if not args.report_only:
        def run(item) -> None:
            net, seed = item
            print(f"training {net['preset'] or net['key']} ({net['key']}) seed {seed}", flush=True)
            row = train_row(net, seed, splits, settings, args.work / f"{net['key']}-s{seed}",
                            reproduce_command(net, args, settings, seed), args.device)
            results.add(row)
            print(f"{net['preset'] or net['key']} seed {seed}: test {100 * row['test_acc']:.2f}% "
                  f"in {row['wall_s']:.0f} s", flush=True)

        work_through(order, results.done, identity=lambda item: (item[0]["key"], item[1]),
                     lock_path=lambda item: args.work / f"{item[0]['key']}-s{item[1]}.lock", run=run)
    try:
        print_table(Table.read(out), expected=len(order))
    except GroundTruthError as exc:
        raise SnnasError(str(exc)) from None
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
