"""One lock per study that every worker of it agrees on, on any machine that shares its storage.

"Count finished trials, then start one" and "claim an architecture key" must be atomic across
processes; a PostgreSQL advisory lock (for a PostgreSQL study) or a file lock next to a SQLite or
journal file gives that without inventing a scheduler, and both die with the process that holds
them.
"""
from __future__ import annotations

import abc
import fcntl
import os
import threading
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from snnas.errors import StorageError
from snnas.study.storage import storage_errors, storage_spec, describe_storage

_ADVISORY_LOCK_NAMESPACE = 0x736E6E61  # "snna": keeps our advisory locks apart from others'


# --------------------------------------------------------------------------------------------
class StudyLock(abc.ABC):
    """Mutual exclusion among every worker of one study, on any machine that shares its storage.

    Re-entrant within a thread, so helpers that take the lock can call each other. Hold it for
    milliseconds (a few queries), never for a training run.
    """

    def __init__(self) -> None:
        self._local = threading.RLock()
        self._depth = 0

    @abc.abstractmethod
    def _acquire(self) -> None:
        """Take the cross-process part of the lock."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Give the cross-process part of the lock back."""

    def __enter__(self) -> "StudyLock":
        self._local.acquire()
        try:
            if self._depth == 0:
                self._acquire()
        except BaseException:
            self._local.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._release()
        finally:
            self._local.release()


class LocalLock(StudyLock):
    """For in-memory storages: only threads of this process can share them."""

    def _acquire(self) -> None:
        pass

    def _release(self) -> None:
        pass


class _FileLock(StudyLock):
    """flock on a file beside the SQLite/journal file; the kernel drops it when a process dies."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._fd: int | None = None

    def _acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class _AdvisoryLock(StudyLock):
    """A PostgreSQL session advisory lock; the server drops it when a worker's connection dies."""

    def __init__(self, engine, study_id: int) -> None:
        super().__init__()
        self._engine = engine
        self._key = (_ADVISORY_LOCK_NAMESPACE, int(study_id) % (2 ** 31))
        self._conn = None

    def _acquire(self) -> None:
        import sqlalchemy

        conn = self._engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:a, :b)"), {"a": self._key[0], "b": self._key[1]})
            conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        self._conn = conn

    def _release(self) -> None:
        import sqlalchemy

        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:a, :b)"), {"a": self._key[0], "b": self._key[1]})
            conn.commit()
        except storage_errors():
            conn.invalidate()  # a dead connection has released the lock already
        finally:
            conn.close()


def study_lock(storage: BaseStorage, study_name: str) -> StudyLock:
    """The lock all workers of ``study_name`` on ``storage`` agree on."""
    spec = storage_spec(storage)
    if isinstance(storage, RDBStorage):
        dialect = storage.engine.dialect.name
        if dialect == "postgresql":
            return _AdvisoryLock(storage.engine, storage.get_study_id_from_name(study_name))
        if dialect == "sqlite":
            database = storage.engine.url.database
            if not database or database == ":memory:":
                return LocalLock()
            return _FileLock(Path(database + ".snnas-lock"))
        raise StorageError(f"storage {describe_storage(storage)}: no study lock for database '{dialect}'")
    if isinstance(storage, JournalStorage):
        if spec is None or spec.path is None:
            raise StorageError("a journal storage must be opened with open_storage() to be shared by workers")
        return _FileLock(Path(str(spec.path) + ".snnas-lock"))
    return LocalLock()
