"""Train each architecture once per fidelity, however many workers sample it.

Many genotypes are the same network (their canonical key is equal), and samplers revisit good
regions, so the same key comes up again and again — often on two workers at the same moment.
Training it twice wastes a proxy run; worse, two different accuracies for one network make the
leaderboard noisy. So a trial first *claims* its ``(key, fidelity)`` under the study lock:

- a finished trial with that key and fidelity exists → reuse its value (the trial records
  ``dedupe_of``), or prune if that earlier evaluation was pruned;
- another running trial holds the claim → wait for it, then reuse (or, if it failed, claim anew);
- otherwise the trial stores ``key`` and ``fidelity`` as user attributes (:class:`~snnas.search.attrs.TrialAttrs`) — that is the claim —
  and trains.

The claim lives in Optuna's own trial table, so it needs no extra table and survives restarts.
A claim of a worker that died ends at once when it died on this machine (its process is gone:
the check the workers make), else when its heartbeat goes stale and the trial is failed. Storages
without heartbeats (the journal file) cannot tell a dead holder on another machine from a slow
one, so no wait lasts longer than ``max_wait_s``: then the waiter trains the network itself.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from snnas.search.attrs import TrialAttrs, copy_attrs, set_attrs
from snnas.study.adapter import fail_stale_trials
from snnas.study.heartbeats import fail_dead_local_trials
from snnas.study.locks import LocalLock, StudyLock

_logger = logging.getLogger(__name__)

_HOLDING_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
MAX_WAIT_S = 3600.0  # for one holder: longer than a proxy trial takes, short of losing a day to a dead one


def _matches(trial: FrozenTrial, key: str, fidelity: Any) -> bool:
    attrs = TrialAttrs.of(trial)
    return attrs.key == key and attrs.fidelity == fidelity


def find(study: optuna.Study, key: str, fidelity: Any,
         states: Iterable[TrialState] = (TrialState.COMPLETE,), exclude: int | None = None) -> FrozenTrial | None:
    """The earliest trial in ``states`` that holds ``(key, fidelity)``, other than trial ``exclude``."""
    states = tuple(states)
    best: FrozenTrial | None = None
    for t in study.get_trials(deepcopy=False, states=states):
        if t.number != exclude and _matches(t, key, fidelity) and (best is None or t.number < best.number):
            best = t
    return best


def result_of(trial: FrozenTrial) -> float | list[float]:
    """What an objective returns to reproduce ``trial``'s outcome."""
    values = list(trial.values or [])
    return values[0] if len(values) == 1 else values


def lookup(study: optuna.Study, key: str, fidelity: Any) -> float | list[float] | None:
    """The value(s) of a finished trial that evaluated ``key`` at ``fidelity``, or None."""
    done = find(study, key, fidelity)
    return None if done is None else result_of(done)


class Dedupe:
    """Claims ``(key, fidelity)`` for a trial; see the module docstring.

    ``lock`` must be the study's cross-process lock (:func:`snnas.study.locks.study_lock`)
    when several processes share the study.
    """

    def __init__(self, study: optuna.Study, lock: StudyLock | None = None, poll_s: float = 0.5,
                 max_wait_s: float = MAX_WAIT_S):
        self.study = study
        self.lock = lock if lock is not None else LocalLock()
        self.poll_s, self.max_wait_s = float(poll_s), float(max_wait_s)

    def claim(self, trial: optuna.Trial, key: str, fidelity: Any) -> float | list[float] | None:
        """None: this trial owns ``(key, fidelity)`` and must train it. A value: return it from the
        objective, it is the earlier result. Raises ``optuna.TrialPruned`` when the earlier
        evaluation was pruned."""
        waited_on: int | None = None
        waiting_since = time.monotonic()
        while True:
            with self.lock:
                if waited_on is not None:  # a holder that died must not keep us waiting
                    fail_dead_local_trials(self.study, _logger.warning)
                    fail_stale_trials(self.study)
                holder = self._holder(trial.number, key, fidelity)
                gave_up = holder is not None and holder.state == TrialState.RUNNING \
                    and time.monotonic() - waiting_since >= self.max_wait_s
                if holder is None or gave_up:
                    if gave_up:
                        _logger.warning("trial %d: trial %d has held key %s for %.0f s without a result; "
                                        "training it here", trial.number, holder.number, key, self.max_wait_s)
                    set_attrs(trial, key=key, fidelity=fidelity)
                    return None
            if holder.state == TrialState.RUNNING:
                if waited_on != holder.number:
                    _logger.info("trial %d waits for trial %d, which is training key %s", trial.number,
                                 holder.number, key)
                    waited_on, waiting_since = holder.number, time.monotonic()
                time.sleep(self.poll_s)
                continue
            return self._reuse(trial, holder, key, fidelity)

    def _holder(self, number: int, key: str, fidelity: Any) -> FrozenTrial | None:
        candidates = [t for t in self.study.get_trials(deepcopy=False, states=_HOLDING_STATES)
                      if t.number != number and _matches(t, key, fidelity)]
        if not candidates:
            return None
        # A finished result beats a running claim; among equals the earliest trial wins.
        return min(candidates, key=lambda t: (_HOLDING_STATES.index(t.state), t.number))

    def _reuse(self, trial: optuna.Trial, earlier: FrozenTrial, key: str, fidelity: Any) -> float | list[float]:
        copy_attrs(trial, earlier.user_attrs)
        set_attrs(trial, key=key, fidelity=fidelity, dedupe_of=earlier.number)
        if earlier.state == TrialState.PRUNED:
            set_attrs(trial, fail_reason=f"same key as pruned trial {earlier.number}")
            raise optuna.TrialPruned(f"same key as pruned trial {earlier.number}")
        _logger.info("trial %d reuses trial %d (key %s, fidelity %s)", trial.number, earlier.number, key, fidelity)
        return result_of(earlier)
