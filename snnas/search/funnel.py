"""The funnel: (0) optional screening, (1) proxy search with Hyperband, (2) the top K retrained
on more classes and epochs. Each phase is its own study in one storage, so every phase resumes:
running the same command again continues where it stopped.

What the search is asked lives in :mod:`snnas.search.options`; the local worker processes in
:mod:`snnas.study.processes`; this module orders the work.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from snnas.compiler.size import check_fits, estimate
from snnas.errors import SnnasError
from snnas.fit import built_genotype, check_batches
from snnas.presets import get_preset
from snnas.search import samplers
from snnas.search.attrs import (METRIC_NAMES, OBJECTIVE_DIRECTIONS, StudyAttrs, TrialAttrs, attrs_dict,
                                phase2_name)
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity
from snnas.search.leaderboard import best_per_key, summarize
from snnas.search.objective import Screen, SearchObjective
from snnas.search.options import SearchOptions, settings_difference
from snnas.search.pareto import Point, select_by_hypervolume
from snnas.search.progress import ProgressDisplay
from snnas.spaces import Space, load_space
from snnas.study.adapter import enqueued_params, name_metrics
from snnas.study.artifacts import DEFAULT_DIR_NAME, ArtifactStore, study_artifact_store
from snnas.study.locks import study_lock
from snnas.study.processes import EXIT_INTERRUPTED, run_local_workers
from snnas.study.storage import create_study_once, describe_storage, load_existing_study, open_storage
from snnas.study.workers import run_worker

_LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)


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


def check_space_fits(space: Space, fidelities: Sequence[Fidelity], splits, options: SearchOptions) -> None:
    """Refuse a search whose networks would not fit in memory before any trial starts: every seed
    and every uniform network of the space (one choice per gene) at each phase's batch, T and width,
    against the smallest share of a GPU that the workers get (or the process's memory on a CPU)."""
    candidates = [g for _, g in space.uniform()[:SIZE_CHECK_NETWORKS]]
    candidates += [get_preset(name).replace(stem=space.context.stem, neuron=space.context.neuron)
                   for name, _ in space.seeds()]
    shared = options.process.devices_shared(options.workers)
    gpus = [torch.cuda.get_device_properties(torch.device(d)).total_memory // n
            for d, n in shared.items() if d.startswith("cuda") and torch.cuda.is_available()]
    limit = min(gpus) if gpus else None
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


def enqueue_seeds(study: optuna.Study, space: Space, lock, budget: int | None = None) -> int:
    """Enqueue the space's seed presets that have no live or finished trial yet (a seed whose
    trial was interrupted is enqueued again), as many as the ``budget`` of trials has room for:
    a seed queued beyond it would wait forever; a continuation with a larger budget queues it."""
    added = 0
    with lock:
        trials = study.get_trials(deepcopy=False, states=_LIVE)
        held = [{**enqueued_params(t), **t.params} for t in trials]
        room = len(space.seeds()) if budget is None else budget - len(trials)
        for preset, params in space.seeds():
            if added >= room:
                break
            if params not in held:
                study.enqueue_trial(params, user_attrs=attrs_dict(seed_preset=preset))
                held.append(params)
                added += 1
    return added


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials best first, one per canonical key (:func:`~snnas.search.leaderboard.best_per_key`)."""
    return list(best_per_key(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))).values())


def promoted_trials(phase1: optuna.Study, k: int, objectives: Sequence[str] = ("acc",),
                    chance: float = 0.0) -> list[FrozenTrial]:
    """What phase 2 retrains: the top ``k`` networks by accuracy, or with several objectives at
    most ``k`` networks of the phase-1 Pareto set chosen by hypervolume contribution (reference
    point: ``chance`` accuracy and the largest value of every other objective seen in phase 1)."""
    networks = ranked(phase1)
    if len(objectives) == 1:
        return networks[:k]
    points = [Point(TrialAttrs.of(t).key, tuple(t.values)) for t in networks]
    reference = [chance] + [max(t.values[i] for t in networks) for i in range(1, len(objectives))]
    keep = {p.key for p in select_by_hypervolume(points, objectives, k, reference)}
    return [t for t in networks if TrialAttrs.of(t).key in keep]


def promote(phase1: optuna.Study, phase2: optuna.Study, k: int, lock, objectives: Sequence[str] = ("acc",),
            chance: float = 0.0) -> list[FrozenTrial]:
    """Enqueue the networks :func:`promoted_trials` picks in phase 2 (each once, across restarts). A
    network that a seed preset reached keeps the preset's name, so phase 2's plots mark it as a seed."""
    top = promoted_trials(phase1, k, objectives, chance)
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
                phase2.enqueue_trial(dict(t.params), user_attrs=attrs)  # its genes, for the phase's plots
    return top


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

    fid1, fid2 = options.phase1, options.phase2
    run_dir = options.run_dir
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    created = missing[-1] if missing else None  # the outermost folder this call will make
    try:  # a search that cannot start leaves nothing behind (no empty runs/<study>/)
        run_dir.mkdir(parents=True, exist_ok=True)
        splits1 = load_splits(fid1.data, resolution=fid1.resolution, data_seed=fid1.data_seed,
                              train_per_class=fid1.train_per_class, val_per_class=fid1.val_per_class,
                              cache_dir=options.cache_dir)
        check_batches(splits1, fid1.fit)  # before any trial: each would fail alike
        resolution = splits1.train.images.shape[-1]
        space = load_space(options.space, resolution=resolution)
        if not options.allow_large:
            check_space_fits(space, (fid1, fid2), splits1, options)
        storage = _open_storage(options)
        log(f"study {options.study_name} on {describe_storage(storage)}; space {space.name} ({space.source}); "
            f"objectives {', '.join(options.objectives)}")

        directions = [OBJECTIVE_DIRECTIONS[o] for o in options.objectives]
        study1 = create_study_once(storage, options.study_name, directions, make_sampler(options),
                                   make_pruner(options))
        lock1 = study_lock(storage, study1.study_name)
        fix_settings(study1, options.study_attrs(space.name, space.source), lock1)
        name_metrics(study1, [METRIC_NAMES[o] for o in options.objectives])
        artifacts = study_artifact_store(study1, options.artifacts, run_dir / DEFAULT_DIR_NAME, lock1)
        added = enqueue_seeds(study1, space, lock1, options.trials)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if added:
        log(f"enqueued {added} seed networks (the paper's DANets and baselines)")
    if options.create_only:
        _phase2_study(options, storage)
        log(f"created studies {options.study_name} and {phase2_name(options.study_name)}; start the workers now")
        return SearchResult(study1, None)

    _run_phase(options, 1, study1, options.trials, resolution, log,
               lambda device: (storage, lock1, _objective(options, 1, study1, lock1, splits1, space, artifacts,
                                                          device, log)), artifacts)
    result = SearchResult(study1, None)
    if options.promote == 0 or not ranked(study1):
        return result

    study2 = _phase2_study(options, storage)
    lock2 = study_lock(storage, study2.study_name)
    result.promoted = promote(study1, study2, options.promote, lock2, options.objectives,
                              chance=1.0 / splits1.num_classes)
    budget2 = len({TrialAttrs.of(t).promoted_key for t in study2.get_trials(deepcopy=False)} - {None})

    def here(device: str):
        splits2 = phase_splits(options, 2, resolution)
        return storage, lock2, _objective(options, 2, study2, lock2, splits2, space, artifacts, device, log)

    _run_phase(options, 2, study2, budget2, resolution, log, here, artifacts)
    result.phase2 = study2
    return result


def _open_storage(options: SearchOptions):
    return open_storage(options.storage, options.run_dir / "study.db", heartbeat_interval=options.heartbeat_interval,
                        grace_period=options.grace_period)


def _phase2_study(options: SearchOptions, storage) -> optuna.Study:
    study = create_study_once(storage, phase2_name(options.study_name), ["maximize"],
                              optuna.samplers.RandomSampler(seed=options.seed), optuna.pruners.NopPruner())
    StudyAttrs(fidelity_phase2=options.phase2.to_dict()).write(study)
    name_metrics(study, [METRIC_NAMES["acc"]])
    return study


def phase_splits(options: SearchOptions, phase: int, resolution: int | None = None):
    """The data a phase trains and validates on, as the search loads it (its cache included); a
    phase without its own resolution takes ``resolution``, the one phase 1 ran at."""
    from snnas.data import load_splits

    fid = options.phase1 if phase == 1 else options.phase2
    return load_splits(fid.data, resolution=fid.resolution or resolution, data_seed=fid.data_seed,
                       train_per_class=fid.train_per_class, val_per_class=fid.val_per_class,
                       cache_dir=options.cache_dir)


def _objective(options: SearchOptions, phase: int, study: optuna.Study, lock, splits, space: Space,
               artifacts: ArtifactStore, device: str, log: Callable[[str], None]) -> SearchObjective:
    """Phase 1 samples networks from ``space``; phase 2 trains only the promoted ones, recording
    their genes from the same space."""
    common = dict(device=device, progress=False, log=log, allow_large=options.allow_large, artifacts=artifacts)
    if phase == 1:
        screen = Screen(options.screen, options.screen_keep) if options.screen else None
        return SearchObjective(space, options.phase1, splits, options.run_dir, Dedupe(study, lock),
                               options.objectives, options.max_sops, screen, **common)
    return SearchObjective(space, options.phase2, splits, options.run_dir, Dedupe(study, lock), ("acc",), None, None,
                           samples=False, **common)


def _run_phase(options: SearchOptions, phase: int, study: optuna.Study, budget: int, resolution: int,
               log: Callable[[str], None], here: Callable[[str], tuple], artifacts: ArtifactStore) -> None:
    """Run phase ``phase`` to ``budget``: in this process, or in ``options.workers`` local worker
    processes (each with its own sampler seed, thread count and device) on the same study, whose
    ``artifacts`` store the parent cleans of the trials its interrupted workers leave behind."""
    title = f"phase {phase}"
    process = options.process
    workers = min(options.workers, budget)
    devices = process.devices_of(workers)
    if workers <= 1:
        if options.threads:
            torch.set_num_threads(options.threads)
        storage, lock, objective = here(devices[0])
        with ProgressDisplay(title, budget, study, enabled=options.progress) as bar:
            run_worker(study, objective, storage=storage, budget=budget, lock=lock, artifacts=artifacts,
                       callbacks=[bar.update, FailureStreak()], timeout_s=options.timeout_s, log=log)
        return
    threads = process.threads_each(workers)
    on = ", ".join(f"{n} on {d}" for d, n in process.devices_shared(workers).items())
    log(f"{title}: {workers} worker processes, {threads} thread{'s' if threads > 1 else ''} each ({on})")
    argsets = [(options, phase, index, threads, device, budget, resolution) for index, device in enumerate(devices)]
    with ProgressDisplay(title, budget, study, enabled=options.progress) as bar:
        run_local_workers(phase_worker, argsets, study, title, refresh=bar.refresh, log=log, artifacts=artifacts)


def phase_worker(options: SearchOptions, phase: int, index: int, threads: int, device: str, budget: int,
                 resolution: int) -> None:
    """One local worker process of a phase (``--workers N``): it opens the study the parent made and
    runs trials on ``device`` until the phase's budget is reached. Worker ``index`` samples with
    seed ``seed + index``: workers with one seed would propose the same networks at the same time."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = _open_storage(options)
        study1 = load_existing_study(storage, options.study_name, samplers.make_sampler(
            options.sampler, len(options.objectives), options.seed + index, options.trials), make_pruner(options))
        artifacts = study_artifact_store(study1, None, options.run_dir / DEFAULT_DIR_NAME)
        study = study1 if phase == 1 else load_existing_study(storage, phase2_name(options.study_name))
        lock = study_lock(storage, study.study_name)
        objective = _objective(options, phase, study, lock, phase_splits(options, phase, resolution),
                               load_space(options.space, resolution=resolution), artifacts, device, print)
        run_worker(study, objective, storage=storage, budget=budget, lock=lock, callbacks=[FailureStreak()],
                   timeout_s=options.timeout_s, log=print, artifacts=artifacts)
    except SnnasError as exc:
        print(f"snnas: error: worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:  # its trial is closed as interrupted; the parent says so once
        sys.exit(EXIT_INTERRUPTED)
