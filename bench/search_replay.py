"""What the funnel costs: searches replayed over recorded results, in the spirit of NAS-Bench-201's
simulated train/eval and Syne Tune's simulator backend.

Over the uniform space (every network of which is in the ground-truth table), nothing is trained:
a trial of a network at a fidelity returns one of that network's recorded per-epoch curves (a seed
drawn at random, so the replay sees the proxy's noise) and costs its recorded wall time, epoch by
epoch; a network already evaluated at that fidelity costs nothing (the search's dedupe). Each
strategy runs many times with different seeds and no seed networks enqueued:

- random search and TPE, every trial trained to the end;
- TPE with Hyperband pruning over the proxy's epochs;
- the funnel: TPE + Hyperband, then the top K promoted to the phase-2 fidelity, recommending by
  phase 2.

Compute is counted in ground-truth-training equivalents (one unit: the mean wall time of one full
training in the table; training all 18 networks costs 18). A repetition *finds* the table's best
network when its recommendation (its best score at its highest fidelity) is that network; it is
*within the noise* when the recommendation's table accuracy is within the table's median
seed-to-seed spread of the best.

    python bench/search_replay.py --table bench/results/groundtruth_fashion10.json \\
        --sweep bench/results/proxy_sweep.json [--phase1 10s-f10-lr0.8] [--phase2 20s-f10] [--reps 100]
"""
from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

from snnas.cli import run_guarded
from snnas.errors import SnnasError
from snnas.files import atomic_write_json, parse_json, read_text
from snnas.fit import FitSettings, built_genotype
from snnas.groundtruth import Table
from snnas.plots.files import plt, save_png
from snnas.search.samplers import make_sampler
from snnas.spaces import Space, load_space

REPLAY_FORMAT = "snnas-search-replay/1"
BUDGET_SHARE = 0.25  # the target: the best network with at most this share of training all of them


@dataclass(frozen=True)
class Recorded:
    """One fidelity's recordings: per network, the per-epoch curves of each seed and the wall time."""

    curves: dict[str, list[list[float]]]
    wall_s: dict[str, float]

    @property
    def epochs(self) -> int:
        return min(len(c) for runs in self.curves.values() for c in runs)


def recorded(sweep_runs: list[dict[str, Any]], setting: str, keys: set[str]) -> Recorded:
    curves: dict[str, list[list[float]]] = {}
    walls: dict[str, list[float]] = {}
    for r in sweep_runs:
        if r["setting"] == setting and r["key"] in keys:
            curves.setdefault(r["key"], []).append(list(r["val_curve"]))
            walls.setdefault(r["key"], []).append(float(r["wall_s"]))
    missing = sorted(keys - set(curves))
    if missing:
        raise SnnasError(f"the sweep has no {setting!r} runs of {len(missing)} table networks ({', '.join(missing[:3])}, ...)")
    return Recorded(curves, {k: statistics.fmean(v) for k, v in walls.items()})


@dataclass(frozen=True)
class Strategy:
    name: str
    sampler: Callable[[int], optuna.samplers.BaseSampler]
    hyperband_eta: int | None = None  # None: no pruning
    promote: int = 0  # the funnel's phase 2


def _search_sampler(name: str, trials: int) -> Callable[[int], optuna.samplers.BaseSampler]:
    """The sampler a search with ``--sampler name`` and this budget builds (one objective)."""
    return lambda seed: make_sampler(name, 1, seed, trials)


def strategies(trials: int) -> tuple[Strategy, ...]:
    tpe = _search_sampler("tpe", trials)
    return (
        Strategy("random", _search_sampler("random", trials)),
        Strategy("tpe", tpe),
        Strategy("tpe+hyperband", tpe, hyperband_eta=3),
        Strategy("funnel K=3, eta=3", tpe, hyperband_eta=3, promote=3),
        Strategy("funnel K=5, eta=3", tpe, hyperband_eta=3, promote=5),
        Strategy("funnel K=3, eta=2", tpe, hyperband_eta=2, promote=3),
    )


@dataclass
class Ledger:
    """Compute spent and the recommendation after every step of one repetition."""

    unit_s: float
    spent: float = 0.0
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def charge(self, seconds: float) -> None:
        self.spent += seconds / self.unit_s

    def recommend(self, key: str) -> None:
        self.timeline.append((self.spent, key))


def replay_once(strategy: Strategy, seed: int, space: Space, key_of: dict[tuple, str], one: Recorded,
                two: Recorded | None, trials: int, unit_s: float) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger(unit_s)
    scores1: dict[str, float] = {}  # dedupe: one evaluation per network and fidelity
    pruned1: set[str] = set()
    pruner = (optuna.pruners.HyperbandPruner(min_resource=1, max_resource=one.epochs, reduction_factor=strategy.hyperband_eta)
              if strategy.hyperband_eta else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=strategy.sampler(seed), pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        space.suggest(trial)  # asks the trial for its genes, as the search's objective does
        key = key_of[tuple(sorted(trial.params.items()))]
        if key in pruned1:
            raise optuna.TrialPruned()
        if key in scores1:
            return scores1[key]
        curve = rng.choice(one.curves[key])
        per_epoch = one.wall_s[key] / len(curve)
        for epoch, value in enumerate(curve[:one.epochs], 1):
            ledger.charge(per_epoch)
            trial.report(value, epoch)
            if epoch < one.epochs and trial.should_prune():
                pruned1.add(key)
                raise optuna.TrialPruned()
        scores1[key] = curve[one.epochs - 1]
        ledger.recommend(max(scores1, key=scores1.get))
        return scores1[key]

    study.optimize(objective, n_trials=trials)
    if strategy.promote and two is not None and scores1:
        scores2: dict[str, float] = {}
        for key in sorted(scores1, key=lambda k: -scores1[k])[:strategy.promote]:
            curve = rng.choice(two.curves[key])
            ledger.charge(two.wall_s[key])
            scores2[key] = curve[-1]
            ledger.recommend(max(scores2, key=scores2.get))
    return ledger


def first_time(ledger: Ledger, good: set[str]) -> float | None:
    """Compute at which the recommendation is first in ``good`` and stays there."""
    when = None
    for spent, key in ledger.timeline:
        if key in good:
            when = spent if when is None else when
        else:
            when = None
    return when


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, default=Path("bench/results/groundtruth_fashion10.json"))
    p.add_argument("--sweep", type=Path, default=Path("bench/results/proxy_sweep.json"))
    p.add_argument("--phase1", default="10s-f10-lr0.8", help="the proxy setting replayed as phase 1")
    p.add_argument("--phase2", default="20s-f10", help="the setting replayed as the funnel's phase 2")
    p.add_argument("--space", default="uniform")
    p.add_argument("--trials", type=int, default=30, help="phase-1 trials per repetition")
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("bench/results/search_replay.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    table = Table.read(args.table)
    sweep = parse_json(read_text(args.sweep, "proxy sweep", SnnasError), str(args.sweep), SnnasError)
    space = load_space(args.space, resolution=int(table.settings.get("resolution") or 28))
    truth = table.mean_acc()
    fit = FitSettings.from_dict({**(table.settings.get("fit") or {}), "seed": 0})
    key_of = {tuple(sorted(params.items())): built_genotype(g, fit, int(table.settings.get("resolution") or 28)).key
              for params, g in space.uniform()}
    outside = sorted(set(key_of.values()) - set(truth))
    if outside:
        raise SnnasError(f"space {space.name!r} has {len(outside)} networks the table lacks ({', '.join(outside[:3])})")
    one = recorded(sweep["runs"], args.phase1, set(truth))
    two = recorded(sweep["runs"], args.phase2, set(truth))
    full = {n.key: n.wall_s for n in table.networks()}
    unit_s = statistics.fmean(full.values())
    best = max(truth, key=truth.get)
    spreads = sorted(n.spread for n in table.networks())
    noise = spreads[len(spreads) // 2]
    near = {k for k, v in truth.items() if truth[best] - v <= noise}
    budget = BUDGET_SHARE * len(truth)
    print(f"{len(truth)} networks; best {best} ({100 * truth[best]:.2f}%); within the noise ({100 * noise:.2f} "
          f"points): {len(near)}; one unit = {unit_s:.0f} s of full training; target: <= {budget:.1f} units")
    rows, regrets = [], {}
    for strategy in strategies(args.trials):
        found, within, spent, curves = [], [], [], []
        for rep in range(args.reps):
            ledger = replay_once(strategy, rep, space, key_of, one, two, args.trials, unit_s)
            found.append(first_time(ledger, {best}))
            within.append(first_time(ledger, near))
            spent.append(ledger.spent)
            curves.append(ledger.timeline)
        hit = [f for f in found if f is not None and f <= budget]
        hit_near = [f for f in within if f is not None and f <= budget]
        row = {"strategy": strategy.name, "reps": args.reps, "compute_spent_median": statistics.median(spent),
               "found_share": sum(f is not None for f in found) / args.reps,
               "found_within_budget_share": len(hit) / args.reps,
               "median_compute_to_find": statistics.median([f for f in found if f is not None]) if any(
                   f is not None for f in found) else None,
               "within_noise_within_budget_share": len(hit_near) / args.reps,
               "median_compute_to_within_noise": statistics.median([f for f in within if f is not None]) if any(
                   f is not None for f in within) else None}
        rows.append(row)
        regrets[strategy.name] = (_regret_curve(curves, truth, best, budget * 2),
                                  _share_curve(curves, {best}, budget * 2))
    print("\n| strategy | compute spent (median units) | finds the best | ... within 25% | median units to find | "
          "within the noise, within 25% | median units to within the noise |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {r['strategy']} | {r['compute_spent_median']:.2f} | {r['found_share']:.0%} | "
              f"{r['found_within_budget_share']:.0%} | {fmt(r['median_compute_to_find'])} | "
              f"{r['within_noise_within_budget_share']:.0%} | {fmt(r['median_compute_to_within_noise'])} |")
    atomic_write_json(args.out, {"format": REPLAY_FORMAT, "settings": {
        "table": str(args.table), "sweep": str(args.sweep), "phase1": args.phase1, "phase2": args.phase2,
        "space": space.name, "trials": args.trials, "reps": args.reps, "unit_s": unit_s, "best": best,
        "noise_points": noise, "within_noise": sorted(near), "budget_units": budget}, "strategies": rows})
    print(f"results: {args.out}\nplot: {_plot(regrets, budget, args.out.with_suffix('.png'))}")
    return 0


def _regret_curve(timelines: list[list[tuple[float, str]]], truth: dict[str, float], best: str,
                  horizon: float, points: int = 60) -> list[tuple[float, float]]:
    """Median regret (table points below the best) of the recommendation against compute."""
    grid = [horizon * i / (points - 1) for i in range(points)]
    out = []
    for x in grid:
        regrets = []
        for timeline in timelines:
            current = [key for spent, key in timeline if spent <= x]
            regrets.append(100 * (truth[best] - truth[current[-1]]) if current else float("nan"))
        known = [r for r in regrets if r == r]
        out.append((x, statistics.median(known) if len(known) > len(regrets) / 2 else float("nan")))
    return out


def _share_curve(timelines: list[list[tuple[float, str]]], good: set[str], horizon: float,
                 points: int = 60) -> list[tuple[float, float]]:
    """Share of repetitions whose recommendation is in ``good`` against compute."""
    grid = [horizon * i / (points - 1) for i in range(points)]
    out = []
    for x in grid:
        hits = 0
        for timeline in timelines:
            current = [key for spent, key in timeline if spent <= x]
            hits += bool(current) and current[-1] in good
        out.append((x, hits / len(timelines)))
    return out


def _plot(curves: dict[str, tuple[list[tuple[float, float]], list[tuple[float, float]]]], budget: float,
          path: Path) -> Path:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, (regret, share) in curves.items():
        ax.plot([x for x, _ in regret], [y for _, y in regret], label=name, lw=1.6)
        ax2.plot([x for x, _ in share], [100 * y for _, y in share], label=name, lw=1.6)
    for axis in (ax, ax2):
        axis.axvline(budget, color="black", ls="--", lw=1, label=f"{BUDGET_SHARE:.0%} of training all networks")
        axis.set_xlabel("compute (full-training equivalents)")
        axis.grid(alpha=0.3)
    ax.set_ylabel("median regret of the recommendation (test-accuracy points)")
    ax.set_title("Replayed searches over the uniform space: regret")
    ax2.set_ylabel("repetitions recommending the table's best network (%)")
    ax2.set_title("... and how often they recommend the best")
    ax2.set_ylim(0, 100)
    ax2.legend(fontsize=7, loc="lower right")
    return save_png(fig, path)


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
