"""Trial files (weights, checkpoints) in Optuna's artifact store, so they travel with the study.

A study in PostgreSQL is shared by workers on many machines; a file on one worker's disk is not.
Every file another machine may need goes through an :mod:`optuna.artifacts` store: a directory
(the run directory's ``artifacts/`` by default, any shared path with ``--artifacts DIR``) or an S3
bucket (``--artifacts s3://BUCKET/PREFIX``, with boto3 installed). The store's location is
recorded in the study, so export and retries on any machine find it.

Two kinds of files:

- results (a trained network's weights) go through :func:`optuna.artifacts.upload_artifact`,
  so they are listed with their trial (optuna-dashboard shows them);
- checkpoints are replaced every epoch, so they are written to the store under fresh ids and
  named by one trial system attribute, ``{"slots": {slot: {"artifact_id", "step"}}, "garbage":
  [...]}``, whose slot is swapped only after the new file is complete; the file it replaced is
  then removed. Optuna copies a failed trial's system attributes to its retry, so a retry on any
  machine finds the dead trial's last checkpoint (and the files a kill left half-handled, which
  it removes).

Two runs of one trial never delete each other's files: a run writes its record only while the
trial is running (Optuna refuses to update a finished trial), so a worker whose trial was failed
and retried behind its back (:class:`~snnas.study.failures.Superseded`) stops before it removes
anything, and the files it named at the moment of the failure are the retry's from then on. A
trial's checkpoints are dropped only after its result is told (:func:`snnas.study.workers.run_worker`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from snnas.errors import SnnasError
from snnas.study.adapter import set_system_attr, state_now, system_attrs
from snnas.study.failures import Superseded

_logger = logging.getLogger(__name__)

DEFAULT_DIR_NAME = "artifacts"  # under the run directory
STORE_ATTR = "artifact_store"  # study user attr: where the study's files live (a path or s3:// URL)
# trial system attr: {"slots": {slot: {"artifact_id", "step"}}, "garbage": [stored files no slot names]}
CHECKPOINTS_SYSTEM_ATTR = "snnas_checkpoints"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class ArtifactStoreError(SnnasError):
    """An artifact store that cannot be used, or a file that is not in it."""


@dataclass(frozen=True)
class ArtifactLocation:
    """Where a study's files live: a directory, or an S3 bucket and key prefix."""

    text: str  # what the study records: an absolute path or s3://BUCKET/PREFIX
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None


def parse_artifact_location(text: str | os.PathLike, flag: str = "--artifacts") -> ArtifactLocation:
    """Validate a location without touching it (a bad one fails before any trial)."""
    raw = os.fspath(text).strip() if text is not None else ""
    if not raw:
        raise ArtifactStoreError(f"{flag}: empty location; give a directory or s3://BUCKET/PREFIX")
    if raw.startswith("s3://"):
        bucket, _, prefix = raw[len("s3://"):].partition("/")
        if not _BUCKET.match(bucket):
            raise ArtifactStoreError(f"{flag} {raw}: {bucket!r} is not an S3 bucket name")
        prefix = prefix.strip("/")
        return ArtifactLocation(f"s3://{bucket}" + (f"/{prefix}" if prefix else ""), bucket=bucket, prefix=prefix)
    if "://" in raw:
        scheme = raw.split("://", 1)[0]
        raise ArtifactStoreError(f"{flag} {raw}: {scheme}:// is not a supported store; give a directory or s3://")
    path = Path(raw).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ArtifactStoreError(f"{flag} {raw}: {path} is a file, not a directory")
    return ArtifactLocation(str(path), path=path)


class _Prefixed:
    """An S3 store whose objects share a key prefix (Optuna's Boto3 store writes at the bucket root)."""

    def __init__(self, store: Any, prefix: str):
        self._store, self._prefix = store, prefix.rstrip("/") + "/"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._store.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._store.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._store.remove(self._prefix + artifact_id)


@dataclass
class ArtifactStore:
    """An opened store and the location it came from (for messages and the study's record)."""

    location: ArtifactLocation
    backend: Any  # an optuna.artifacts store

    def upload(self, trial: optuna.Trial, path: Path) -> str:
        """Attach ``path`` to ``trial`` as an Optuna artifact; its id."""
        return upload_artifact(artifact_store=self.backend, file_path=str(path), study_or_trial=trial)

    def download(self, artifact_id: str, dest: Path, what: str = "file") -> Path:
        """Copy artifact ``artifact_id`` to ``dest``, complete or not at all
        (``optuna.artifacts.download_artifact`` writes ``dest`` in place: a kill leaves half a file)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, self.backend.open_reader(artifact_id) as reader:
                shutil.copyfileobj(reader, out)
            os.replace(tmp, dest)
        except ArtifactNotFound:
            raise ArtifactStoreError(f"{what} {artifact_id} is not in the artifact store {self.location.text} "
                                     "(pass --artifacts where the workers stored it)") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest

    def remove(self, artifact_id: str) -> None:
        try:
            self.backend.remove(artifact_id)
        except ArtifactNotFound:
            pass

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, trial: optuna.Trial, slot: str, path: Path, step: int, lock: Any = None) -> str:
        """Store ``path`` as the trial's checkpoint for ``slot`` (one per slot: each replaces the last).

        A worker may die at any point of this, and nothing it leaves is lost track of: the record
        (one system attribute, written whole) lists as garbage every stored file no slot names,
        before that file exists and from the moment the slot stops naming it. The next save (this
        trial's, or its retry's: the record travels with the system attributes) removes them.
        ``lock`` (the study lock) makes each record write and the check that the trial still runs
        one step; a trial that no longer runs raises :class:`Superseded` before anything is removed.
        """
        slots, garbage = _checkpoint_record(trial)
        artifact_id = f"checkpoint-{uuid.uuid4()}"
        old = (slots.get(slot) or {}).get("artifact_id")
        _write_record(trial, slots, [*garbage, artifact_id], lock)
        for leftover in garbage:
            self.remove(leftover)
        try:
            with open(path, "rb") as handle:
                self.backend.write(artifact_id, handle)
            slots[slot] = {"artifact_id": artifact_id, "step": int(step)}
            _write_record(trial, slots, [old] if old else [], lock)
        except Superseded:
            self.remove(artifact_id)  # named by no slot of the retry's record: only its garbage
            raise
        if old:  # still listed: if this remove is cut short, the next save repeats it
            self.remove(old)
        return artifact_id

    def restore_checkpoints(self, trial: optuna.Trial, dest: Callable[[str], Path]) -> dict[str, int]:
        """Download the checkpoints this trial holds (a retry: the dead trial's) to ``dest(slot)``;
        ``{slot: step}`` of what was restored. A checkpoint the store no longer has is skipped
        with a warning: that slot trains from its start."""
        restored = {}
        for slot, ref in checkpoints_of(trial).items():
            try:
                self.download(ref["artifact_id"], dest(slot), what=f"checkpoint of trial {trial.number}")
            except ArtifactStoreError as exc:
                _logger.warning("%s; trial %d trains %s from its start", exc, trial.number, slot)
                continue
            restored[slot] = int(ref["step"])
        return restored

    def drop_checkpoints(self, trial: FrozenTrial | optuna.Trial) -> None:
        """Remove a finished trial's checkpoints: its result is recorded, nothing resumes it. (Its
        record, frozen with the trial, still names them: a drop cut short can be repeated.)"""
        attrs = trial.system_attrs if isinstance(trial, FrozenTrial) else system_attrs(trial)
        record = attrs.get(CHECKPOINTS_SYSTEM_ATTR)
        if not isinstance(record, Mapping):
            return
        slots = checkpoint_slots(attrs)
        for artifact_id in dict.fromkeys([*(record.get("garbage") or []), *(r["artifact_id"] for r in slots.values())]):
            self.remove(artifact_id)


def checkpoint_slots(system_attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{slot: {"artifact_id", "step"}}`` from a trial's system attributes (live or frozen)."""
    record = system_attrs.get(CHECKPOINTS_SYSTEM_ATTR)
    return dict(record.get("slots") or {}) if isinstance(record, Mapping) else {}


def checkpoints_of(trial: optuna.Trial) -> dict[str, dict[str, Any]]:
    """The trial's checkpoint per slot."""
    return checkpoint_slots(system_attrs(trial))


def _checkpoint_record(trial: optuna.Trial) -> tuple[dict[str, dict[str, Any]], list[str]]:
    attrs = system_attrs(trial)
    record = attrs.get(CHECKPOINTS_SYSTEM_ATTR)
    garbage = list(record.get("garbage") or []) if isinstance(record, Mapping) else []
    return checkpoint_slots(attrs), garbage


def _write_record(trial: optuna.Trial, slots: Mapping[str, Any], garbage: list[str], lock: Any) -> None:
    with lock if lock is not None else contextlib.nullcontext():
        try:
            if lock is not None and state_now(trial) != TrialState.RUNNING:
                raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} is finished")
            set_system_attr(trial, CHECKPOINTS_SYSTEM_ATTR, {"slots": dict(slots), "garbage": garbage})
        except optuna.exceptions.UpdateFinishedTrialError:
            raise Superseded(f"trial {trial.number} was failed and retried by another worker") from None


def open_artifact_store(location: ArtifactLocation | str | os.PathLike, flag: str = "--artifacts") -> ArtifactStore:
    """Open (a directory: create) the store at ``location``; one clear line when it cannot be used."""
    loc = location if isinstance(location, ArtifactLocation) else parse_artifact_location(location, flag)
    if loc.is_s3:
        try:
            from optuna.artifacts import Boto3ArtifactStore
            import boto3  # noqa: F401  (Optuna's store imports it lazily; fail here, by name)
        except ImportError:
            raise ArtifactStoreError(f"{flag} {loc.text}: the S3 store needs boto3 "
                                     "(pip install 'snnas[s3]')") from None
        backend = Boto3ArtifactStore(loc.bucket)
        return ArtifactStore(loc, _Prefixed(backend, loc.prefix) if loc.prefix else backend)
    try:
        loc.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactStoreError(f"{flag} {loc.text}: cannot create the directory ({exc.strerror})") from None
    if not os.access(loc.path, os.W_OK | os.X_OK):
        raise ArtifactStoreError(f"{flag} {loc.text}: the directory is not writable")
    return ArtifactStore(loc, FileSystemArtifactStore(loc.path))


def study_artifact_store(study: optuna.Study, given: str | os.PathLike | None, default_dir: Path,
                         lock: Any = None) -> ArtifactStore:
    """The store of ``study``: the one it records, else ``given``, else ``default_dir``.

    Whatever store a study starts with is recorded in it, so that every worker, a retry on another
    machine and ``export`` find it from the storage alone. A ``given`` that differs from the
    recorded one is an error (the files would be split over two stores), and so is a recorded
    directory this machine cannot see: it is not created here, where it would be a second store.
    ``lock`` (the study lock) makes reading and recording the store one step among workers.
    """
    with lock if lock is not None else contextlib.nullcontext():
        recorded = study.user_attrs.get(STORE_ATTR)
        if recorded is None:
            loc = parse_artifact_location(given if given is not None else default_dir,
                                          "--artifacts" if given is not None else "the run directory's artifact store")
            store = open_artifact_store(loc)
            study.set_user_attr(STORE_ATTR, loc.text)
            return store
    if given is not None and parse_artifact_location(given).text != recorded:
        raise ArtifactStoreError(f"--artifacts {given}: study {study.study_name!r} keeps its files in {recorded}; "
                                 "give that location or leave --artifacts out")
    return open_recorded_store(study.study_name, recorded)


def open_recorded_store(study_name: str, recorded: str) -> ArtifactStore:
    """Open the store a study records; a directory this machine cannot see is one line."""
    loc = parse_artifact_location(recorded, f"study {study_name!r}'s artifact store")
    if not loc.is_s3 and not loc.path.is_dir():
        raise ArtifactStoreError(f"study {study_name!r} keeps its files in {loc.text}, which this machine cannot see "
                                 "(no such directory); run where that directory is reachable, or start a study that "
                                 "spans machines with --artifacts on a shared directory or s3://")
    return open_artifact_store(loc, flag=f"study {study_name!r}'s artifact store")
