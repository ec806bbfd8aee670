"""Chosen networks trained at the ground-truth table's fidelity, held against the table's DANets.

The table (``bench/groundtruth.py``) holds the paper's uniform networks; this trains any other
network the same way (the same training path, data, recipe, epochs, width and seeds, ``--timesteps``
aside) so that it can stand beside them: hand-made shrinks, a search's finds, other neurons.
A network in the table at the same settings takes the table's rows instead of training again.

    python bench/fulltrain.py --nets shrink1='if|half16|basic.pa_b.16x1.s1.chain|...' danet_b_resnet18
    python bench/fulltrain.py --nets-file nets.json --seeds 0 --out bench/results/probe.json
    python bench/fulltrain.py --out bench/results/probe.json --report-only

Each network is ``NAME=SPEC`` (a genotype string) or a preset name. Resumable and shareable like
the table: runs checkpoint every epoch under ``--work``, two processes work through one list, and
every finished run lands in ``--out`` at once. The report gives each network's mean test accuracy,
spread over seeds, SOPs, energy and latency per image, and both as a ratio to DANet-B-18's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from benchlib import SharedResults, over_seeds, set_threads, work_through
from groundtruth import train_row

from snnas.cli import run_guarded
from snnas.cli.retrain import retrain_command
from snnas.compiler import build_model
from snnas.data import load_splits
from snnas.errors import SnnasError
from snnas.files import parse_json, read_text
from snnas.fit import FitSettings, built_genotype
from snnas.genotype import Genotype
from snnas.groundtruth import Table
from snnas.metrics import inference_latency
from snnas.presets import get_preset, list_presets
from snnas.search.leaderboard import summarize

FULLTRAIN_FORMAT = "snnas-fulltrain/1"
REFERENCE = "danet_b_resnet18"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="*", default=[], metavar="NAME=SPEC|PRESET")
    p.add_argument("--nets-file", type=Path, default=None, help="JSON object {name: genotype string}")
    p.add_argument("--table", type=Path, default=Path("bench/results/groundtruth_fashion10.json"))
    p.add_argument("--seeds", default=None, help="default: the table's seeds")
    p.add_argument("--timesteps", default=None, help="T per phase (default: the table's)")
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--work", type=Path, default=Path("runs/fulltrain"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def named_networks(items: list[str], nets_file: Path | None) -> dict[str, str]:
    """``{name: genotype string}`` from ``NAME=SPEC`` and preset arguments and a JSON file."""
    out: dict[str, str] = {}
    if nets_file is not None:
        doc = parse_json(read_text(nets_file, "--nets-file", SnnasError), str(nets_file), SnnasError)
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise SnnasError(f"--nets-file {nets_file}: expected a JSON object of name -> genotype string")
        out.update(doc)
    for item in items:
        name, sep, spec = item.partition("=")
        if sep:
            out[name] = spec
        elif item in list_presets():
            out[item] = get_preset(item).to_str()
        else:
            raise SnnasError(f"--nets {item!r}: expected NAME=GENOTYPE or a preset name")
    for name, spec in out.items():
        Genotype.from_str(spec)  # a bad genotype fails here, before any training
    return out


def summarize_network(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "key": runs[0]["key"], "genotype": runs[0]["genotype"], "params": runs[0].get("params"),
            **over_seeds(runs, ("sops", "energy_mj", "firing_rate", "train_s"))}


def latency_ms(genotype: Genotype, fit: FitSettings, resolution: int, classes: int = 10) -> float:
    """Inference latency per image of the network at its first phase's T, measured now (latency
    does not depend on the trained weights on a CPU: every convolution runs dense)."""
    model = build_model(genotype, num_classes=classes, in_channels=1, timesteps=fit.phases()[0].timesteps,
                        width_mult=float(fit.width_mult))
    return inference_latency(model, torch.rand(1, 1, resolution, resolution), repeats=20, warmup=3).ms_per_image


def ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or not ref else f"{value / ref:.2f}"


def print_report(rows: list[dict[str, Any]]) -> None:
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    print("\n| network | genotype | seeds | mean test % | spread | MSOPs | energy uJ | x DANet-B-18 | "
          "latency ms | x DANet-B-18 | firing |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: -r["test_acc_mean"]):
        print(f"| {r['name']} | {summarize(r['genotype'])} | {','.join(map(str, r['seeds']))} | "
              f"{100 * r['test_acc_mean']:.2f} | {100 * r['test_acc_spread']:.2f} | {(r['sops'] or 0) / 1e6:.3f} | "
              f"{1e3 * (r['energy_mj'] or 0):.3f} | {ratio(r['energy_mj'], ref and ref['energy_mj'])} | "
              f"{r['latency_ms'] or 0:.2f} | {ratio(r['latency_ms'], ref and ref['latency_ms'])} | "
              f"{r['firing_rate'] or 0:.3f} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    table = Table.read(args.table)
    ts = table.settings
    nets = named_networks(args.nets, args.nets_file)
    fit = FitSettings.from_dict({**(ts.get("fit") or {}), "seed": 0})
    if args.timesteps:
        fit = fit.replace(timesteps=tuple(int(t) for t in args.timesteps.split(",")))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else table.seeds()
    settings = {"table": str(args.table), "data": ts["data"], "fit": fit.to_dict()}
    store = SharedResults(args.out, FULLTRAIN_FORMAT, settings, identity=lambda r: (r["key"], r["seed"]))
    resolution = int(ts.get("resolution") or 28)
    built = {name: built_genotype(Genotype.from_str(spec), fit, resolution) for name, spec in nets.items()}
    same_fit = fit.to_dict() == {**(ts.get("fit") or {}), "seed": 0}
    in_table = {(r["key"], r["seed"]) for r in table.runs} if same_fit else set()
    todo = [(name, g, seed) for seed in seeds for name, g in built.items() if (g.key, seed) not in in_table]
    if todo and not args.report_only:
        splits = load_splits(ts["data"], resolution=ts.get("resolution"), data_seed=int(ts.get("data_seed", 0)),
                             train_per_class=ts.get("train_per_class"), val_per_class=ts.get("val_per_class"))
        def run(item) -> None:
            name, g, seed = item
            net = {"key": g.key, "genotype": g.to_str(), "preset": None, "name": name}
            print(f"training {name} ({g.key}) seed {seed}", flush=True)
            row = train_row(net, seed, splits, fit, args.work / f"{g.key}-{fit.key.replace('|', '_')}-s{seed}",
                            retrain_command(g.to_str(), ts["data"], fit.replace(seed=seed),
                                            resolution=ts.get("resolution"), train_per_class=ts.get("train_per_class"),
                                            val_per_class=ts.get("val_per_class"),
                                            data_seed=int(ts.get("data_seed", 0))), args.device)
            store.add(row)
            print(f"{name} seed {seed}: test {100 * row['test_acc']:.2f}% energy {1e3 * row['energy_mj']:.3f} uJ "
                  f"in {row['wall_s']:.0f} s", flush=True)

        work_through(todo, store.done, identity=lambda i: (i[1].key, i[2]),
                     lock_path=lambda i: args.work / f"{i[1].key}-{fit.key.replace('|', '_')}-s{i[2]}.lock", run=run)
    rows = list(store.runs()) + [r for r in table.runs if (r["key"], r["seed"]) in in_table]
    summary = []
    names = dict(nets) or {r.get("name") or r["key"]: r["genotype"] for r in store.runs()}
    for name, spec in names.items():
        key = built[name].key if name in built else built_genotype(Genotype.from_str(spec), fit, resolution).key
        mine = [r for r in rows if r["key"] == key and r["seed"] in seeds]
        if mine:
            summary.append({**summarize_network(name, mine),
                            "latency_ms": latency_ms(Genotype.from_str(mine[0]["genotype"]), fit, resolution)})
    print_report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
