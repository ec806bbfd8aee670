"""Which proxy predicts full training? A sweep of proxy settings held against the ground-truth table.

Each setting is a search phase-1 fidelity (data, images per class, epochs, batch, recipe with its
lr / warm-up / augmentation); for every network of the table and two seeds it trains exactly what
a search trial trains (``snnas.fit``, last-epoch validation accuracy) and reports, per setting:
Kendall tau and top-3 recall against the table's mean test accuracy, the proxy's own seed-to-seed
tau, networks left at chance by the proxy that learn in the table, and the wall time per trial.
The table's own seed-to-seed tau is printed beside them: no proxy can be judged beyond it.

    python bench/proxy_fidelity.py --against bench/results/groundtruth_fashion10.json
    python bench/proxy_fidelity.py --against ... --threads 1 &  python bench/proxy_fidelity.py --against ... --threads 1
    python bench/proxy_fidelity.py --against ... --report-only     # tables and plot from what is measured

Results land per run in ``bench/results/proxy_sweep.json`` (resumable, shareable by two processes)
and the plot of tau against cost in ``bench/results/proxy_sweep.png``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from benchlib import SharedResults, set_threads, work_through

from snnas.cli import run_guarded
from snnas.data import load_splits
from snnas.errors import SnnasError
from snnas.files import atomic_write_json, parse_json, read_text
from snnas.fit import FitSettings, GenotypeFit, val_curve
from snnas.groundtruth import Table, kendall_tau, pairwise_taus, top_k_recall
from snnas.plots.files import plt, save_png

SWEEP_FORMAT = "snnas-proxy-sweep/1"
CHANCE_MARGIN = 0.10  # a proxy score within this of chance (1/K) counts as "at chance"
LEARNS_MARGIN = 0.20  # a table accuracy this far above chance counts as "learns"


@dataclass(frozen=True)
class ProxySetting:
    """One phase-1 fidelity of the sweep. ``budget`` is the intended seconds per ResNet-18 trial."""

    name: str
    budget: int
    data: str
    per_class: int
    epochs: int
    recipe: str = "short"
    batch_size: int = 64
    lr_per_256: float | None = None
    warmup_epochs: float | None = None
    augment: str | None = None
    val_per_class: int = 100

    def fit(self, seed: int, width_mult: float) -> FitSettings:
        return FitSettings(recipe=self.recipe, epochs=(self.epochs,), timesteps=(1,), width_mult=width_mult,
                           seed=seed, batch_size=self.batch_size, lr_per_256=self.lr_per_256,
                           warmup_epochs=self.warmup_epochs, augment=self.augment)

    @property
    def train_images(self) -> int:
        """Training images a trial processes (the cost, free of machine load)."""
        classes = int(self.data.split(":")[0].rsplit("-", 1)[1])
        return self.per_class * classes * self.epochs

    def describe(self) -> str:
        parts = [f"{self.data}", f"{self.per_class}/class", f"{self.epochs} ep", f"b{self.batch_size}", self.recipe]
        parts += [f"{n} {v}" for n, v in (("lr", self.lr_per_256), ("warm-up", self.warmup_epochs),
                                           ("aug", self.augment)) if v is not None]
        return ", ".join(parts)


# Training images per trial: ~9k, ~18k and ~36k, the three tiers named "5 s", "10 s" and "20 s"
# (measured: about 10, 19 and 38 s of a width-1/4 ResNet-18 trial on two CPU cores, evaluation and
# BN recalibration included). "proxy" is the search's earlier recipe (crop + flip, lr 0.1 per 256), the rest
# vary the `short` recipe (no augmentation, lr 0.4 per 256) and the data.
SWEEP = (
    ProxySetting("5s-f5-proxy", 5, "fashion-5", 600, 3, recipe="proxy"),
    ProxySetting("5s-f5", 5, "fashion-5", 600, 3),
    ProxySetting("5s-f10", 5, "fashion-10", 300, 3),
    ProxySetting("5s-f5-b32", 5, "fashion-5", 600, 3, batch_size=32),
    ProxySetting("10s-f5", 10, "fashion-5", 1200, 3),
    ProxySetting("10s-f10", 10, "fashion-10", 600, 3),
    ProxySetting("10s-f10-lr0.8", 10, "fashion-10", 600, 3, lr_per_256=0.8),
    ProxySetting("10s-f10-wu0.2", 10, "fashion-10", 600, 3, warmup_epochs=0.2),
    ProxySetting("10s-f10-crop", 10, "fashion-10", 600, 3, augment="crop_flip"),
    ProxySetting("10s-f10-e2", 10, "fashion-10", 900, 2, lr_per_256=0.8),
    ProxySetting("20s-f10", 20, "fashion-10", 1200, 3),
    ProxySetting("20s-f5", 20, "fashion-5", 2400, 3),
    # the search's phase 2 (four times phase 1's images, the same sprint recipe): what promotion ranks by
    ProxySetting("40s-f10-lr0.8", 40, "fashion-10", 2400, 3, lr_per_256=0.8),
)
SETTINGS = {s.name: s for s in SWEEP}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--against", type=Path, required=True, help="ground-truth table (bench/groundtruth.py's JSON)")
    p.add_argument("--also", type=Path, nargs="*", default=[],
                   help="more full-training results at the table's fidelity (bench/fulltrain.py's JSON): their "
                   "networks join the truth (a space beyond the table's, e.g. efficient's shrinks)")
    p.add_argument("--presets", default=None,
                   help="keep only these of the table's networks, by preset name (the --also networks all stay)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="sweep settings to run, by name")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", type=Path, default=Path("bench/results/proxy_sweep.json"))
    p.add_argument("--plot", type=Path, default=None, help="tau against cost (default: beside --out, .png)")
    p.add_argument("--work", type=Path, default=Path("runs/proxy_sweep"), help="claims of runs in flight")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--calibrate", action="store_true",
                   help="time one DANet-A ResNet-18 trial of each setting with this process alone on the machine "
                   "(the sweep's own wall times depend on what else ran); writes <out>_calibration.json")
    return p.parse_args(argv)


def run_proxy(setting: ProxySetting, net: dict[str, Any], seed: int, width_mult: float, cache_dir) -> dict[str, Any]:
    splits = load_splits(setting.data, data_seed=0, cache_dir=cache_dir, train_per_class=setting.per_class,
                         val_per_class=setting.val_per_class)
    started = time.monotonic()
    fit = GenotypeFit(net["genotype"], splits, setting.fit(seed, width_mult))
    if fit.genotype.key != net["key"]:
        raise SnnasError(f"{net['genotype']} builds {fit.genotype.key} here, not the table's {net['key']}")
    results = fit.run()
    curve = val_curve(results)
    measured = fit.measure()  # what a search ranks energy by: the proxy's own firing rates
    return {"setting": setting.name, "describe": setting.describe(), "key": net["key"], "seed": seed,
            "val_acc": curve[-1], "val_curve": curve, "energy_mj": measured["energy_mj"], "sops": measured["sops"],
            "wall_s": round(time.monotonic() - started, 2), "depth": net.get("depth"), "name": net.get("name"),
            "threads": torch.get_num_threads(), "classes": splits.num_classes}


def truth_table(against: Path, also: list[Path], presets: str | None) -> Table:
    """The table, narrowed to ``presets`` and joined by the ``also`` results trained at its fidelity."""
    table = Table.read(against)
    runs = list(table.runs)
    if presets:
        wanted = {p for p in presets.split(",") if p}
        known = {p for r in runs for p in (r.get("presets") or [r.get("preset")]) if p}
        if wanted - known:
            raise SnnasError(f"--presets: {', '.join(sorted(wanted - known))} not in {against}")
        runs = [r for r in runs if wanted & set(r.get("presets") or [r.get("preset")])]
    ours = {**(table.settings.get("fit") or {}), "seed": 0}
    seen = {(r["key"], r["seed"]) for r in runs}
    for path in also:
        extra = Table.read(path)
        theirs = {**(extra.settings.get("fit") or {}), "seed": 0}
        if extra.settings.get("data") != table.settings.get("data"):
            raise SnnasError(f"--also {path}: trained on {extra.settings.get('data')}, "
                             f"not the table's {table.settings.get('data')}")
        if theirs != ours:  # T, epochs, recipe, width...: another fidelity is another truth
            changed = ", ".join(f"{k} {theirs.get(k)!r} (table: {ours.get(k)!r})"
                                for k in sorted(set(ours) | set(theirs)) if theirs.get(k) != ours.get(k))
            raise SnnasError(f"--also {path}: not trained at the table's fidelity: {changed}")
        for r in extra.runs:
            if (r["key"], r["seed"]) not in seen:
                seen.add((r["key"], r["seed"]))
                runs.append(dict(r))  # a hand-made network keeps its name
    return Table(table.settings, tuple(runs), table.path)


def energy_agreement(mean_energy: dict[str, float], table: Table) -> dict[str, float] | None:
    """The proxy's energy per image against the same networks' energy after full training: firing
    rates move with training, so the energy a search ranks by is itself a proxy."""
    full: dict[str, list[float]] = {}
    for r in table.runs:
        if isinstance(r.get("energy_mj"), (int, float)):
            full.setdefault(r["key"], []).append(float(r["energy_mj"]))
    shared = [k for k in mean_energy if k in full]
    if len(shared) < 4:
        return None
    truth = {k: statistics.fmean(full[k]) for k in shared}
    ratios = [mean_energy[k] / truth[k] for k in shared]
    return {"tau": kendall_tau({k: mean_energy[k] for k in shared}, truth), "networks": len(shared),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def summarize(setting: ProxySetting, runs: list[dict[str, Any]], table: Table) -> dict[str, Any] | None:
    truth = table.mean_acc()
    mine = [r for r in runs if r["setting"] == setting.name and r["key"] in truth
            and r.get("describe", setting.describe()) == setting.describe()]  # never a run of an older definition
    per_seed: dict[int, dict[str, float]] = {}
    for r in mine:
        per_seed.setdefault(r["seed"], {})[r["key"]] = r["val_acc"]
    complete = [s for s, scores in per_seed.items() if set(scores) >= set(truth)]
    if not complete:
        return None
    mean = {k: statistics.fmean(per_seed[s][k] for s in complete) for k in truth}
    energies: dict[str, list[float]] = {}
    for r in mine:
        if r["seed"] in complete and isinstance(r.get("energy_mj"), (int, float)):
            energies.setdefault(r["key"], []).append(r["energy_mj"])
    energy = energy_agreement({k: statistics.fmean(v) for k, v in energies.items()}, table)
    chance = 1.0 / mine[0]["classes"]
    table_chance = 1.0 / int(str(table.settings.get("data", "x-10")).split(":")[0].rsplit("-", 1)[-1] or 10)
    stuck = sorted(k for k in truth if mean[k] < chance + CHANCE_MARGIN and truth[k] > table_chance + LEARNS_MARGIN)
    walls18 = [r["wall_s"] for r in mine if str(r.get("depth")) == "18" and r["seed"] in complete]
    walls = [r["wall_s"] for r in mine if r["seed"] in complete]
    seed_taus = [t for t in pairwise_taus({s: per_seed[s] for s in complete}).values() if not math.isnan(t)]
    return {
        "setting": setting.name, "describe": setting.describe(), "budget": setting.budget, "seeds": sorted(complete),
        "train_images": setting.train_images,
        "networks": len(truth), "tau": kendall_tau(mean, truth),
        "tau_per_seed": {s: kendall_tau(per_seed[s], truth) for s in complete},
        "top3_recall": top_k_recall(mean, truth, 3), "proxy_seed_tau": statistics.fmean(seed_taus) if seed_taus else None,
        "at_chance_but_learns": stuck, "wall_s_resnet18": statistics.fmean(walls18) if walls18 else None,
        "wall_s_mean": statistics.fmean(walls), "mean_val_acc": mean, "energy_vs_full": energy,
    }


def measured_part(setting: ProxySetting, runs: list[dict[str, Any]], table: Table) -> Table | None:
    """The table narrowed to the networks ``setting`` has measured at every seed it has run (a
    sweep cut short, or networks joined after it ran); None below four networks."""
    mine = {(r["key"], r["seed"]) for r in runs if r["setting"] == setting.name
            and r.get("describe", setting.describe()) == setting.describe()}
    seeds = {seed for _, seed in mine}
    keys = {k for k in table.mean_acc() if seeds and all((k, seed) in mine for seed in seeds)}
    if len(keys) < 4:
        return None
    return Table(table.settings, tuple(r for r in table.runs if r["key"] in keys), table.path)


def plot(summaries: list[dict[str, Any]], table_tau: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = {5: "tab:blue", 10: "tab:orange", 20: "tab:green"}
    for s in summaries:
        x = s["train_images"] / 1000
        ax.scatter(x, s["tau"], color=colors.get(s["budget"], "grey"), s=40, zorder=3,
                   marker="x" if "proxy" in s["setting"] else "o")
        ax.annotate(s["setting"], (x, s["tau"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if not math.isnan(table_tau):
        ax.axhline(table_tau, color="black", lw=1, ls="--", label=f"table seed-to-seed tau {table_tau:.2f}")
    ax.axhline(0.7, color="red", lw=0.8, ls=":", label="target 0.7")
    for budget, color in colors.items():
        ax.scatter([], [], color=color, label=f"'{budget} s' tier ({budget * 1.8:g}k images)")
    ax.set_xlabel("training images per proxy trial (thousands; about 1k/s for a width-1/4 ResNet-18 on 2 CPU cores)")
    ax.set_ylabel("Kendall tau vs full-training test accuracy")
    ax.set_title("Proxy settings: agreement with the ground-truth table against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_png(fig, path)


def report(runs: list[dict[str, Any]], table: Table, names: list[str], plot_path: Path,
           calibration: dict[str, float] | None = None) -> list[dict[str, Any]]:
    table_tau = table.seed_tau()
    summaries = [s for s in (summarize(SETTINGS[n], runs, table) for n in names) if s is not None]
    for s in summaries:
        s["calibrated_wall_s"] = (calibration or {}).get(s["setting"])
    print(f"\nagainst {table.path}: {len(table.mean_acc())} networks, table seed-to-seed tau {table_tau:.3f} "
          f"(taus {', '.join(f'{a}-{b}: {t:.3f}' for (a, b), t in table.seed_taus().items())})")
    print("\n| setting | proxy | tau vs table | tau per seed | top-3 recall | proxy seed-to-seed tau | "
          "at chance, learns in table | train images / trial | s / DANet-A-18 trial alone | "
          "s / ResNet-18 trial in the sweep | s / trial in the sweep |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        per_seed = " / ".join(f"{t:.2f}" for t in s["tau_per_seed"].values())
        seed_tau = f"{s['proxy_seed_tau']:.2f}" if s["proxy_seed_tau"] is not None else "-"
        print(f"| {s['setting']} | {s['describe']} | **{s['tau']:.2f}** | {per_seed} | {s['top3_recall']:.2f} | "
              f"{seed_tau} | {len(s['at_chance_but_learns'])} | {s['train_images']:,} | "
              + (f"{s['calibrated_wall_s']:.1f}" if s["calibrated_wall_s"] else "-")
              + f" | {s['wall_s_resnet18'] or 0:.1f} | {s['wall_s_mean']:.1f} |")
    for s in summaries:
        e = s["energy_vs_full"]
        if e:
            print(f"{s['setting']}: energy per image against full training over {e['networks']} networks: Kendall tau "
                  f"{e['tau']:.2f}, proxy/full ratio median {e['ratio_median']:.2f} (range {e['ratio_min']:.2f}-"
                  f"{e['ratio_max']:.2f})")
    missing = [n for n in names if n not in {s["setting"] for s in summaries}]
    if missing:
        print(f"\nnot yet measured for every network: {', '.join(missing)}")
    for name in missing:  # what they have measured, read against the truth of the same networks only
        part = measured_part(SETTINGS[name], runs, table)
        s = summarize(SETTINGS[name], runs, part) if part is not None else None
        if s is not None:
            per_seed = " / ".join(f"{t:.2f}" for t in s["tau_per_seed"].values())
            print(f"{name} over the {s['networks']} of {len(table.mean_acc())} networks it has at every seed: "
                  f"tau {s['tau']:.2f} ({per_seed} per seed), top-3 recall {s['top3_recall']:.2f}; "
                  f"the table's own seed-to-seed tau over them {part.seed_tau():.3f}")
    if summaries:
        print(f"plot: {plot(summaries, table_tau, plot_path)}")
    return summaries


CALIBRATION_NETWORK = "danet_a_resnet18"


def calibrate(names: list[str], table: Table, width: float, args: argparse.Namespace) -> None:
    net = next((n for n in table.networks() if n.preset == CALIBRATION_NETWORK), None)
    if net is None:
        raise SnnasError(f"{args.against} has no {CALIBRATION_NETWORK} to time")
    path = args.out.with_name(args.out.stem + "_calibration.json")
    rows = []
    for name in names:
        setting = SETTINGS[name]
        run_proxy(setting, {"key": net.key, "genotype": net.genotype, "depth": "18"}, 0, width, args.cache_dir)  # warm
        row = run_proxy(setting, {"key": net.key, "genotype": net.genotype, "depth": "18"}, 0, width, args.cache_dir)
        rows.append({"setting": name, "wall_s": row["wall_s"], "threads": row["threads"],
                     "train_images": setting.train_images})
        print(f"{name}: {row['wall_s']:.1f} s per {CALIBRATION_NETWORK} trial, {row['threads']} threads", flush=True)
    atomic_write_json(path, {"network": CALIBRATION_NETWORK, "runs": rows})
    print(f"calibration: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SnnasError(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        raise SnnasError(f"--seeds {args.seeds!r}: expected integers separated by commas") from None
    table = truth_table(args.against, args.also, args.presets)
    width = float((table.settings.get("fit") or {}).get("width_mult", 0.25))
    nets = {n.key: {"key": n.key, "genotype": n.genotype, "depth": n.extra.get("depth"), "name": n.extra.get("name")}
            for n in table.networks()}
    settings = {"against": str(args.against), "width_mult": width}  # each run names its setting and describes it
    results = SharedResults(args.out, SWEEP_FORMAT, settings, identity=lambda r: (r["setting"], r["key"], r["seed"]))
    order = [(SETTINGS[n], nets[k], seed) for n in names for seed in seeds for k in sorted(nets)]
    if args.calibrate:
        calibrate(names, table, width, args)
        return 0
    if not args.report_only:
        def run(item) -> None:
            setting, net, seed = item
            row = run_proxy(setting, net, seed, width, args.cache_dir)
            results.add(row)
            label = net["name"] or f"depth {net['depth']}"
            print(f"{setting.name} {net['key']} ({label}) seed {seed}: val {row['val_acc']:.4f} "
                  f"in {row['wall_s']:.1f} s", flush=True)

        work_through(order, results.done, identity=lambda i: (i[0].name, i[1]["key"], i[2]),
                     lock_path=lambda i: args.work / f"{i[0].name}-{i[1]['key']}-s{i[2]}.lock", run=run)
    calibration_path = args.out.with_name(args.out.stem + "_calibration.json")
    calibration = None
    if calibration_path.exists():
        doc = parse_json(read_text(calibration_path, "calibration", SnnasError), str(calibration_path), SnnasError)
        calibration = {r["setting"]: r["wall_s"] for r in doc.get("runs", [])}
    report(results.runs(), table, names, args.plot or args.out.with_suffix(".png"), calibration)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
