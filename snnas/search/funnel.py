"""The funnel: (0) optional screening, (1) proxy search with Hyperband, (2) the top K retrained
on more classes and epochs. Each phase is its own study in one storage, so every phase resumes:
running the same command again continues where it stopped.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from snnas.compiler.size import check_fits, estimate
from snnas.errors import SnnasError
from snnas.fit import FitSettings, built_genotype
from snnas.presets import get_preset
from snnas.search import defaults, samplers
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity, promoted_data
from snnas.search.leaderboard import summarize
from snnas.search.attrs import StudyAttrs, TrialAttrs, attrs_dict
from snnas.search.objective import Screen, SearchObjective
from snnas.search.progress import ProgressDisplay
from snnas.study.artifacts import DEFAULT_DIR_NAME, parse_artifact_location, study_artifact_store
from snnas.study.locks import study_lock
from snnas.study.storage import (create_study_once, describe_storage, load_existing_study, open_storage,
                                 parse_storage_url)
from snnas.study.heartbeats import fail_dead_local_trials
from snnas.study.workers import run_worker
from snnas.spaces import Space, load_space

_logger = logging.getLogger(__name__)

PHASE2_SUFFIX = ".phase2"
OBJECTIVE_DIRECTIONS = {"acc": "maximize", "sops": "minimize", "energy": "minimize"}


def phase2_name(study: str) -> str:
    return study + PHASE2_SUFFIX


@dataclass(frozen=True)
class SearchOptions:
    space: str = "dense_additive"
    data: str = defaults.DATA
    data2: str | None = None  # default: promoted_data(data)
    study: str | None = None  # default: the space's name
    storage: str | None = None  # default: SQLite at runs/<study>/study.db
    artifacts: str | None = None  # trial files: default runs/<study>/artifacts, or the study's recorded store
    out: Path = Path("runs")
    trials: int = 20
    timeout_s: float | None = None
    promote: int = 3
    seed: int = 0  # the samplers' (worker i: seed + i); give each machine its own
    train_seed: int = 0  # the networks' initial weights and batch order: part of the fidelity
    data_seed: int = 0
    objectives: tuple[str, ...] = ("acc",)
    sampler: str = "tpe"  # phase 1's, see snnas.search.samplers ("tpe" is NSGA-II with several objectives)
    max_sops: float | None = None
    screen: str | None = None
    screen_keep: float = 0.5
    # phase 1 (proxy) and phase 2 (promotion) fidelities
    epochs: int = defaults.EPOCHS
    epochs2: int = defaults.EPOCHS2
    timesteps: int = 1
    resolution: int | None = None
    train_per_class: int | None = defaults.TRAIN_PER_CLASS
    train_per_class2: int | None = defaults.TRAIN_PER_CLASS2
    val_per_class: int | None = defaults.VAL_PER_CLASS
    width_mult: float = 0.25
    batch_size: int = 64
    recipe: str = defaults.RECIPE
    recipe2: str | None = None  # default: the phase-1 recipe
    allow_large: bool = False  # skip the memory check of the space's networks
    device: str | None = None
    progress: bool = True
    cache_dir: str | None = None
    create_only: bool = False  # create the studies and enqueue the seeds, then stop
    workers: int = 1  # local worker processes per phase
    threads: int | None = None  # torch threads per worker (default: the cores shared out among the workers)
    heartbeat_interval: int = 30  # a worker that stops beating for grace_period is failed and its trial retried
    grace_period: int = 120

    def worker_threads(self, workers: int) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // workers)

    @property
    def study_name(self) -> str:
        return self.study or self.space_name

    @property
    def space_name(self) -> str:
        return Path(self.space).stem

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.study_name

    def fidelities(self) -> tuple[Fidelity, Fidelity]:
        """Each phase's data and training settings (validated: a bad setting fails here, before any trial)."""
        fit = FitSettings(recipe=self.recipe, epochs=(self.epochs,), timesteps=(self.timesteps,),
                          width_mult=self.width_mult, batch_size=self.batch_size, seed=self.train_seed)
        one = Fidelity(phase="phase1", data=self.data, fit=fit, resolution=self.resolution,
                       train_per_class=self.train_per_class, val_per_class=self.val_per_class,
                       data_seed=self.data_seed)
        two = one.replace(phase="phase2", data=self.data2 or promoted_data(self.data),
                          fit=fit.replace(recipe=self.recipe2 or self.recipe, epochs=(self.epochs2,)),
                          train_per_class=self.train_per_class2)
        return one, two

    def validate(self) -> None:
        for o in self.objectives:
            if o not in OBJECTIVE_DIRECTIONS:
                raise SnnasError(f"--objectives: {o!r} is unknown; choose from {', '.join(OBJECTIVE_DIRECTIONS)}")
        if self.objectives[0] != "acc":
            raise SnnasError("--objectives: the first objective must be acc")
        samplers.check_sampler(self.sampler)
        if self.trials < 1 or self.promote < 0 or self.epochs < 1 or self.epochs2 < 1:
            raise SnnasError("--trials, --epochs and --epochs2 must be at least 1 and --promote at least 0")
        if self.workers < 1 or (self.threads is not None and self.threads < 1):
            raise SnnasError("--workers and --threads must be at least 1")
        in_memory = self.storage is not None and parse_storage_url(self.storage).url == "sqlite:///:memory:"
        if self.workers > 1 and in_memory:
            raise SnnasError(f"--workers {self.workers}: an in-memory SQLite study lives in one process; give a "
                             "file or a database the worker processes can share")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise SnnasError("--heartbeat-interval must be at least 1 s and below --grace-period")
        if not 0 < self.screen_keep <= 1:
            raise SnnasError(f"--screen-keep: {self.screen_keep} is not in (0, 1]")
        if self.screen not in (None, "sahd", "gradstab"):
            raise SnnasError(f"--screen: {self.screen!r} is unknown; choose sahd or gradstab")
        if self.artifacts is not None:
            parse_artifact_location(self.artifacts)
        for path in (Path(self.out), self.run_dir):
            if path.exists() and not path.is_dir():
                raise SnnasError(f"--out {self.out}: {path} is a file, not a directory")
        self.fidelities()


@dataclass
class SearchResult:
    phase1: optuna.Study
    phase2: optuna.Study | None
    promoted: list[FrozenTrial] = field(default_factory=list)


def make_sampler(options: SearchOptions) -> optuna.samplers.BaseSampler:
    return samplers.make_sampler(options.sampler, len(options.objectives), options.seed, options.trials)


def make_pruner(options: SearchOptions) -> optuna.pruners.BasePruner:
    if len(options.objectives) > 1:  # Optuna's pruners are single-objective only
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=options.epochs, reduction_factor=3)


SIZE_CHECK_NETWORKS = 1000  # a space's uniform networks checked before the first trial, at most


def check_space_fits(space: Space, fidelities: Sequence[Fidelity], splits, device: str | None) -> None:
    """Refuse a search whose networks would not fit in memory before any trial starts: every seed
    and every uniform network of the space (one choice per gene) at each phase's batch, T and width."""
    candidates = [g for _, g in space.uniform()[:SIZE_CHECK_NETWORKS]]
    candidates += [get_preset(name).replace(stem=space.context.stem, neuron=space.context.neuron)
                   for name, _ in space.seeds()]
    limit = None
    if device is not None and device.startswith("cuda") and torch.cuda.is_available():
        limit = torch.cuda.get_device_properties(torch.device(device)).total_memory
    for fid in fidelities:
        phases = fid.fit.phases()
        batch, timesteps = max(p.config.batch_size for p in phases), max(p.timesteps for p in phases)
        sizes = [(estimate(built_genotype(g, fid.fit, splits.resolution), in_channels=splits.in_channels,
                           num_classes=splits.num_classes, width_mult=float(fid.fit.width_mult),
                           resolution=fid.resolution or splits.resolution, timesteps=timesteps, batch_size=batch), g)
                 for g in candidates]
        size, g = max(sizes, key=lambda sg: sg[0].total_bytes)
        check_fits(size, f"{fid.phase} of this search ({space.name}'s largest network, {summarize(g.to_str())}, "
                   f"batch {batch}, T={timesteps})", limit)


def enqueue_seeds(study: optuna.Study, space: Space, lock) -> int:
    """Enqueue the space's seed presets that have no live or finished trial yet (a seed whose
    trial was interrupted is enqueued again)."""
    added = 0
    with lock:
        # An enqueued trial keeps its parameters in its system attrs until it runs.
        held = [{**t.system_attrs.get("fixed_params", {}), **t.params} for t in study.get_trials(
            deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))]
        for preset, params in space.seeds():
            if params not in held:
                study.enqueue_trial(params, user_attrs=attrs_dict(seed_preset=preset))
                held.append(params)
                added += 1
    return added


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials best first, one per canonical key (the first evaluation of each)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    done.sort(key=lambda t: (-t.values[0], t.number))
    out, seen = [], set()
    for t in done:
        key = TrialAttrs.of(t).key
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def promote(phase1: optuna.Study, phase2: optuna.Study, k: int, lock) -> list[FrozenTrial]:
    """Enqueue the top ``k`` phase-1 networks in phase 2 (each once, across restarts). A network
    that a seed preset reached keeps the preset's name, so phase 2's plots mark it as a seed."""
    top = ranked(phase1)[:k]
    records = [TrialAttrs.of(t) for t in phase1.get_trials(deepcopy=False)]
    seeds = {a.key: a.seed_preset for a in records if a.seed_preset}
    with lock:
        have = {TrialAttrs.of(t).promoted_key for t in phase2.get_trials(deepcopy=False, states=(
            TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))}
        for t in top:
            a = TrialAttrs.of(t)
            if a.key not in have:
                attrs = attrs_dict(genotype=a.canonical, promoted_from=t.number, promoted_key=a.key,
                                   phase1_acc=t.values[0])
                if a.key in seeds:
                    attrs["seed_preset"] = seeds[a.key]
                phase2.enqueue_trial({}, user_attrs=attrs)
    return top


# The command-line flag of each recorded setting, per phase (phase 2 shares phase 1's where it has none).
_PHASE1_FLAGS = {"data": "--data", "resolution": "--resolution", "train_per_class": "--train-per-class",
                 "val_per_class": "--val-per-class", "data_seed": "--data-seed", "recipe": "--recipe",
                 "epochs": "--epochs", "timesteps": "--timesteps", "width_mult": "--width-mult",
                 "batch_size": "--batch-size", "seed": "--train-seed"}
_PHASE2_FLAGS = {**_PHASE1_FLAGS, "data": "--data2", "train_per_class": "--train-per-class2", "recipe": "--recipe2",
                 "epochs": "--epochs2"}


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def settings_difference(study_name: str, recorded: StudyAttrs, wanted: StudyAttrs) -> str | None:
    """One line naming the first setting in which ``wanted`` differs from what the study recorded
    at its creation, or None when they agree."""
    pairs = [("--space", recorded.space, wanted.space), ("--objectives", recorded.objectives, wanted.objectives)]
    for flags, old, new in ((_PHASE1_FLAGS, recorded.fidelity_phase1, wanted.fidelity_phase1),
                            (_PHASE2_FLAGS, recorded.fidelity_phase2, wanted.fidelity_phase2)):
        old, new = old or {}, new or {}
        pairs += [(flags.get(name, f"the setting {name}"), old.get(name), new.get(name))
                  for name in sorted(set(old) | set(new)) if name not in ("key", "phase")]
    for flag, old, new in pairs:
        if old is not None and old != new:
            given = f"{flag} {_shown(new)}" if new is not None else f"{flag} left out"
            return (f"{given}: study {study_name!r} was created with {flag} {_shown(old)}, and a study's settings "
                    f"are fixed at its creation; run with {flag} {_shown(old)}, or give --study a new name")
    return None


def fix_settings(study: optuna.Study, wanted: StudyAttrs, lock) -> None:
    """Record the search's settings in a new study; a study that has them refuses others (phase 2
    would promote across two fidelities, and dedupe would mix their results)."""
    with lock:
        recorded = StudyAttrs.of(study)
        if recorded.fidelity_phase1 is None:
            wanted.write(study)
            return
        difference = settings_difference(study.study_name, recorded, wanted)
    if difference is not None:
        raise SnnasError(difference)


class FailureStreak:
    """Stop a phase when every one of the last ``limit`` trials failed: failures do not count
    toward the budget, so a systematic error (bad data, a broken setting) would loop forever."""

    def __init__(self, limit: int = 5):
        self.limit, self.streak = limit, 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.streak >= self.limit:
            reason = TrialAttrs.of(trial).fail_reason or "no reason recorded"
            raise SnnasError(f"{study.study_name}: the last {self.limit} trials all failed; last reason: {reason}")


def run_search(options: SearchOptions, log: Callable[[str], None] = print) -> SearchResult:
    from snnas.data import load_splits

    options.validate()
    fid1, fid2 = options.fidelities()
    run_dir = options.run_dir
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    created = missing[-1] if missing else None  # the outermost folder this call will make
    try:  # a search that cannot start leaves nothing behind (no empty runs/<study>/)
        run_dir.mkdir(parents=True, exist_ok=True)
        splits1 = load_splits(fid1.data, resolution=fid1.resolution, data_seed=fid1.data_seed,
                              train_per_class=fid1.train_per_class, val_per_class=fid1.val_per_class,
                              cache_dir=options.cache_dir)
        resolution = splits1.train.images.shape[-1]
        space = load_space(options.space, resolution=resolution)
        if not options.allow_large:
            check_space_fits(space, (fid1, fid2), splits1, options.device)
        storage = open_storage(options.storage, run_dir / "study.db", heartbeat_interval=options.heartbeat_interval,
                               grace_period=options.grace_period)
        log(f"study {options.study_name} on {describe_storage(storage)}; space {space.name} ({space.source})")

        directions = [OBJECTIVE_DIRECTIONS[o] for o in options.objectives]
        study1 = create_study_once(storage, options.study_name, directions, make_sampler(options),
                                   make_pruner(options))
        lock1 = study_lock(storage, study1.study_name)
        fix_settings(study1, StudyAttrs(space=space.name, space_source=space.source, objectives=list(options.objectives),
                                        sampler=samplers.sampler_name(options.sampler, len(options.objectives)),
                                        fidelity_phase1=fid1.to_dict(), fidelity_phase2=fid2.to_dict()), lock1)
        artifacts = study_artifact_store(study1, options.artifacts, run_dir / DEFAULT_DIR_NAME, lock1)
        added = enqueue_seeds(study1, space, lock1)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if added:
        log(f"enqueued {added} seed networks (the paper's DANets and baselines)")
    if options.create_only:
        create_study_once(storage, phase2_name(options.study_name), ["maximize"],
                          optuna.samplers.RandomSampler(seed=options.seed), optuna.pruners.NopPruner())
        log(f"created studies {options.study_name} and {phase2_name(options.study_name)}; start the workers now")
        return SearchResult(study1, None)

    _run_phase(options, 1, study1, options.trials, resolution, log,
               lambda: (storage, lock1, _objective(options, 1, study1, lock1, splits1, space, artifacts, log)))
    result = SearchResult(study1, None)
    if options.promote == 0 or not ranked(study1):
        return result

    study2 = create_study_once(storage, phase2_name(options.study_name), ["maximize"],
                               optuna.samplers.RandomSampler(seed=options.seed), optuna.pruners.NopPruner())
    lock2 = study_lock(storage, study2.study_name)
    StudyAttrs(fidelity_phase2=fid2.to_dict()).write(study2)
    result.promoted = promote(study1, study2, options.promote, lock2)
    budget2 = len({TrialAttrs.of(t).promoted_key for t in study2.get_trials(deepcopy=False)} - {None})

    def here():
        splits2 = _phase_splits(options, 2, resolution)
        return storage, lock2, _objective(options, 2, study2, lock2, splits2, None, artifacts, log)

    _run_phase(options, 2, study2, budget2, resolution, log, here)
    result.phase2 = study2
    return result


def _phase_splits(options: SearchOptions, phase: int, resolution: int):
    from snnas.data import load_splits

    fid = options.fidelities()[phase - 1]
    return load_splits(fid.data, resolution=fid.resolution or resolution, data_seed=fid.data_seed,
                       train_per_class=fid.train_per_class, val_per_class=fid.val_per_class,
                       cache_dir=options.cache_dir)


def _objective(options: SearchOptions, phase: int, study: optuna.Study, lock, splits, space: Space | None,
               artifacts, log: Callable[[str], None]) -> SearchObjective:
    fid = options.fidelities()[phase - 1]
    common = dict(device=options.device, progress=False, log=log, allow_large=options.allow_large,
                  artifacts=artifacts)
    if phase == 1:
        screen = Screen(options.screen, options.screen_keep) if options.screen else None
        return SearchObjective(space, fid, splits, options.run_dir, Dedupe(study, lock), options.objectives,
                               options.max_sops, screen, **common)
    return SearchObjective(None, fid, splits, options.run_dir, Dedupe(study, lock), ("acc",), None, None, **common)


def _run_phase(options: SearchOptions, phase: int, study: optuna.Study, budget: int, resolution: int,
               log: Callable[[str], None], here: Callable) -> None:
    """Run phase ``phase`` to ``budget``: in this process, or in ``options.workers`` local worker
    processes (each with its own sampler seed and thread count) on the same study."""
    title = f"phase {phase}"
    workers = min(options.workers, budget)
    if workers <= 1:
        if options.threads:
            torch.set_num_threads(options.threads)
        storage, lock, objective = here()
        with ProgressDisplay(title, budget, study, enabled=options.progress) as bar:
            run_worker(study, objective, storage=storage, budget=budget, lock=lock, artifacts=objective.artifacts,
                       callbacks=[bar.update, FailureStreak()], timeout_s=options.timeout_s, log=log)
        return
    threads = options.worker_threads(workers)
    log(f"{title}: {workers} worker processes, {threads} thread{'s' if threads > 1 else ''} each")
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads or locks inherited
    procs = [context.Process(target=phase_worker, args=(options, phase, index, threads, budget, resolution),
                             name=f"snnas-{title.replace(' ', '')}-worker{index}") for index in range(workers)]
    for proc in procs:
        proc.start()
    with ProgressDisplay(title, budget, study, enabled=options.progress) as bar:
        try:
            while any(proc.is_alive() for proc in procs):
                time.sleep(WORKER_POLL_S)
                bar.refresh()
        except KeyboardInterrupt:  # the workers got it too: they close their trials, then exit
            for proc in procs:
                proc.join()
            fail_dead_local_trials(study, log, interrupted=True)  # whatever point the interrupt reached in them
            raise
    if any(proc.exitcode == 130 for proc in procs):  # interrupted on its own (a signal to it alone)
        raise KeyboardInterrupt
    failed = [(index, proc.exitcode) for index, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        index, code = failed[0]
        raise SnnasError(f"{title}: worker {index} exited with code {code} (its message is above)")


WORKER_POLL_S = 1.0


def phase_worker(options: SearchOptions, phase: int, index: int, threads: int, budget: int, resolution: int) -> None:
    """One local worker process of a phase (``--workers N``): it opens the study the parent made and
    runs trials until the phase's budget is reached. Worker ``index`` samples with seed
    ``seed + index``: workers with one seed would propose the same networks at the same time."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(options.storage, options.run_dir / "study.db",
                               heartbeat_interval=options.heartbeat_interval, grace_period=options.grace_period)
        study1 = load_existing_study(storage, options.study_name, samplers.make_sampler(
            options.sampler, len(options.objectives), options.seed + index, options.trials), make_pruner(options))
        artifacts = study_artifact_store(study1, None, options.run_dir / DEFAULT_DIR_NAME)
        if phase == 1:
            study, space = study1, load_space(options.space, resolution=resolution)
        else:
            study, space = load_existing_study(storage, phase2_name(options.study_name)), None
        lock = study_lock(storage, study.study_name)
        objective = _objective(options, phase, study, lock, _phase_splits(options, phase, resolution), space,
                               artifacts, print)
        run_worker(study, objective, storage=storage, budget=budget, lock=lock, callbacks=[FailureStreak()],
                   timeout_s=options.timeout_s, log=print, artifacts=artifacts)
    except SnnasError as exc:
        print(f"snnas: error: worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:  # its trial is closed as interrupted; the parent says so once
        sys.exit(130)
