"""Is it the sampler or luck? The same accuracy-energy search run with the default sampler and with
random search, several repetitions each, compared by what they found.

Per repetition (``--seed`` r: the sampler's seed and the trials' training seed), each sampler runs
the search of ``bench/search_outcome.py`` (the ``efficient`` space, ``--objectives acc,energy``,
the same budget) in its own study. Compared:
- the hypervolume of the phase-1 front (one point per network: validation accuracy and energy per
  image), reference point chance accuracy and the largest energy of the paper's networks (the
  seeds) in that study: the volume of the accuracy-energy plane a search conquered;
- how many promoted networks dominate DANet-B-18 at phase 2 (at least its phase-2 accuracy at no
  more energy, better in one), DANet-B-18 itself trained once per repetition at phase 2's fidelity.

    python bench/efficient_sampler.py                 # 3 repetitions x {tpe, random}, 30 trials each
    python bench/efficient_sampler.py --report-only

Resumable: each search continues its study, and each finished repetition lands in the JSON.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import optuna
from benchlib import SharedResults, search_command, set_threads, split_search_args

from snnas.cli import run_guarded
from snnas.data import load_splits
from snnas.fit import GenotypeFit
from snnas.presets import get_preset
from snnas.search.attrs import TrialAttrs
from snnas.search.funnel import run_search
from snnas.search.leaderboard import best_per_key
from snnas.search.pareto import Point, front, hypervolume

FORMAT = "snnas-sampler-comparison/1"
OBJ = ("acc", "energy")
REFERENCE = "danet_b_resnet18"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    own, search_args = split_search_args(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="efficient")
    p.add_argument("--samplers", default="tpe,random")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--promote", type=int, default=4)
    p.add_argument("--work", type=Path, default=Path("runs/sampler"))
    p.add_argument("--out", type=Path, default=Path("bench/results/efficient_sampler_fashion10.json"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(own), search_args


def search_options(args: argparse.Namespace, sampler: str, rep: int, search_args: list[str]):
    options, _ = search_command(["--space", args.space, "--objectives", ",".join(OBJ), "--trials", str(args.trials),
                                 "--promote", str(args.promote), "--sampler", sampler, "--seed", str(rep),
                                 "--study", f"{args.space}-{sampler}-r{rep}", "--out", str(args.work),
                                 "--no-progress", *search_args])
    return options


def measure(result, options, chance: float) -> dict[str, Any]:
    """The phase-1 front's hypervolume and the phase-2 networks that dominate DANet-B-18."""
    best = best_per_key(result.phase1.get_trials(deepcopy=False))
    points = [Point(k, (t.values[0], t.values[1])) for k, t in best.items()]
    seeds = [t.values[1] for t in best.values() if TrialAttrs.of(t).seed_preset]
    reference = (chance, max(seeds))
    fid2 = options.phase2
    splits = load_splits(fid2.data, resolution=fid2.resolution or 28, data_seed=fid2.data_seed,
                         train_per_class=fid2.train_per_class, val_per_class=fid2.val_per_class)
    ref_fit = GenotypeFit(get_preset(REFERENCE), splits, fid2.fit)
    ref_fit.run()
    ref_acc, ref_energy = ref_fit.evaluate(splits.val)["acc"], ref_fit.measure()["energy_mj"]
    phase2 = []
    if result.phase2 is not None:
        for key, t in best_per_key(result.phase2.get_trials(deepcopy=False)).items():
            energy = TrialAttrs.of(t).energy_mj
            phase2.append({"key": key, "genotype": TrialAttrs.of(t).canonical, "acc": t.values[0], "energy_mj": energy})
    dominating = [n for n in phase2 if n["acc"] >= ref_acc and n["energy_mj"] <= ref_energy
                  and (n["acc"] > ref_acc or n["energy_mj"] < ref_energy)]
    return {"hypervolume": hypervolume(points, OBJ, reference), "reference_point": list(reference),
            "front": [{"key": p.key, "acc": p.values[0], "energy_mj": p.values[1]} for p in front(points, OBJ)],
            "networks": len(points), "phase2": phase2, "danet_b_phase2": {"acc": ref_acc, "energy_mj": ref_energy},
            "dominate_danet_b": len(dominating)}


def report(runs: list[dict[str, Any]]) -> None:
    print("\n| repetition | sampler | networks | phase-1 hypervolume | phase-2 networks dominating DANet-B-18 |")
    print("|---:|---|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (r["rep"], r["sampler"])):
        print(f"| {r['rep']} | {r['sampler']} | {r['networks']} | {r['hypervolume']:.4g} | {r['dominate_danet_b']} |")
    reps = sorted({r["rep"] for r in runs})
    by = {(r["rep"], r["sampler"]): r["hypervolume"] for r in runs}
    wins = sum(1 for rep in reps if (rep, "tpe") in by and (rep, "random") in by and by[rep, "tpe"] > by[rep, "random"])
    paired = sum(1 for rep in reps if (rep, "tpe") in by and (rep, "random") in by)
    print(f"\nthe default sampler's hypervolume beats random search's in {wins} of {paired} repetitions")


def main(argv: list[str] | None = None) -> int:
    args, search_args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(args.threads)
    samplers = [s for s in args.samplers.split(",") if s]
    plans = {(rep, s): search_options(args, s, rep, search_args) for rep in range(args.repeats) for s in samplers}
    store = SharedResults(args.out, FORMAT, {"space": args.space, "trials": args.trials, "promote": args.promote,
                                             "search_args": search_args}, identity=lambda r: (r["rep"], r["sampler"]))
    if not args.report_only:
        for (rep, sampler), options in plans.items():
            if (rep, sampler) in store.done():
                continue
            result = run_search(options, log=lambda msg: print(msg, flush=True))
            store.add({"rep": rep, "sampler": sampler, **measure(result, options, 1.0 / result_classes(options))})
    report(store.runs())
    return 0


def result_classes(options) -> int:
    """The number of classes of the search's phase-1 data (chance accuracy is one over it)."""
    fid1 = options.phase1
    return load_splits(fid1.data, resolution=fid1.resolution, data_seed=fid1.data_seed,
                       train_per_class=fid1.train_per_class, val_per_class=fid1.val_per_class).num_classes


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
