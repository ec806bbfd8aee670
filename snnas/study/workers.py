"""Run trials of one shared study from any number of processes, to an exact budget.

``study.optimize(n_trials=N)`` counts per process, and a shared ``MaxTrialsCallback`` overshoots
by up to one trial per extra worker. Here every worker starts a trial only under the study lock
and only while ``finished + running < budget``, so N workers finish exactly ``budget`` COMPLETE or
PRUNED trials between them. Failed trials (out of memory, errors) do not count: the budget is
what the search *learned*, and a failure teaches nothing. The worker that takes a trial writes
itself down as its owner in the same locked step, so no other worker ever sees the trial running
under a dead owner's name (a retry carries its dead predecessor's record until then).

While others still run the last trials a worker waits rather than exits: if one of them dies,
its heartbeat goes stale, a waiting worker fails it, ``RetryHeartbeatStaleTrialCallback``
re-queues it and the waiting worker runs the retry, which resumes from the dead trial's
checkpoint (:mod:`snnas.study.artifacts`). Storages without heartbeats (the journal file) cannot
tell a dead worker from a slow one, so there workers leave when nothing is left to start.

A trial finishes in one order: the objective stores its files (the weights), the worker tells
the value, and only then are the trial's checkpoints dropped from the artifact store. A result
that cannot be recorded is logged with its value, its files stay, and the trial is queued again
to resume from its last checkpoint. A worker whose heartbeat lapsed while it trained (its trial
was failed and retried meanwhile) says so, with its value, and leaves every file to the retry.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from snnas.errors import SnnasError
from snnas.study import adapter
from snnas.study.artifacts import ArtifactStore
from snnas.study.attrs import DETAIL_ATTR, REASON_ATTR, WORKER_ATTR
from snnas.study.failures import (FAILURE_CATCH, INTERRUPTED, Superseded, UnrecordedResult, format_values, guarded,
                                  one_line)
from snnas.study.heartbeats import Heartbeat, fail_dead_local_trials, heartbeat_interval, this_worker
from snnas.study.locks import StudyLock, study_lock

_logger = logging.getLogger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


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


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) while a trial is being taken.

    ``study.ask`` creates the trial (RUNNING) before the sampler proposes its parameters, which
    takes a while for TPE; an interrupt in between would leave a RUNNING trial that this worker
    never learnt it holds, so nobody would close it. A signal that arrives meanwhile is delivered
    when the block ends, once the worker holds the trial and can close it as interrupted.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    held: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):  # Python's own handler raises KeyboardInterrupt here
            previous(*held[0])
        elif held and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


def _take(study: optuna.Study) -> optuna.Trial:
    """The next trial (call it under the study lock, and write its owner in the same step): a retry
    of a failed trial before anything else queued, then Optuna's order."""
    trial = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.system_attrs.get(adapter.FAILED_TRIAL_ATTR) is not None:
            trial = adapter.take_waiting(study, t)
            if trial is not None:
                break
    return trial if trial is not None else adapter.ask(study)


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Any], *, storage: BaseStorage,
               budget: int, lock: StudyLock | None = None,
               catch: Sequence[type[Exception]] = FAILURE_CATCH,
               callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
               timeout_s: float | None = None, poll_s: float = 0.5,
               log: Callable[[str], None] = _logger.warning, artifacts: ArtifactStore | None = None) -> WorkerSummary:
    """Run trials of ``study`` until it holds ``budget`` COMPLETE + PRUNED trials.

    Enqueued (WAITING) trials are taken first, as Optuna's ``ask`` does, and count like any
    other. ``objective`` runs under the failure policy (:func:`snnas.study.failures.guarded`);
    ``catch`` lists the exceptions that fail a trial without stopping the worker. ``callbacks``
    are Optuna-style ``callback(study, frozen_trial)``. ``timeout_s`` stops starting new trials
    after that many seconds. ``artifacts``: the study's artifact store, whose checkpoints of a
    trial are dropped once its result is told. ``log`` gets what the user must read (a dead
    worker's trial retried, a result that could not be recorded). Safe to start many times, on
    many machines, on one study.
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
                        adapter.fail_stale_trials(study)
                    finished, running = _count(study)
                    if finished < budget and finished + running < budget:
                        with interrupts_deferred():
                            trial = _take(study)
                            adapter.set_system_attr(trial, WORKER_ATTR, this_worker())  # before the lock goes
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
            frozen = _run_trial(study, storage, trial, run, catch, interval, artifacts, log)
        except KeyboardInterrupt:
            if trial is not None:  # interrupted between taking the trial and training it: close it too
                _close_interrupted(study, storage, trial, artifacts)
            raise
        summary.states[frozen.state.name] += 1
        for callback in callbacks:
            callback(study, frozen)
    summary.wall_s = time.monotonic() - start
    return summary


def _close_interrupted(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial,
                       artifacts: ArtifactStore | None) -> None:
    """Fail a trial this worker holds as ``interrupted`` (a no-op once it is finished), with the
    checkpoints a retry's record may carry: nothing resumes an interrupted trial."""
    if adapter.state_now(trial) == TrialState.RUNNING:
        try:
            trial.set_user_attr(REASON_ATTR, INTERRUPTED)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if artifacts is not None and frozen.state == TrialState.FAIL:
            artifacts.drop_checkpoints(frozen)


def _run_trial(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial, run: Callable,
               catch: tuple[type[Exception], ...], interval: int | None, artifacts: ArtifactStore | None,
               log: Callable[[str], None]) -> FrozenTrial:
    value: Any = None
    state: TrialState | None = None
    error: BaseException | None = None
    unrecorded: UnrecordedResult | None = None
    with Heartbeat(storage, adapter.trial_id(trial), interval):
        try:
            value = run(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except UnrecordedResult as exc:
            state, unrecorded, value = TrialState.FAIL, exc, exc.values
        except Superseded:
            state = TrialState.FAIL
        except KeyboardInterrupt as exc:
            state, error = TrialState.FAIL, exc
            try:
                trial.set_user_attr(REASON_ATTR, INTERRUPTED)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
        except Exception as exc:  # noqa: BLE001 - judged against `catch` below, after telling
            state, error = TrialState.FAIL, exc
    if adapter.state_now(trial) != TrialState.RUNNING:  # failed by another worker while this one ran it
        return _superseded(study, storage, trial, value, unrecorded, log)
    if unrecorded is not None:
        return _fail_unrecorded(study, trial, unrecorded, log)
    if state is None:
        frozen = study.tell(trial, value, skip_if_finished=True)
        if frozen.state != TrialState.COMPLETE:  # failed by another worker between the check and the tell
            return _superseded(study, storage, trial, value, None, log)
    else:
        frozen = study.tell(trial, state=state, skip_if_finished=True)
    if artifacts is not None and (frozen.state in _FINISHED or isinstance(error, KeyboardInterrupt)):
        artifacts.drop_checkpoints(frozen)  # recorded, or interrupted (never retried): nothing resumes it
    if frozen.state == TrialState.COMPLETE:
        _logger.info("trial %d finished: %s", frozen.number, frozen.values)
    elif frozen.state == TrialState.PRUNED:
        _logger.info("trial %d pruned: %s", frozen.number, frozen.user_attrs.get(REASON_ATTR, "by the pruner"))
    else:
        _logger.warning("trial %d failed: %s", frozen.number, frozen.user_attrs.get(REASON_ATTR, error))
    if error is not None and not isinstance(error, catch):
        raise error
    return frozen


def _superseded(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial, value: Any,
                unrecorded: UnrecordedResult | None, log: Callable[[str], None]) -> FrozenTrial:
    """Say plainly that another worker took ``trial`` over; its files are the retry's now."""
    frozen = storage.get_trial(adapter.trial_id(trial))
    retries = [t.number for t in study.get_trials(deepcopy=False)
               if (t.system_attrs.get(adapter.RETRY_HISTORY_ATTR) or [None])[-1] == trial.number]
    by = f"retried as trial {retries[0]}" if retries else "failed"
    result = f"finished with {format_values(value)}" if value is not None else "stopped"
    kept = f"; this run's files stay in {unrecorded.kept}" if unrecorded is not None and unrecorded.kept else ""
    log(f"trial {trial.number}: {result}, but its heartbeat had lapsed and another worker had {by}: "
        f"superseded, this result is not recorded{kept}")
    return frozen


def _fail_unrecorded(study: optuna.Study, trial: optuna.Trial, unrecorded: UnrecordedResult,
                     log: Callable[[str], None]) -> FrozenTrial:
    """Fail a trial whose result could not be stored and queue it again: it keeps its checkpoints,
    so the retry resumes from the last one."""
    reason = one_line(f"result not recorded: {unrecorded.cause}")
    try:
        trial.set_user_attr(REASON_ATTR, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    retry = adapter.requeue(study, frozen, without_user_attrs=(REASON_ATTR, DETAIL_ATTR))
    kept = f"; its files stay in {unrecorded.kept}" if unrecorded.kept else ""
    then = f"retried as trial {retry}, which resumes from its checkpoints" if retry is not None else \
        "not retried (no retries left, or none on this storage); its checkpoints stay in the artifact store"
    log(f"trial {trial.number}: trained to {format_values(unrecorded.values)} but the result could not be recorded "
        f"({unrecorded.cause}){kept}; {then}")
    return frozen
