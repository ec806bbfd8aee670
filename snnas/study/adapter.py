"""Every place the plumbing leans on Optuna beyond its documented API, in one module.

Optuna's public API has no way to name a trial's storage id, to take one particular queued trial,
to read an enqueued trial's parameters before it runs, or to re-queue a failed trial; the workers
need all four. Each such use is here, once, with the assumption it makes written beside it, and
``tests/test_optuna_adapter.py`` checks every assumption against the installed Optuna: a release
that changes one fails that test, not a search three days in.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any, Iterator, Sequence

import numpy as np
import optuna
import optuna._hypervolume as _optuna_hv
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

# Study.ask warns with this text on a heartbeat storage: heartbeats are meant for Study.optimize.
# The workers beat themselves (snnas.study.heartbeats), so the warning says nothing to them.
HEARTBEAT_WARNING = "Heartbeat of storage is supposed"
# Study.enqueue_trial keeps the parameters of a queued trial in this system attribute until it runs.
FIXED_PARAMS_ATTR = "fixed_params"
# RetryHeartbeatStaleTrialCallback writes these on the re-queued trial, after copying every system
# attribute of the failed one (the checkpoint record and the worker record travel with a retry).
FAILED_TRIAL_ATTR = "failed_trial"  # the first trial of the retry chain
RETRY_HISTORY_ATTR = "retry_history"  # every earlier trial of the chain, oldest first


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (``Study._storage``)."""
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial, live or frozen (``_trial_id``; trial numbers are per study)."""
    return trial._trial_id


def system_attrs(trial: optuna.Trial) -> dict[str, Any]:
    """A live trial's system attributes as stored now (what another worker may have written too)."""
    return trial.storage.get_trial_system_attrs(trial_id(trial))


def set_system_attr(trial: optuna.Trial, key: str, value: Any) -> None:
    """Write a system attribute; raises ``UpdateFinishedTrialError`` once the trial is finished."""
    trial.storage.set_trial_system_attr(trial_id(trial), key, value)


def state_now(trial: optuna.Trial) -> TrialState:
    """A live trial's state as stored now (another worker may have failed it meanwhile)."""
    return trial.storage.get_trial(trial_id(trial)).state


def live_trial(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """The live handle of a trial this worker holds."""
    return optuna.Trial(study, trial_id(frozen))


def take_waiting(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial | None:
    """Take one particular queued trial (WAITING -> RUNNING), or None when another worker was first.

    ``Study._pop_waiting_trial_id`` does this for the first queued trial only; this is its loop body
    for a chosen one: the storage changes the state only from WAITING, and raises
    ``UpdateFinishedTrialError`` for a trial that finished meanwhile.
    """
    try:
        if not storage_of(study).set_trial_state_values(trial_id(frozen), state=TrialState.RUNNING):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    return live_trial(study, frozen)


def enqueued_params(trial: optuna.Trial | FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was enqueued with ({} for a sampled trial)."""
    attrs = system_attrs(trial) if isinstance(trial, optuna.Trial) else trial.system_attrs
    return dict(attrs.get(FIXED_PARAMS_ATTR) or {})


def requeue(study: optuna.Study, failed: FrozenTrial, without_user_attrs: Sequence[str] = ()) -> int | None:
    """Queue a failed trial again the way a stale heartbeat does (the storage's retry callback:
    same parameters, user and system attributes, reported values; at most its ``max_retry``
    times); the number of the new trial, or None where the storage has no retries or the trial
    has used them up. ``without_user_attrs`` are left off the retry (why this run failed)."""
    getter = getattr(storage_of(study), "get_heartbeat_stale_trial_callback", None)
    callback = getter() if callable(getter) else None
    if callback is None:
        return None
    source = copy.copy(failed)
    source.user_attrs = {k: v for k, v in failed.user_attrs.items() if k not in without_user_attrs}
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
    callback(study, source)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.number not in before and t.system_attrs.get(RETRY_HISTORY_ATTR, [None])[-1] == failed.number:
            return t.number
    return None


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for the features this project relies on (heartbeats,
    metric names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@contextlib.contextmanager
def quiet_heartbeat_warning() -> Iterator[None]:
    """Silence the warning ``Study.ask`` gives on a heartbeat storage (see :data:`HEARTBEAT_WARNING`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=HEARTBEAT_WARNING)
        yield


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()`` from a worker that beats its own heartbeat."""
    with quiet_heartbeat_warning():
        return study.ask()


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and through the storage's callback re-queue) the trials whose heartbeat went stale;
    a no-op on storages without heartbeats."""
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def name_metrics(study: optuna.Study, names: Sequence[str]) -> None:
    """Name the study's objectives (optuna-dashboard shows them instead of "Objective 0")."""
    with quiet_experimental():
        study.set_metric_names(list(names))


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """The volume ``losses`` (every objective minimised, one row a point, each below ``reference``)
    dominate up to ``reference``: ``optuna._hypervolume.compute_hypervolume``, what Optuna's own
    multi-objective samplers use (no public name)."""
    return float(_optuna_hv.compute_hypervolume(losses, reference))


def hypervolume_subset(losses: np.ndarray, k: int, reference: np.ndarray) -> list[int]:
    """Row indices of ``k`` of ``losses`` chosen greedily for hypervolume: Optuna's
    ``_hypervolume._solve_hssp`` (the subset selection its TPE and NSGA-III use; no public name)."""
    return sorted(int(i) for i in _optuna_hv._solve_hssp(losses, np.arange(len(losses)), k, reference))
