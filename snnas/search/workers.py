"""Run trials of one shared study from any number of processes, to an exact budget.

``study.optimize(n_trials=N)`` counts per process, and a shared ``MaxTrialsCallback`` overshoots
by up to one trial per extra worker. Here every worker starts a trial only under the study lock
and only while ``finished + running < budget``, so N workers finish exactly ``budget`` COMPLETE or
PRUNED trials between them. Failed trials (out of memory, errors) do not count: the budget is
what the search *learned*, and a failure teaches nothing.

While others still run the last trials a worker waits rather than exits: if one of them dies,
its heartbeat goes stale, a waiting worker fails it, ``RetryHeartbeatStaleTrialCallback``
re-queues it and the waiting worker runs the retry, which resumes from the dead trial's
checkpoint (:func:`retry_origin` names it). Storages without heartbeats (the journal file) cannot
tell a dead worker from a slow one, so there workers leave when nothing is left to start.

``python -m snnas.search.workers`` runs a :class:`SyntheticObjective` — a trial with the shape
of a training run (epochs, reports, pruning, dedupe, checkpoint and resume) but no network — to
check a storage and measure worker throughput before spending GPU hours on it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from snnas.argparsing import OneLineParser
from snnas.errors import SnnasError
from snnas.files import atomic_write_json
from snnas.search.dedupe import Dedupe
from snnas.search.failures import FAILURE_CATCH, INTERRUPTED, REASON_ATTR, describe_exception, guarded
from snnas.search.storage import (
    DEFAULT_GRACE_PERIOD_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_MAX_RETRY,
    StudyLock,
    create_study_once,
    describe_storage,
    load_existing_study,
    open_storage,
    quiet_experimental,
    study_lock,
)

_logger = logging.getLogger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def heartbeat_interval(storage: BaseStorage) -> int | None:
    """Seconds between heartbeats, or None where the storage has no heartbeats."""
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if callable(getter) else None


def retry_origin(trial: optuna.Trial) -> int:
    """The number of the trial this one retries (the first of a chain), or its own number.

    A retry resumes from its origin's checkpoint, so checkpoints are filed by this number.
    """
    attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    origin = attrs.get("failed_trial")
    return trial.number if origin is None else int(origin)


class _Heartbeat:
    """Beats for one trial from a daemon thread; a dead process simply stops beating."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: int | None):
        self._storage, self._trial_id, self._interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat must not kill the trial
                _logger.warning("heartbeat for trial id %d failed: %s", self._trial_id, describe_exception(exc))
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "_Heartbeat":
        if self._interval:
            self._thread = threading.Thread(target=self._beat, name="snnas-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@dataclass
class WorkerSummary:
    """What one worker did: trials by final state, and how long it ran."""

    states: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    lock_wait_s: float = 0.0  # waiting for other workers' turn: grows when the storage is the bottleneck
    lock_held_s: float = 0.0

    @property
    def ran(self) -> int:
        return sum(self.states.values())

    def as_dict(self) -> dict[str, Any]:
        return {"ran": self.ran, "wall_s": round(self.wall_s, 3), "lock_wait_s": round(self.lock_wait_s, 3),
                "lock_held_s": round(self.lock_held_s, 3),
                **{state.lower(): n for state, n in sorted(self.states.items())}}


def _count(study: optuna.Study) -> tuple[int, int]:
    trials = study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING))
    finished = sum(t.state in _FINISHED for t in trials)
    return finished, len(trials) - finished


WORKER_ATTR = "snnas_worker"  # system attr: the process running a trial (host, pid, its start time)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (tells a live process from a reused pid), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _is_dead_here(worker: Any) -> bool:
    """Whether ``worker`` ran on this machine in a process that no longer exists."""
    if not isinstance(worker, dict) or worker.get("host") != socket.gethostname():
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    start = _process_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return worker.get("start") is not None and start != worker["start"]  # the pid now names another process


def fail_dead_local_trials(study: optuna.Study, log: Callable[[str], None] = _logger.warning) -> list[int]:
    """Fail (and, through the storage's retry callback, re-queue) the RUNNING trials whose worker
    ran on this machine and is gone: no need to wait out the heartbeat's grace period for them."""
    storage = study._storage
    callback = getattr(storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.system_attrs.get(WORKER_ATTR)
        if not _is_dead_here(worker):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        log(f"trial {t.number} was running in process {worker['pid']} on this machine, which is gone; "
            "retrying it now (from its last checkpoint)")
        if callback is not None:  # re-queues it, as a stale heartbeat would
            callback(study, storage.get_trial(t._trial_id))
    return failed


def _ask(study: optuna.Study) -> optuna.Trial:
    """The next trial: a retry of a failed trial before anything else queued, then Optuna's order."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.system_attrs.get("failed_trial") is None:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    with warnings.catch_warnings():
        # Optuna warns that heartbeats are meant for Study.optimize; this loop beats itself.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        return study.ask()


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *, storage: BaseStorage,
               budget: int, lock: StudyLock | None = None,
               catch: Sequence[type[Exception]] = FAILURE_CATCH,
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
               timeout_s: float | None = None, poll_s: float = 0.5,
               log: Callable[[str], None] = _logger.warning) -> WorkerSummary:
    """Run trials of ``study`` until it holds ``budget`` COMPLETE + PRUNED trials.

    Enqueued (WAITING) trials are taken first, as Optuna's ``ask`` does, and count like any
    other. ``objective`` runs under the failure policy (:func:`snnas.search.failures.guarded`);
    ``catch`` lists the exceptions that fail a trial without stopping the worker. ``callbacks``
    are Optuna-style ``callback(study, frozen_trial)``. ``timeout_s`` stops starting new trials
    after that many seconds. Safe to start many times, on many machines, on one study.
    """
    if int(budget) < 1:
        raise SnnasError(f"trial budget must be at least 1, not {budget}")
    budget = int(budget)
    lock = lock if lock is not None else study_lock(storage, study.study_name)
    interval = heartbeat_interval(storage)
    run = guarded(objective)
    catch = tuple(catch)
    summary = WorkerSummary()
    start = time.monotonic()
    announced_wait = False
    while timeout_s is None or time.monotonic() - start < timeout_s:
        asked = time.monotonic()
        trial = None
        try:
            with lock:
                acquired = time.monotonic()
                summary.lock_wait_s += acquired - asked
                try:
                    if interval:
                        fail_dead_local_trials(study, log)
                        with quiet_experimental():
                            optuna.storages.fail_stale_trials(study)
                    finished, running = _count(study)
                    trial = _ask(study) if finished < budget and finished + running < budget else None
                finally:
                    summary.lock_held_s += time.monotonic() - acquired
            if finished >= budget:
                break
            if trial is None:
                if not interval:
                    break  # no heartbeats: a RUNNING trial may belong to a dead worker; do not wait on it
                if not announced_wait:
                    _logger.info("budget of %d taken by %d finished + %d running trials; waiting", budget, finished,
                                 running)
                    announced_wait = True
                time.sleep(poll_s)
                continue
            announced_wait = False
            frozen = _run_trial(study, storage, trial, run, catch, interval)
        except KeyboardInterrupt:
            if trial is not None:  # interrupted between taking the trial and training it: close it too
                _close_interrupted(study, storage, trial)
            raise
        summary.states[frozen.state.name] += 1
        for callback in callbacks:
            callback(study, frozen)
    summary.wall_s = time.monotonic() - start
    return summary


def _close_interrupted(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial) -> None:
    """Fail a trial this worker holds as ``interrupted`` (a no-op once it is finished)."""
    if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
        trial.set_user_attr(REASON_ATTR, INTERRUPTED)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _run_trial(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial, run: Callable,
               catch: tuple[type[Exception], ...], interval: int | None) -> FrozenTrial:
    value: Any = None
    state: TrialState | None = None
    error: BaseException | None = None
    storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, this_worker())
    with _Heartbeat(storage, trial._trial_id, interval):
        try:
            value = run(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except KeyboardInterrupt as exc:
            state, error = TrialState.FAIL, exc
            trial.set_user_attr(REASON_ATTR, INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - judged against `catch` below, after telling
            state, error = TrialState.FAIL, exc
    # skip_if_finished: when this worker was too slow to beat, another one may have failed (and
    # re-queued) the trial already; its retry stands and this result is dropped.
    if state is None:
        frozen = study.tell(trial, value, skip_if_finished=True)
    else:
        frozen = study.tell(trial, state=state, skip_if_finished=True)
    if frozen.state == TrialState.COMPLETE:
        _logger.info("trial %d finished: %s", frozen.number, frozen.values)
    elif frozen.state == TrialState.PRUNED:
        _logger.info("trial %d pruned: %s", frozen.number, frozen.user_attrs.get(REASON_ATTR, "by the pruner"))
    else:
        _logger.warning("trial %d failed: %s", frozen.number, frozen.user_attrs.get(REASON_ATTR, error))
    if error is not None and not isinstance(error, catch):
        raise error
    return frozen


# --------------------------------------------------------------------------------------------
# The synthetic objective
# --------------------------------------------------------------------------------------------
_WIRING_GAIN = {"chain": 0.0, "dense_add": 0.08, "dense_cat": 0.04}


def synthetic_key(depth: int, wiring: str) -> str:
    """Canonical key: one block has nothing to wire densely, so every depth-1 network is a chain."""
    return f"chain-d{depth}" if depth == 1 or wiring == "chain" else f"{wiring}-d{depth}"


def synthetic_accuracy(key: str, epoch: int) -> float:
    """A learning curve per key: deterministic, so a reused result equals a retrained one."""
    wiring, depth = key.rsplit("-d", 1)
    final = 0.6 + 0.05 * int(depth) + _WIRING_GAIN[wiring]
    return final * (1.0 - 0.5 ** (epoch + 1))


@dataclass
class SyntheticObjective:
    """Sleeps ``epoch_s`` per epoch instead of training; reports, prunes, dedupes, resumes.

    With ``trace_dir`` it files one ``train-<trial>.json`` per training actually started (created
    exclusively, so double starts cannot hide) and a checkpoint per origin trial each epoch.
    """

    epochs: int = 4
    epoch_s: float = 0.05
    fidelity: str = "synthetic"
    dedupe: Dedupe | None = None
    trace_dir: Path | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", 1, 3)
        wiring = trial.suggest_categorical("wiring", list(_WIRING_GAIN))
        key = synthetic_key(depth, wiring)
        if self.dedupe is not None:
            reused = self.dedupe.claim(trial, key, self.fidelity)
            if reused is not None:
                return reused
        else:
            trial.set_user_attr("key", key)
            trial.set_user_attr("fidelity", self.fidelity)
        start_epoch, checkpoint = 0, None
        if self.trace_dir is not None:
            origin = retry_origin(trial)
            checkpoint = self.trace_dir / f"ckpt-{origin}.json"
            if checkpoint.exists():
                start_epoch = int(json.loads(checkpoint.read_text())["epoch"]) + 1
            record = {"trial": trial.number, "origin": origin, "key": key, "fidelity": self.fidelity,
                      "start_epoch": start_epoch, "pid": os.getpid()}
            fd = os.open(self.trace_dir / f"train-{trial.number}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh)
        accuracy = 0.0
        for epoch in range(start_epoch, self.epochs):
            time.sleep(self.epoch_s)
            accuracy = synthetic_accuracy(key, epoch)
            trial.report(accuracy, epoch)
            if checkpoint is not None:
                atomic_write_json(checkpoint, {"epoch": epoch, "accuracy": accuracy, "pid": os.getpid()})
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        if start_epoch >= self.epochs:  # killed after its last epoch's checkpoint
            accuracy = synthetic_accuracy(key, self.epochs - 1)
        return accuracy


def _pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SnnasError(f"unknown pruner '{name}' (median, none)")


def _sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise SnnasError(f"unknown sampler '{name}' (random, tpe)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m snnas.search.workers",
        description="Run one worker of the synthetic objective on a shared study (storage check and throughput).")
    parser.add_argument("--storage", required=True, help="sqlite:///PATH, postgresql://..., journal:///PATH")
    parser.add_argument("--study", required=True)
    parser.add_argument("--budget", type=int, required=True, help="COMPLETE + PRUNED trials the study should hold")
    parser.add_argument("--create", action="store_true", help="create the study when it does not exist")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-s", type=float, default=0.05)
    parser.add_argument("--fidelity", default="synthetic")
    parser.add_argument("--no-dedupe", action="store_true")
    parser.add_argument("--trace-dir", type=Path)
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--heartbeat-interval", type=int, default=DEFAULT_HEARTBEAT_INTERVAL_S)
    parser.add_argument("--grace-period", type=int, default=DEFAULT_GRACE_PERIOD_S)
    parser.add_argument("--max-retry", type=int, default=DEFAULT_MAX_RETRY)
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--wait-for", type=Path, metavar="PATH",
                        help="print 'ready', then start trials only once PATH exists (starts many workers at one moment)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(args.storage, heartbeat_interval=args.heartbeat_interval,
                               grace_period=args.grace_period, max_retry=args.max_retry)
        sampler, pruner = _sampler(args.sampler, args.seed), _pruner(args.pruner)
        if args.create:
            study = create_study_once(storage, args.study, ["maximize"], sampler=sampler, pruner=pruner)
        else:
            study = load_existing_study(storage, args.study, sampler=sampler, pruner=pruner)
        lock = study_lock(storage, study.study_name)
        if args.trace_dir is not None:
            args.trace_dir.mkdir(parents=True, exist_ok=True)
        objective = SyntheticObjective(epochs=args.epochs, epoch_s=args.epoch_s, fidelity=args.fidelity,
                                       dedupe=None if args.no_dedupe else Dedupe(study, lock, poll_s=args.poll_s),
                                       trace_dir=args.trace_dir)
        if args.wait_for is not None:
            print("ready", flush=True)
            while not args.wait_for.exists():
                time.sleep(0.01)
        summary = run_worker(study, objective, storage=storage, budget=args.budget, lock=lock, poll_s=args.poll_s)
    except SnnasError as exc:
        print(f"snnas: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"pid": os.getpid(), "storage": describe_storage(storage), **summary.as_dict()}), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
