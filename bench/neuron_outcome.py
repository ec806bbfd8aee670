"""What a neuron is worth at full training: the same networks with another neuron or another T,
beside their IF rows at T=1 in the ground-truth table.

The trainings come from ``bench/fulltrain.py`` (one results file per T, since a file holds one
fidelity); this only reads them and the table, groups the rows by network shape (the genotype
without its neuron) and by variant (the neuron with its settings, and T), and reports each
variant's mean test accuracy and spread over seeds, firing rate, SOPs, the neuron's own MACs,
energy and training time per epoch, with accuracy and energy against the same shape's IF at T=1.
Time per epoch is only comparable between rows trained under the same load: the figure that
compares neurons' speed is ``bench/gwr_cost.py``'s, measured in one run.

    python bench/neuron_outcome.py --results bench/results/gwr_fashion10.json bench/results/if_t2_fashion10.json \\
        bench/results/if_t4_fashion10.json --out bench/results/gwr_outcome.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchlib import over_seeds

from snnas.cli import run_guarded
from snnas.errors import SnnasError
from snnas.files import atomic_write_json, parse_json, read_text
from snnas.genotype import Genotype
from snnas.groundtruth import Table
from snnas.plots.files import plt, save_png

OUTCOME_FORMAT = "snnas-neuron-outcome/1"
BASELINE = "if, T=1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, default=Path("bench/results/groundtruth_fashion10.json"))
    p.add_argument("--results", type=Path, nargs="+", required=True, help="bench/fulltrain.py results files")
    p.add_argument("--out", type=Path, required=True, help="summary JSON (the plot goes beside it, .png)")
    return p.parse_args(argv)


def split_neuron(genotype: str) -> tuple[str, str]:
    """The neuron with its settings, and the network without it (what stays fixed while the neuron or
    T changes), both in the genotype's own string form: the neuron's field comes first."""
    neuron, shape = Genotype.from_str(genotype).to_str().split("|", 1)
    return neuron, shape


def shape_of(genotype: str) -> str:
    return split_neuron(genotype)[1]


def variant_of(genotype: str, timesteps: int) -> str:
    return f"{split_neuron(genotype)[0]}, T={timesteps}"


def first_timesteps(settings: dict[str, Any]) -> int:
    steps = (settings.get("fit") or {}).get("timesteps") or [1]
    return int(steps[0])


def load_rows(table: Table, results: list[Path]) -> list[dict[str, Any]]:
    """Every run, tagged with its shape, variant and T; the table's rows are IF at its T."""
    rows = [{**r, "timesteps": first_timesteps(table.settings)} for r in table.runs]
    for path in results:
        doc = parse_json(read_text(path, "results", SnnasError), str(path), SnnasError)
        if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
            raise SnnasError(f"{path}: not a bench/fulltrain.py results file (no runs)")
        timesteps = first_timesteps(doc.get("settings") or {})
        for i, r in enumerate(doc["runs"]):
            if not isinstance(r, dict) or not isinstance(r.get("genotype"), str) \
                    or not isinstance(r.get("test_acc"), (int, float)) or not isinstance(r.get("seed"), int):
                raise SnnasError(f"{path}: run {i} lacks a genotype, seed or test_acc")
            rows.append({**r, "timesteps": timesteps})
    return [{**r, "shape": shape_of(r["genotype"]), "variant": variant_of(r["genotype"], r["timesteps"])} for r in rows]


def summarize(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per (shape, variant) for the shapes that have a variant besides the baseline."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["shape"], r["variant"]), []).append(r)
    shapes = {shape for shape, variant in groups if variant != BASELINE}
    out = []
    for (shape, variant), runs in sorted(groups.items()):
        if shape not in shapes:
            continue
        per_epoch = [{**r, "epoch_s": r["train_s"] / (r.get("epochs_run") or 1) if r.get("train_s") else None}
                     for r in runs]
        out.append({"network": names.get(shape) or short_name(runs[0]["genotype"]), "shape": shape, "variant": variant,
                    "genotype": runs[0]["genotype"],
                    **over_seeds(per_epoch, ("firing_rate", "sops", "neuron_mac_ops", "energy_mj", "epoch_s"))})
    base = {e["shape"]: e for e in out if e["variant"] == BASELINE}
    for e in out:
        ref = base.get(e["shape"])
        e["delta_acc_points"] = None if ref is None else 100 * (e["test_acc_mean"] - ref["test_acc_mean"])
        e["energy_ratio"] = None if ref is None or not ref["energy_mj"] or e["energy_mj"] is None \
            else e["energy_mj"] / ref["energy_mj"]
    return out


def short_name(genotype: str) -> str:
    """Stage widths and blocks, for shapes without a preset name: ``32-96-256-512 x1-1-1-1``."""
    stages = Genotype.from_str(genotype).stages
    return "-".join(str(s.width) for s in stages) + " x" + "-".join(str(s.depth) for s in stages)


def network_names(table: Table) -> dict[str, str]:
    names = {}
    for r in table.runs:
        preset = r.get("preset") or next(iter(r.get("presets") or []), None)
        if preset:
            names.setdefault(shape_of(r["genotype"]), preset)
    return names


def print_report(entries: list[dict[str, Any]]) -> None:
    fmt = lambda v, spec, scale=1.0: "-" if v is None else format(v * scale, spec)
    print("\n| network | neuron, T | seeds | mean test % | spread | vs IF T=1 (points) | firing | MSOPs "
          "| neuron MMACs | energy uJ | x IF T=1 | s / epoch |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in entries:
        print(f"| {e['network']} | {e['variant']} | {','.join(map(str, e['seeds']))} | {100 * e['test_acc_mean']:.2f} "
              f"| {100 * e['test_acc_spread']:.2f} | {fmt(e['delta_acc_points'], '+.2f')} | {fmt(e['firing_rate'], '.3f')} "
              f"| {fmt(e['sops'], '.3f', 1e-6)} | {fmt(e['neuron_mac_ops'], '.3f', 1e-6)} "
              f"| {fmt(e['energy_mj'], '.3f', 1e3)} | {fmt(e['energy_ratio'], '.2f')} | {fmt(e['epoch_s'], '.0f')} |")


def plot(entries: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy against energy, one colour per network, one marker per variant; bars: the spread."""
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.8))
    networks = sorted({e["network"] for e in entries})
    variants = sorted({e["variant"] for e in entries})
    markers = "osD^v<>PX*"
    for e in entries:
        if e["energy_mj"] is None:
            continue
        color = f"C{networks.index(e['network']) % 10}"
        marker = markers[variants.index(e["variant"]) % len(markers)]
        half = 50 * e["test_acc_spread"]
        ax.errorbar(1e3 * e["energy_mj"], 100 * e["test_acc_mean"], yerr=half, fmt=marker, color=color, capsize=3,
                    markersize=7, alpha=0.9)
    for i, n in enumerate(networks):
        ax.plot([], [], "-", linewidth=6, color=f"C{i % 10}", label=n)  # a swatch: no marker to read as a variant
    for i, v in enumerate(variants):
        ax.plot([], [], markers[i % len(markers)], color="0.4", label=v)
    ax.set_xlabel("energy per image (uJ, after training)")
    ax.set_ylabel("test accuracy % (mean over seeds; bar: spread)")
    ax.set_title("neurons and T at the table's fidelity")
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table = Table.read(args.table)
    entries = summarize(load_rows(table, args.results), network_names(table))
    if not entries:
        raise SnnasError("no network in the results shares a shape with the table: nothing to compare")
    atomic_write_json(args.out, {"format": OUTCOME_FORMAT, "table": str(args.table),
                                 "results": [str(p) for p in args.results], "networks": entries})
    print_report(entries)
    drawn = plot(entries, args.out.with_suffix(".png"))
    print(f"\nresults: {args.out}" + (f"\nplot: {drawn}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
