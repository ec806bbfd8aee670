"""Heartbeats: how a live worker tells the others it still holds its trial.

A worker beats from a daemon thread, so a dead process simply stops beating; once its beat is
older than the storage's grace period a live worker fails the trial and Optuna's
``RetryHeartbeatStaleTrialCallback`` re-queues it. A worker that died on *this* machine need not
be waited out: :func:`fail_dead_local_trials` recognises its process as gone at once.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from snnas.study.adapter import requeue, storage_of, trial_id
from snnas.study.artifacts import ArtifactStore
from snnas.study.attrs import REASON_ATTR, WORKER_ATTR
from snnas.study.failures import INTERRUPTED, describe_exception

_logger = logging.getLogger(__name__)


def heartbeat_interval(storage: BaseStorage) -> int | None:
    """Seconds between heartbeats, or None where the storage has no heartbeats."""
    getter = getattr(storage, "get_heartbeat_interval", None)
    return getter() if callable(getter) else None


class Heartbeat:
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

    def __enter__(self) -> "Heartbeat":
        if self._interval:
            self._thread = threading.Thread(target=self._beat, name="snnas-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


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


def fail_dead_local_trials(study: optuna.Study, log: Callable[[str], None] = _logger.warning, *,
                           interrupted: bool = False, artifacts: ArtifactStore | None = None) -> list[int]:
    """Fail (and, through the storage's retry callback, re-queue) the RUNNING trials whose worker
    ran on this machine and is gone: no need to wait out the heartbeat's grace period for them.

    ``interrupted``: the workers were stopped on purpose (Ctrl-C to a parent and its worker
    processes); their leftover trials fail as ``interrupted``, as the workers' own would, and are
    not retried: their checkpoints are dropped from ``artifacts`` (where a worker stopped in the
    middle of storing one, its record names the file).
    """
    storage = storage_of(study)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.system_attrs.get(WORKER_ATTR)
        if not _is_dead_here(worker):
            continue
        try:
            if interrupted:
                storage.set_trial_user_attr(trial_id(t), REASON_ATTR, INTERRUPTED)
            if not storage.set_trial_state_values(trial_id(t), state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        if interrupted:
            if artifacts is not None:
                artifacts.drop_checkpoints(storage.get_trial(trial_id(t)))
            log(f"trial {t.number}: its worker (process {worker['pid']}) was interrupted before it could close it; "
                "closed as interrupted")
            continue
        retry = requeue(study, storage.get_trial(trial_id(t)))  # as a stale heartbeat would
        if retry is None:
            log(f"trial {t.number} was running in process {worker['pid']} on this machine, which is gone; failed")
        else:
            log(f"trial {t.number} was running in process {worker['pid']} on this machine, which is gone; "
                f"retrying it now as trial {retry} (from its last checkpoint)")
    return failed
