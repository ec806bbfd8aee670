"""Local worker processes: several workers of one study on this machine, each on its own device.

One Python process trains one trial at a time, and a machine has several cores or GPUs; so a
phase can run ``--workers N`` processes of :func:`snnas.study.workers.run_worker` side by side.
Each is a fresh (``spawn``) interpreter with its own torch threads and its own device: the
workers go round robin over the devices given (several to one GPU when there are more workers
than GPUs: small proxies share one well). The parent only watches: it redraws the progress, and
after Ctrl-C closes what its workers left running.
"""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna

from snnas.errors import SnnasError
from snnas.study.artifacts import ArtifactStore
from snnas.study.heartbeats import fail_dead_local_trials

WORKER_POLL_S = 1.0
EXIT_INTERRUPTED = 130  # a worker's exit status after Ctrl-C


@dataclass(frozen=True)
class ProcessSettings:
    """How a phase's trials are run on this machine."""

    workers: int = 1
    threads: int | None = None  # torch threads per worker; None: the cores shared out among them
    devices: tuple[str, ...] = ("cpu",)  # spread over round robin
    heartbeat_interval: int = 30
    grace_period: int = 120
    timeout_s: float | None = None
    cpus: int = 1

    def threads_each(self, workers: int) -> int:
        return self.threads or max(1, self.cpus // workers)

    def devices_of(self, workers: int) -> list[str]:
        return assign_devices(workers, self.devices)

    def devices_shared(self, workers: int) -> dict[str, int]:
        """How many of ``workers`` workers each device runs."""
        counts: dict[str, int] = {}
        for device in self.devices_of(workers):
            counts[device] = counts.get(device, 0) + 1
        return counts


def assign_devices(workers: int, devices: Sequence[str]) -> list[str]:
    """The device of each of ``workers`` workers: round robin over ``devices``."""
    if not devices:
        raise SnnasError("no device to run the workers on")
    return [devices[index % len(devices)] for index in range(workers)]


def run_local_workers(target: Callable[..., None], argsets: Sequence[tuple[Any, ...]], study: optuna.Study,
                      title: str, refresh: Callable[[], None] = lambda: None,
                      log: Callable[[str], None] = print, artifacts: ArtifactStore | None = None) -> None:
    """Run ``target(*args)`` in one spawned process per ``argsets`` entry, until all end.

    Ctrl-C reaches the workers too: they close their trials and exit with 130, and the parent
    then closes (as interrupted) any trial a worker left running, drops its checkpoints from
    ``artifacts``, and raises KeyboardInterrupt.
    A worker that fails ends the phase with one line naming its exit status.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads or locks inherited
    procs = [context.Process(target=target, args=args, name=f"snnas-{title.replace(' ', '')}-worker{index}")
             for index, args in enumerate(argsets)]
    for proc in procs:
        proc.start()
    try:
        while any(proc.is_alive() for proc in procs):
            time.sleep(WORKER_POLL_S)
            refresh()
    except KeyboardInterrupt:  # the workers got it too: they close their trials, then exit
        for proc in procs:
            proc.join()
        fail_dead_local_trials(study, log, interrupted=True, artifacts=artifacts)  # whatever point the interrupt reached in them
        raise
    if any(proc.exitcode == EXIT_INTERRUPTED for proc in procs):  # interrupted on its own (a signal to it alone)
        raise KeyboardInterrupt
    failed = [(index, proc.exitcode) for index, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        index, code = failed[0]
        raise SnnasError(f"{title}: worker {index} exited with code {code} (its message is above)")
