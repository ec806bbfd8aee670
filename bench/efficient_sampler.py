"""Is it the sampler or luck? The same accuracy-energy search run with the default sampler and with
random search, several repetitions each, compared by what they found.

Per repetition r (``--seed`` r: the sampler's seed; the training seed stays the search's default,
0), each sampler runs the search of ``bench/search_outcome.py`` (the ``efficient`` space,
``--objectives acc,energy``, the same budget) in its own study. Compared:
- the hypervolume of the phase-1 front (one point per network: validation accuracy and energy per
  image), reference point chance accuracy and the largest energy of the paper's networks (the
  seeds) in that study: the volume of the accuracy-energy plane a search conquered;
- how many promoted networks dominate DANet-B-18 at phase 2 (at least its phase-2 accuracy at no
  more energy, better in one), DANet-B-18's own phase-2 figures taken from the study when the search
  promoted it, else trained once per repetition at phase 2's fidelity.

    python bench/efficient_sampler.py                 # 3 repetitions x {tpe, random}, 30 trials each
    python bench/efficient_sampler.py --report-only
    python bench/efficient_sampler.py --promote 0 --seeds-from STUDY.db   # phase 1 only, seeds shared

``--seeds-from`` copies the finished seed trials (the paper's networks) of an earlier search's
phase-1 study at the same fidelity into every study before it runs: the samplers' seed differs
between repetitions, the training seed does not, so those trials would come out the same in each of
the six searches; every search then spends its budget on sampled networks alone. The copied study's
fidelity is checked against the search's as a continued study's is.

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
from snnas.errors import SnnasError
from snnas.fit import GenotypeFit
from snnas.presets import get_preset
from snnas.search.attrs import StudyAttrs, TrialAttrs
from snnas.search.funnel import phase2_name, phase_splits, run_search
from snnas.search.leaderboard import best_per_key
from snnas.search.pareto import Point, front, hypervolume
from snnas.search.samplers import sampler_name
from snnas.study.adapter import FIXED_PARAMS_ATTR
from snnas.study.storage import create_study_once, open_storage

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
    p.add_argument("--seeds-from", type=Path, default=None, metavar="STUDY.db",
                   help="copy the finished seed trials of this SQLite study's phase 1 into every search")
    return p.parse_args(own), search_args


def search_options(args: argparse.Namespace, sampler: str, rep: int, search_args: list[str]):
    options, _ = search_command(["--space", args.space, "--objectives", ",".join(OBJ), "--trials", str(args.trials),
                                 "--promote", str(args.promote), "--sampler", sampler, "--seed", str(rep),
                                 "--study", f"{Path(args.space).stem}-{sampler}-r{rep}", "--out", str(args.work),
                                 "--no-progress", *search_args])
    return options


def copy_seed_trials(source: Path, options, sampler: str) -> int:
    """Give a new study the seed trials of ``source``'s phase-1 study (which has its objectives) and
    that study's settings, which :func:`run_search` then checks against its own. A study that
    already holds trials is left alone (a resumed repetition)."""
    if not source.is_file():
        raise SnnasError(f"--seeds-from {source}: no such file")
    url = f"sqlite:///{source}"
    names = optuna.get_all_study_names(url)
    phase1 = [n for n in names if all(n != phase2_name(m) for m in names)]
    if len(phase1) != 1:
        raise SnnasError(f"--seeds-from {source}: holds {len(phase1)} phase-1 studies, not one")
    origin = optuna.load_study(study_name=phase1[0], storage=url)
    attrs = StudyAttrs.of(origin)
    storage = open_storage(options.storage, options.run_dir / "study.db")
    study = create_study_once(storage, options.study_name, list(origin.directions))
    if study.get_trials(deepcopy=False):
        return 0
    seeds = [t for t in origin.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
             if TrialAttrs.of(t).seed_preset]
    for t in seeds:  # the result and its attributes; not the artifacts, which live with the other study
        user = {k: v for k, v in t.user_attrs.items() if k != "model_artifact"}
        study.add_trial(optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, values=t.values, user_attrs=user,
            system_attrs={FIXED_PARAMS_ATTR: t.system_attrs.get(FIXED_PARAMS_ATTR, t.params)}))
    StudyAttrs(space=attrs.space, space_source=attrs.space_source, objectives=attrs.objectives,
               sampler=sampler_name(sampler, len(attrs.objectives or OBJ)),
               fidelity_phase1=attrs.fidelity_phase1, fidelity_phase2=attrs.fidelity_phase2).write(study)
    return len(seeds)


def measure(result, options, chance: float) -> dict[str, Any]:
    """The phase-1 front's hypervolume and the phase-2 networks that dominate DANet-B-18."""
    best = best_per_key(result.phase1.get_trials(deepcopy=False))
    points = [Point(k, (t.values[0], t.values[1])) for k, t in best.items()]
    seeds = [t.values[1] for t in best.values() if TrialAttrs.of(t).seed_preset]
    reference = (chance, max(seeds))
    summary = {"hypervolume": hypervolume(points, OBJ, reference), "reference_point": list(reference),
               "front": [{"key": p.key, "acc": p.values[0], "energy_mj": p.values[1]} for p in front(points, OBJ)],
               "networks": len(points), "sampled": sum(1 for t in best.values() if not TrialAttrs.of(t).seed_preset)}
    if result.phase2 is None:
        return {**summary, "phase2": None, "danet_b_phase2": None, "dominate_danet_b": None}
    promoted = best_per_key(result.phase2.get_trials(deepcopy=False))
    ref_acc, ref_energy = reference_at_phase2(promoted, options)
    phase2 = []
    for key, t in promoted.items():
        energy = TrialAttrs.of(t).energy_mj
        phase2.append({"key": key, "genotype": TrialAttrs.of(t).canonical, "acc": t.values[0], "energy_mj": energy})
    dominating = [n for n in phase2 if n["acc"] >= ref_acc and n["energy_mj"] <= ref_energy
                  and (n["acc"] > ref_acc or n["energy_mj"] < ref_energy)]
    return {**summary, "phase2": phase2, "danet_b_phase2": {"acc": ref_acc, "energy_mj": ref_energy},
            "dominate_danet_b": len(dominating)}


def reference_at_phase2(promoted: dict[str, optuna.trial.FrozenTrial], options) -> tuple[float, float]:
    """DANet-B-18's validation accuracy and energy at phase 2's fidelity: the phase-2 study's own
    trial when the search promoted it (the same training, seed and data), else one training here."""
    held = [t for t in promoted.values() if TrialAttrs.of(t).seed_preset == REFERENCE
            and TrialAttrs.of(t).energy_mj is not None]
    if held:
        return held[0].values[0], TrialAttrs.of(held[0]).energy_mj
    splits = phase_splits(options, 2, options.phase1.resolution)
    fit = GenotypeFit(get_preset(REFERENCE), splits, options.phase2.fit)
    fit.run()
    return fit.evaluate(splits.val)["acc"], fit.measure()["energy_mj"]


def report(runs: list[dict[str, Any]]) -> None:
    print("\n| repetition | sampler | networks | phase-1 hypervolume | phase-2 networks dominating DANet-B-18 |")
    print("|---:|---|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (r["rep"], r["sampler"])):
        dominate = "not run" if r["dominate_danet_b"] is None else r["dominate_danet_b"]
        print(f"| {r['rep']} | {r['sampler']} | {r['networks']} | {r['hypervolume']:.4g} | {dominate} |")
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
                                             "search_args": search_args,
                                             "seeds_from": str(args.seeds_from) if args.seeds_from else None},
                         identity=lambda r: (r["rep"], r["sampler"]))
    if not args.report_only:
        for (rep, sampler), options in plans.items():
            if (rep, sampler) in store.done():
                continue
            if args.seeds_from is not None:
                print(f"{options.study_name}: {copy_seed_trials(args.seeds_from, options, sampler)} seed trials copied",
                      flush=True)
            result = run_search(options, log=lambda msg: print(msg, flush=True))
            chance = 1.0 / phase_splits(options, 1).num_classes
            store.add({"rep": rep, "sampler": sampler, **measure(result, options, chance)})
    report(store.runs())
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
