"""A trial with the shape of a training run but no network: a storage check and a throughput meter.

:class:`SyntheticObjective` samples a depth and a wiring, reports a learning curve per epoch,
prunes, dedupes, checkpoints and resumes from its origin's checkpoint, as a search trial does,
but sleeps instead of training. ``python -m snnas.search.synthetic`` runs one worker of it on a
shared study, to check a storage and measure worker throughput before spending GPU hours on it.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from snnas.argparsing import OneLineParser
from snnas.errors import SnnasError
from snnas.files import atomic_write_json
from snnas.search.attrs import set_attrs
from snnas.search.dedupe import Dedupe
from snnas.search.samplers import SAMPLERS, make_sampler
from snnas.study.artifacts import ArtifactStore, study_artifact_store
from snnas.study.locks import study_lock
from snnas.study.storage import (DEFAULT_GRACE_PERIOD_S, DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_MAX_RETRY,
                                 create_study_once, describe_storage, load_existing_study, open_storage)
from snnas.study.workers import run_worker

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
    exclusively, so double starts cannot hide) and its checkpoint, ``ckpt-<trial>.json``, each
    epoch; with ``artifacts`` too, each checkpoint goes to the study's artifact store, and a retry
    resumes from the one its dead predecessor stored there, as a search trial does.
    """

    epochs: int = 4
    epoch_s: float = 0.05
    fidelity: str = "synthetic"
    dedupe: Dedupe | None = None
    trace_dir: Path | None = None
    artifacts: ArtifactStore | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", 1, 3)
        wiring = trial.suggest_categorical("wiring", list(_WIRING_GAIN))
        key = synthetic_key(depth, wiring)
        if self.dedupe is not None:
            reused = self.dedupe.claim(trial, key, self.fidelity)
            if reused is not None:
                return reused
        else:
            set_attrs(trial, key=key, fidelity=self.fidelity)
        start_epoch, checkpoint = 0, None
        if self.trace_dir is not None:
            checkpoint = self.trace_dir / f"ckpt-{trial.number}.json"
            if self.artifacts is not None:
                restored = self.artifacts.restore_checkpoints(trial, lambda slot: checkpoint)
                start_epoch = restored.get(_SLOT, -1) + 1
            record = {"trial": trial.number, "key": key, "fidelity": self.fidelity, "start_epoch": start_epoch,
                      "pid": os.getpid()}
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
                if self.artifacts is not None:
                    self.artifacts.save_checkpoint(trial, _SLOT, checkpoint, epoch,
                                                   lock=self.dedupe.lock if self.dedupe is not None else None)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        if start_epoch >= self.epochs:  # killed after its last epoch's checkpoint
            accuracy = synthetic_accuracy(key, self.epochs - 1)
        return accuracy


_SLOT = "synthetic"


def _pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SnnasError(f"unknown pruner '{name}' (median, none)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m snnas.search.synthetic",
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
    parser.add_argument("--artifacts", metavar="DIR|s3://BUCKET/PREFIX",
                        help="checkpoints through the study's artifact store (with --trace-dir): a retry resumes")
    parser.add_argument("--sampler", choices=SAMPLERS, default="random")
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
        sampler, pruner = make_sampler(args.sampler, 1, args.seed, args.budget), _pruner(args.pruner)
        if args.create:
            study = create_study_once(storage, args.study, ["maximize"], sampler=sampler, pruner=pruner)
        else:
            study = load_existing_study(storage, args.study, sampler=sampler, pruner=pruner)
        lock = study_lock(storage, study.study_name)
        if args.trace_dir is not None:
            args.trace_dir.mkdir(parents=True, exist_ok=True)
        artifacts = study_artifact_store(study, args.artifacts, Path(args.artifacts), lock) if args.artifacts else None
        objective = SyntheticObjective(epochs=args.epochs, epoch_s=args.epoch_s, fidelity=args.fidelity,
                                       dedupe=None if args.no_dedupe else Dedupe(study, lock, poll_s=args.poll_s),
                                       trace_dir=args.trace_dir, artifacts=artifacts)
        if args.wait_for is not None:
            print("ready", flush=True)
            while not args.wait_for.exists():
                time.sleep(0.01)
        summary = run_worker(study, objective, storage=storage, budget=args.budget, lock=lock, poll_s=args.poll_s,
                             artifacts=artifacts)
    except SnnasError as exc:
        print(f"snnas: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"pid": os.getpid(), "storage": describe_storage(storage), **summary.as_dict()}), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
