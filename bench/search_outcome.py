"""Does searching find networks better than the DANet paper's? A real search's winners, fully trained.

Runs the search on the embedded data with the search's own (tuned) defaults, then trains every
network it found at the ground-truth table's fidelity (the same training path, settings and seeds as
``bench/groundtruth.py``; a found network that is in the table takes the table's rows) and holds
each against every DANet of the table (A/B/C/D at ResNet-18 and -34): mean test accuracy and its
spread over seeds, and SOPs.

- ``--objectives acc``: the networks promoted to phase 2 (``--promote``);
- ``--objectives acc,sops``: the phase-1 Pareto set of accuracy and SOPs (multi-objective TPE; NSGA-II in the recorded run).

    python bench/search_outcome.py                           # accuracy, then accuracy and SOPs
    python bench/search_outcome.py --objectives acc,sops     # one of the two
    python bench/search_outcome.py --report-only

Resumable like the table (the search continues its study; each full training checkpoints every
epoch), across machines too: while the search runs, its study (SQLite, both phases) is copied every
``--snapshot-every`` seconds to ``bench/results/search_outcome_<space>_<data>.<mode>.study.db`` and
its phase-1 trials summarized beside it (``.phase1.json``), both meant to be committed; a run whose
``--work`` has no study starts from that copy (the trials' weights stay behind: phase 2 and the
full trainings train from scratch, and a trial caught running resumes from its first epoch). Results: ``bench/results/search_outcome_<data>.json`` (``found``, ``danets``, ``runs``)
and the plot beside it. Arguments after ``--`` go to the search (``scripts/search.py``'s flags).

A second process started with the same arguments and another sampler seed (``-- ... --seed 1``)
works beside the first on one machine: it joins the same study as another worker, then takes the
full trainings the first has not claimed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import optuna
from benchlib import SharedResults, over_seeds, search_command, set_threads, split_search_args, work_through
from groundtruth import train_row

from snnas.cli import run_guarded
from snnas.cli.retrain import retrain_command
from snnas.data import load_splits
from snnas.data.spec import parse_data_spec
from snnas.errors import SnnasError
from snnas.files import atomic_write_json, parse_json, read_text
from snnas.fit import FitSettings, built_genotype
from snnas.genotype import Genotype
from snnas.groundtruth import Table, slug
from snnas.plots.files import plt, save_png
from snnas.search.attrs import TrialAttrs
from snnas.search.funnel import run_search
from snnas.search.leaderboard import best_per_key, summarize
from snnas.search.pareto import Point, front, hypervolume
from snnas.study.artifacts import STORE_ATTR, parse_artifact_location

OUTCOME_FORMAT = "snnas-search-outcome/1"
DANETS = [f"danet_{x}_resnet{d}" for d in (18, 34) for x in "abcd"]
SEED_FIELDS = ("sops", "energy_mj")  # what a network's row averages over its seeds besides the accuracy
MODES = {"acc": ("acc",), "acc,sops": ("acc", "sops"), "acc,energy": ("acc", "energy")}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    own, search_args = split_search_args(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, default=Path("bench/results/groundtruth_fashion10.json"))
    p.add_argument("--space", default="dense_additive", help="the space searched (default dense_additive)")
    p.add_argument("--objectives", default="both", choices=("both", *MODES),
                   help="both: acc, then acc,sops (the paper's space); acc,energy promotes by hypervolume")
    p.add_argument("--trials", type=int, default=52, help="phase-1 trials, the 12 seeds included (default 52)")
    p.add_argument("--promote", type=int, default=5)
    p.add_argument("--pareto-max", type=int, default=6, help="at most this many Pareto networks, best accuracy first")
    p.add_argument("--seeds", default=None, help="full-training seeds (default: the table's)")
    p.add_argument("--work", type=Path, default=Path("runs/outcome"))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--hand-made", type=Path, default=None,
                   help="full trainings of hand-made networks (bench/fulltrain.py's JSON) drawn beside the found "
                   "ones on the energy plot (with --objectives acc,energy)")
    p.add_argument("--snapshot-every", type=float, default=120.0,
                   help="seconds between copies of the running search's study to bench/results (0: none)")
    return p.parse_args(own), search_args


def search_options(mode: str, args: argparse.Namespace, search_args: list[str]):
    prefix = "outcome" if args.space == "dense_additive" else f"outcome-{args.space}"
    return search_command(["--space", args.space, "--trials", str(args.trials), "--promote", str(args.promote),
                           "--objectives", mode, "--study", f"{prefix}-{mode.replace(',', '-')}",
                           "--out", str(args.work / "search"), "--no-progress", *search_args])


def found_networks(result, mode: str, pareto_max: int) -> list[dict[str, Any]]:
    """What the search hands its user: the promoted networks (with energy as an objective, the
    phase-1 Pareto set chosen by hypervolume), or the Pareto set of accuracy and SOPs."""
    if mode in ("acc", "acc,energy"):
        trials = list(result.promoted)
    else:
        trials = sorted(result.phase1.best_trials, key=lambda t: -t.values[0])
    out, seen = [], set()
    for t in trials:
        attrs = TrialAttrs.of(t)
        key = attrs.key
        if key not in seen and (mode != "acc,sops" or len(seen) < pareto_max):  # at most pareto_max networks, not trials
            seen.add(key)
            out.append({"key": key, "genotype": attrs.canonical, "mode": mode, "phase1_acc": t.values[0],
                        "phase1_sops": attrs.sops, "phase1_energy_mj": attrs.energy_mj,
                        "seed_preset": attrs.seed_preset})
    return out


PHASE1_FORMAT = "snnas-search-phase1/1"


def phase1_summary(study: optuna.Study, objectives: tuple[str, ...], budget: int, chance: float) -> dict[str, Any]:
    """The phase-1 trials so far, one row per network, with the front and its hypervolume
    (reference: chance accuracy and the largest value of each other objective seen)."""
    trials = best_per_key([t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE])
    rows = []
    for key, t in trials.items():
        a = TrialAttrs.of(t)
        rows.append({"trial": t.number, "key": key, "genotype": a.canonical, "seed_preset": a.seed_preset,
                     "val_acc": t.values[0], "sops": a.sops, "energy_mj": a.energy_mj, "latency_ms": a.latency_ms,
                     "params": a.params, "wall_s": a.wall_s})
    doc: dict[str, Any] = {"format": PHASE1_FORMAT, "study": study.study_name, "objectives": list(objectives),
                           "trials_budget": budget, "completed": len(rows), "trials": sorted(rows, key=lambda r: r["trial"])}
    if len(objectives) > 1 and rows:
        points = [Point(r["key"], tuple(t.values)) for r, t in zip(rows, trials.values())]
        reference = (chance, *[max(p.values[i] for p in points) for i in range(1, len(objectives))])
        doc.update(front_keys=[p.key for p in front(points, objectives)],
                   hypervolume=hypervolume(points, objectives, reference), hypervolume_reference=list(reference))
    return doc


class StudySnapshots:
    """Copies a running search's SQLite study (and its phase-1 summary) to files meant to be
    committed, every ``every`` seconds and once more at the end: a session that ends mid-search
    loses nothing it finished."""

    def __init__(self, options, db_copy: Path, summary: Path, every: float):
        self.options, self.db_copy, self.summary, self.every = options, db_copy, summary, every
        self.source = options.run_dir / "study.db"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def restore(self) -> bool:
        """Start from the committed copy when this machine has no study yet."""
        if self.options.storage is not None or self.source.exists() or not self.db_copy.is_file():
            return False
        self.source.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.db_copy, self.source)
        # The study records its default store (this run directory's artifacts/); the weights stayed
        # behind, so an empty one stands in. A store recorded elsewhere is left to refuse as usual.
        default = parse_artifact_location(self.options.run_dir / "artifacts").text
        for summary in optuna.get_all_study_summaries(f"sqlite:///{self.source}"):
            if summary.user_attrs.get(STORE_ATTR) == default:
                Path(default).mkdir(parents=True, exist_ok=True)
        return True

    def take(self) -> None:
        if not self.source.is_file():
            return
        part = self.db_copy.with_name(f"{self.db_copy.name}.{os.getpid()}.part")  # one per process sharing the run
        src, dst = sqlite3.connect(self.source), sqlite3.connect(part)
        try:
            src.backup(dst)  # a consistent copy while the workers write
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal/-shm beside the copy
        except BaseException:
            dst.close()
            part.unlink(missing_ok=True)  # a copy cut short never lingers beside the results
            raise
        finally:
            dst.close()
            src.close()
        part.replace(self.db_copy)
        storage = optuna.storages.RDBStorage(f"sqlite:///{self.db_copy}")
        try:  # closed again at once: nothing holds the copy open between snapshots
            study = optuna.load_study(study_name=self.options.study_name, storage=storage)
            classes = parse_data_spec(self.options.phase1.data).k or 10  # fashion without a count: its ten classes
            summary = phase1_summary(study, self.options.objectives, self.options.trials, 1.0 / classes)
        finally:
            storage.engine.dispose()
        atomic_write_json(self.summary, summary)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.take()
            except (sqlite3.Error, OSError, KeyError) as exc:  # a snapshot missed is retried next time
                print(f"snapshot skipped: {type(exc).__name__}: {exc}", flush=True)

    def __enter__(self) -> StudySnapshots:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.every > 0:
            self.take()


def report(doc: dict[str, Any], table: Table, plot_path: Path) -> Path | None:
    danets = doc["danets"]
    if not danets:
        print("the table holds no DANet")
        return None
    ref = next((d["energy_mj"] for d in danets if d["name"] == "danet_b_resnet18"), None)
    energy = lambda n: f"{1e3 * n['energy_mj']:.3f} | {n['energy_mj'] / ref:.2f}" if ref else f"{1e3 * n['energy_mj']:.3f} | -"
    print("\n| network | found by | mean test % | spread | MSOPs / image | energy uJ | x DANet-B-18 | "
          "beats (mean, beyond the spread, at <= SOPs) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for d in danets:
        print(f"| **{d['name']}** | the paper | {100 * d['test_acc_mean']:.2f} | {100 * d['test_acc_spread']:.2f} | "
              f"{d['sops'] / 1e6:.2f} | {energy(d)} | |")
    for f in doc["found"]:
        if "test_acc_mean" not in f:
            print(f"| {summarize(f['genotype'])} | {f['mode']} | (training) | | | | | |")
            continue
        beaten = [d["name"] for d in danets
                  if f["test_acc_mean"] - d["test_acc_mean"] > max(f["test_acc_spread"], d["test_acc_spread"])
                  and f["sops"] <= d["sops"]]
        partial = f" ({len(f['seeds'])} of {len(danets[0]['seeds'])} seeds)" if len(f["seeds"]) < len(danets[0]["seeds"]) else ""
        print(f"| {f.get('seed_preset') or summarize(f['genotype'])}{partial} | {f['mode']} | {100 * f['test_acc_mean']:.2f} | "
              f"{100 * f['test_acc_spread']:.2f} | {f['sops'] / 1e6:.2f} | {energy(f)} | {', '.join(beaten) or 'none'} |")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    nets = table.networks()
    ax.scatter([n.sops / 1e6 for n in nets], [100 * n.mean for n in nets], color="lightgrey", s=25,
               label="ground-truth table")
    for d in danets:
        ax.errorbar(d["sops"] / 1e6, 100 * d["test_acc_mean"], yerr=50 * d["test_acc_spread"], fmt="s", color="black",
                    ms=5, capsize=2)
        ax.annotate(d["name"].replace("_resnet", "-").replace("danet_", "DANet-").upper().replace("DANET", "DANet"),
                    (d["sops"] / 1e6, 100 * d["test_acc_mean"]), textcoords="offset points", xytext=(4, -8), fontsize=7)
    colors = {"acc": "tab:red", "acc,sops": "tab:blue", "acc,energy": "tab:green"}
    for mode, color in colors.items():
        found = [f for f in doc["found"] if f["mode"] == mode and "test_acc_mean" in f]
        if found:
            ax.errorbar([f["sops"] / 1e6 for f in found], [100 * f["test_acc_mean"] for f in found],
                        yerr=[50 * f["test_acc_spread"] for f in found], fmt="o", color=color, ms=6, capsize=2,
                        label=f"found ({mode.replace('acc', 'accuracy').replace(',', ' and ')})")
    ax.set_xlabel("MSOPs per image")
    ax.set_ylabel("test accuracy, full training (%, mean; bars: half the seed spread)")
    lows = [100 * n.mean for n in nets]
    ax.set_ylim(max(min(lows) - 1, sorted(lows)[len(lows) // 4] - 2), max(lows) + 1)
    ax.set_title("Found networks against the DANets at full training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_png(fig, plot_path)


def _front_line(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The staircase of the points no other beats (lower energy, higher accuracy), left to right."""
    best, xs, ys = -1.0, [], []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            if xs:
                xs.append(x)
                ys.append(best)
            xs.append(x)
            ys.append(y)
            best = y
    return xs, ys


def energy_plot(doc: dict[str, Any], hand_made: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy against energy (a ratio to DANet-B-18's) after full training: the DANets and their
    front, the found networks and theirs, and hand-made networks when given."""
    ref = next((d["energy_mj"] for d in doc["danets"] if d["name"] == "danet_b_resnet18"), None)
    found = [f for f in doc["found"] if f["mode"] == "acc,energy" and "test_acc_mean" in f]
    if ref is None or not (found or hand_made):
        return None
    b18 = next(d for d in doc["danets"] if d["name"] == "danet_b_resnet18")
    fig, ax = plt.subplots(figsize=(10, 5.2))
    series = [("the DANets (the paper)", doc["danets"], "black", "s"), ("found by the search", found, "tab:green", "o"),
              ("hand-made", hand_made, "tab:purple", "^")]
    for label, nets, color, marker in series:
        if not nets:
            continue
        pts = [(n["energy_mj"] / ref, 100 * n["test_acc_mean"]) for n in nets]
        ax.errorbar([x for x, _ in pts], [y for _, y in pts], yerr=[50 * n["test_acc_spread"] for n in nets],
                    fmt=marker, color=color, ms=5, capsize=2, label=f"{label} ({len(nets)})")
        ax.plot(*_front_line(pts), color=color, lw=1, alpha=0.6)
        for n, (x, y) in zip(nets, pts):
            name = n.get("name") or n.get("seed_preset") or (summarize(n["genotype"]) if label.startswith("found") else "")
            if name and len(n["seeds"]) < len(b18["seeds"]):
                name += f" ({len(n['seeds'])} seed{'s' if len(n['seeds']) > 1 else ''})"
            if name:
                ax.annotate(name.replace("_resnet", "-").replace("danet_", "DANet-"), (x, y),
                            textcoords="offset points", xytext=(4, -8), fontsize=6)
    ax.axvline(0.35, color="red", ls=":", lw=0.8, label="0.35x DANet-B-18's energy")
    ax.axhline(100 * b18["test_acc_mean"] - 0.3, color="red", ls="--", lw=0.8, label="DANet-B-18 - 0.3 points")
    ax.set_xscale("log")
    ax.set_xlabel("energy per image, x DANet-B-18 (full training's firing rates; log scale)")
    ax.set_ylabel("test accuracy, full training (%, mean; bars: half the seed spread)")
    ax.set_title("Accuracy against energy at full training: the DANets' front and the found one")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return save_png(fig, path)


def hand_made_networks(path: Path | None, seeds: list[int]) -> list[dict[str, Any]]:
    """The hand-made networks of a fulltrain JSON, averaged over their seeds (every seed of ``seeds``
    when they have them all, else what they have, marked by ``seeds``)."""
    if path is None:
        return []
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in Table.read(path).runs:
        if r.get("name") and r["seed"] in seeds:
            groups.setdefault(r["name"], []).append(r)
    return [{"name": name, "key": rows[0]["key"], "genotype": rows[0]["genotype"], **over_seeds(rows, SEED_FIELDS)}
            for name, rows in sorted(groups.items())]


def main(argv: list[str] | None = None) -> int:
    args, search_args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(args.threads)
    table = Table.read(args.table)
    ts = table.settings
    space_part = "" if args.space == "dense_additive" else f"{args.space}_"
    out = args.out or args.table.with_name(f"search_outcome_{space_part}{slug(ts.get('data', 'data'))}.json")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else table.seeds()
    fit = FitSettings.from_dict({**(ts.get("fit") or {}), "seed": 0})
    modes = ["acc", "acc,sops"] if args.objectives == "both" else [args.objectives]
    plans = {mode: search_options(mode, args, search_args) for mode in modes}  # every argument checked first
    store = SharedResults(out.with_name(out.stem + ".runs.json"), OUTCOME_FORMAT,
                          {"table": str(args.table), "fit": fit.to_dict()}, identity=lambda r: (r["key"], r["seed"]))
    found: list[dict[str, Any]] = []
    for mode, (options, _) in plans.items():
        if args.report_only:
            continue
        stem = f"{out.stem}.{mode.replace(',', '-')}"
        snapshots = StudySnapshots(options, out.with_name(f"{stem}.study.db"), out.with_name(f"{stem}.phase1.json"),
                                   args.snapshot_every)
        if snapshots.restore():
            print(f"study {options.study_name}: continuing from {snapshots.db_copy}", flush=True)
        with snapshots:
            result = run_search(options, log=lambda msg: print(msg, flush=True))
        found += found_networks(result, mode, args.pareto_max)
    earlier = parse_json(read_text(out, "outcome", SnnasError), str(out), SnnasError) if out.exists() else {}
    if args.report_only:
        found = list(earlier.get("found", []))
    else:  # a run of one mode keeps what a run of the other mode found
        found = [f for f in earlier.get("found", []) if f.get("mode") not in modes] + found
    search = {**{m: v for m, v in (earlier.get("search") or {}).items() if m not in modes},
              **{mode: vars(ns) | {"out": str(ns.out)} for mode, (_, ns) in plans.items()}}

    def write_outcome() -> dict[str, Any]:
        """The outcome as far as it is trained (a network short of seeds lists the ones it has), written
        before the full trainings too, so that a run cut off still leaves what it found."""
        rows = list(table.runs) + store.runs()
        for f in found:
            for field in ("seeds", "test_acc_mean", "test_acc_spread") + SEED_FIELDS:
                f.pop(field, None)
            mine = [r for r in rows if r["key"] == f["key"] and r["seed"] in seeds]
            if mine:
                f.update(over_seeds(mine, SEED_FIELDS))
        doc = {"format": OUTCOME_FORMAT, "table": str(args.table), "found": found, "danets": danets,
               "search": search}
        atomic_write_json(out, doc)
        return doc

    danets = []
    for name in DANETS:
        mine = [r for r in table.runs if name in (r.get("presets") or [r.get("preset")])]
        if mine:
            danets.append({"name": name, "key": mine[0]["key"], "genotype": mine[0]["genotype"], **over_seeds(mine, SEED_FIELDS)})
    in_table = {r["key"] for r in table.runs}
    splits = None
    todo = [(f, s) for f in found if f["key"] not in in_table for s in seeds]
    if todo and not args.report_only:
        splits = load_splits(ts["data"], resolution=ts.get("resolution"), data_seed=int(ts.get("data_seed", 0)),
                             train_per_class=ts.get("train_per_class"), val_per_class=ts.get("val_per_class"))

        def run(item) -> None:
            net, seed = item
            g = built_genotype(Genotype.from_str(net["genotype"]), fit, splits.resolution)
            command = retrain_command(g.to_str(), ts["data"], fit.replace(seed=seed), resolution=ts.get("resolution"),
                                      train_per_class=ts.get("train_per_class"), val_per_class=ts.get("val_per_class"),
                                      data_seed=int(ts.get("data_seed", 0)))
            row = train_row({"key": g.key, "genotype": g.to_str(), "preset": None}, seed, splits, fit,
                            args.work / "full" / f"{g.key}-s{seed}", command)
            store.add(row)
            print(f"{summarize(g.to_str())} seed {seed}: test {100 * row['test_acc']:.2f}%", flush=True)

        write_outcome()
        work_through(todo, store.done, identity=lambda i: (i[0]["key"], i[1]),
                     lock_path=lambda i: args.work / "full" / f"{i[0]['key']}-s{i[1]}.lock", run=run)
    doc = write_outcome()
    plot = report(doc, table, out.with_suffix(".png"))
    print(f"results: {out}" + (f"\nplot: {plot}" if plot else ""))
    if any(f["mode"] == "acc,energy" for f in doc["found"]) or args.hand_made:
        drawn = energy_plot(doc, hand_made_networks(args.hand_made, seeds), out.with_name(out.stem + "_energy.png"))
        if drawn:
            print(f"energy plot: {drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
