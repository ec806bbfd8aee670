"""Where a study lives: one URL for a SQLite file, a PostgreSQL database or an Optuna journal file.

Many workers on many machines share one study only through its storage, so this module is where
a mistyped URL, a server that is down or a wrong password must end as one clear line: the search
cannot start without it, and a traceback from three libraries deep helps nobody. The password of
a storage URL never appears in what this module logs, prints or raises (:func:`redact_url`).

Command line: ``python -m snnas.study.storage --check URL`` reports whether a URL is usable
(exit 0) or what is wrong with it (exit 2).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url

from snnas.argparsing import OneLineParser
from snnas.errors import StorageError
from snnas.study.adapter import quiet_experimental
from snnas.redact import redact_text, redact_url

_logger = logging.getLogger(__name__)

# Trials of real searches last minutes: a worker silent for two minutes is gone.
DEFAULT_HEARTBEAT_INTERVAL_S = 30
DEFAULT_GRACE_PERIOD_S = 120
DEFAULT_MAX_RETRY = 3
SQLITE_BUSY_TIMEOUT_S = 60  # many local workers queue on SQLite's single writer lock
PG_CONNECT_TIMEOUT_S = 10  # an unreachable host must not hang a worker for minutes

_USAGE = ("use sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DATABASE, journal:///PATH "
          "or a plain file path (SQLite)")
_PG_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2"}


# --------------------------------------------------------------------------------------------
# URL parsing
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StorageSpec:
    """A parsed storage URL. ``url`` may hold a password: show ``display`` instead."""

    kind: str  # "sqlite" | "postgresql" | "journal"
    url: str  # SQLAlchemy URL (sqlite, postgresql) or "" (journal)
    display: str
    path: Path | None = None  # SQLite or journal file; None for PostgreSQL and in-memory SQLite
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = None


def parse_storage_url(url: str | os.PathLike | None, default_path: str | os.PathLike | None = None) -> StorageSpec:
    """Validate a storage URL without connecting. ``None`` means the SQLite file ``default_path``."""
    if url is None or (isinstance(url, str) and not url.strip()):
        if default_path is None:
            raise StorageError(f"no storage given and no default path; {_USAGE}")
        path = Path(default_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_spec(path, explicit=False)
    text = os.fspath(url).strip()
    if "://" not in text:
        return _sqlite_spec(Path(text), explicit=True)
    scheme = text.split("://", 1)[0].lower()
    display = redact_url(text)
    if scheme == "sqlite":
        rest = text.split("://", 1)[1]
        if rest in ("", "/", "/:memory:"):
            return StorageSpec(kind="sqlite", url="sqlite:///:memory:", display="sqlite:///:memory:")
        if not rest.startswith("/"):
            raise StorageError(f"storage {display}: a SQLite URL has three slashes before a relative "
                               f"path (sqlite:///runs/study.db) and four before an absolute one")
        return _sqlite_spec(Path(rest[1:]), explicit=True)
    if scheme == "journal":
        rest = text.split("://", 1)[1]
        if not rest or rest == "/":
            raise StorageError(f"storage {display}: the journal URL names no file (journal:///path/to/study.log)")
        path = Path("/" + rest.lstrip("/") if rest.startswith("//") else rest)
        if path.is_dir():
            raise StorageError(f"storage {display}: {path} is a directory, not a journal file")
        if not path.parent.is_dir():
            raise StorageError(f"storage {display}: directory {path.parent} does not exist")
        return StorageSpec(kind="journal", url="", display=display, path=path)
    if scheme in _PG_SCHEMES:
        return _postgres_spec(text, display)
    if scheme.startswith("postgresql+"):
        raise StorageError(f"storage {display}: driver '{scheme.split('+', 1)[1]}' is not supported "
                           f"(use postgresql:// or postgresql+psycopg2://)")
    raise StorageError(f"storage {display}: unsupported scheme '{scheme}'; {_USAGE}")


def _sqlite_spec(path: Path, explicit: bool) -> StorageSpec:
    display = f"sqlite:///{path}"
    if path.is_dir():
        raise StorageError(f"storage {display}: {path} is a directory, not a SQLite file")
    if explicit and not path.parent.is_dir():
        raise StorageError(f"storage {display}: directory {path.parent} does not exist")
    return StorageSpec(kind="sqlite", url=f"sqlite:///{path.resolve()}", display=display, path=path)


def _postgres_spec(text: str, display: str) -> StorageSpec:
    """Parsed by SQLAlchemy, which opens the connection later: what is checked here is what is used."""
    rest = text.split("://", 1)[1]
    url = "postgresql+psycopg2://" + rest
    try:
        parts = make_url(url)
        port = parts.port
    except Exception as exc:  # noqa: BLE001 - ArgumentError, ValueError (bad port) and more
        raise StorageError(f"storage {display}: malformed URL ({redact_text(str(exc).splitlines()[0][:200])})") from None
    if port is not None and not 0 < port < 65536:
        raise StorageError(f"storage {display}: malformed URL (port {port} is outside 1-65535)")
    if "@" in (parts.host or "") or "@" in (parts.username or ""):
        raise StorageError(f"storage {display}: the user or password holds an unencoded '@'; write it as %40 "
                           "(or keep the password out of the URL: export PGPASSWORD=...)")
    if not parts.host:
        raise StorageError(f"storage {display}: the URL names no host (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
    if not parts.database:
        raise StorageError(f"storage {display}: the URL names no database (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)")
    return StorageSpec(kind="postgresql", url=url, display=display, host=parts.host, port=port or 5432,
                       database=parts.database, user=parts.username or None,
                       password=parts.password if parts.password is not None else parts.query.get("password"))


# --------------------------------------------------------------------------------------------
# Errors from drivers → one line
# --------------------------------------------------------------------------------------------
def _explain(exc: BaseException, spec: StorageSpec) -> str:
    """One line saying what is wrong, for the errors users actually cause."""
    orig = getattr(exc, "orig", None) or exc
    raw = str(orig)
    low = raw.lower()
    where = f"{spec.host}:{spec.port}" if spec.kind == "postgresql" else ""
    if spec.kind == "postgresql":
        if "password authentication failed" in low:
            reason = f"PostgreSQL at {where} rejected the password of user '{spec.user}'"
        elif "no password supplied" in low:
            reason = f"PostgreSQL at {where} wants a password for user '{spec.user}' and the URL has none"
        elif re.search(r'role ".*" does not exist', low):
            reason = f"PostgreSQL at {where} has no user '{spec.user}'"
        elif re.search(r'database ".*" does not exist', low):
            reason = (f"PostgreSQL at {where} has no database '{spec.database}' "
                      f"(create it first: createdb -h {spec.host} -p {spec.port} {spec.database})")
        elif "connection refused" in low:
            reason = f"cannot reach PostgreSQL at {where}: connection refused (is the server running and listening there?)"
        elif "timeout expired" in low or "timed out" in low:
            reason = f"cannot reach PostgreSQL at {where}: no answer within {PG_CONNECT_TIMEOUT_S} s"
        elif "could not translate host name" in low or "name or service not known" in low:
            reason = f"cannot reach PostgreSQL: unknown host '{spec.host}'"
        elif "permission denied" in low:
            reason = f"user '{spec.user}' may not use database '{spec.database}' on {where} (permission denied)"
        else:
            reason = _first_line(raw)
    else:
        name = spec.path if spec.path is not None else "the database"
        if "file is not a database" in low or "not a database" in low:
            reason = f"{name} is not a SQLite database"
        elif "unable to open database file" in low:
            reason = f"cannot open {name} (check the directory exists and is writable)"
        elif "readonly" in low or "read-only" in low or "permission denied" in low:
            reason = f"{name} is not writable"
        elif "locked" in low:
            reason = f"{name} stayed locked for {SQLITE_BUSY_TIMEOUT_S} s (another process holds it)"
        else:
            reason = _first_line(raw)
    return redact_text(f"storage {spec.display}: {reason}", spec.password)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return "unknown error"


def storage_errors() -> tuple[type[BaseException], ...]:
    import sqlalchemy.exc

    errors: list[type[BaseException]] = [sqlalchemy.exc.SQLAlchemyError, OSError]
    try:
        import psycopg2

        errors.append(psycopg2.Error)
    except ImportError:
        pass
    import sqlite3

    errors.append(sqlite3.Error)
    return tuple(errors)


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------
_DISPLAY: "weakref.WeakKeyDictionary[BaseStorage, StorageSpec]" = weakref.WeakKeyDictionary()


def _engine_kwargs(spec: StorageSpec) -> dict:
    if spec.kind == "postgresql":
        return {"pool_pre_ping": True,
                "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "snnas"}}
    return {"pool_pre_ping": True, "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}


def _require_driver(spec: StorageSpec) -> None:
    if spec.kind != "postgresql":
        return
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise StorageError(f"storage {spec.display}: the PostgreSQL driver is missing "
                           f"(pip install psycopg2-binary)") from None


def open_storage(url: str | os.PathLike | None, default_path: str | os.PathLike | None = None, *,
                 heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL_S,
                 grace_period: int | None = DEFAULT_GRACE_PERIOD_S,
                 max_retry: int | None = DEFAULT_MAX_RETRY,
                 inherit_intermediate_values: bool = True) -> BaseStorage:
    """An Optuna storage for ``url`` (``None``: SQLite at ``default_path``).

    SQLite and PostgreSQL get heartbeats: a trial whose worker stops beating for
    ``grace_period`` seconds is failed by the next live worker and re-queued up to ``max_retry``
    times with its parameters, user attributes and (``inherit_intermediate_values``) reported
    epochs, so a retry can resume from its checkpoint. The journal file has no heartbeats: a killed
    worker's trial stays RUNNING there.
    """
    spec = parse_storage_url(url, default_path)
    _require_driver(spec)
    if spec.kind == "journal":
        try:
            storage: BaseStorage = JournalStorage(JournalFileBackend(str(spec.path)))
        except storage_errors() as exc:
            raise StorageError(_explain(exc, spec)) from None
        _DISPLAY[storage] = spec
        return storage
    if heartbeat_interval is None or int(heartbeat_interval) <= 0:
        raise StorageError(f"heartbeat interval must be a positive number of seconds, not {heartbeat_interval!r}")
    if grace_period is not None and int(grace_period) <= int(heartbeat_interval):
        raise StorageError(f"grace period ({grace_period} s) must exceed the heartbeat interval ({heartbeat_interval} s)")
    last_exc: BaseException | None = None
    for attempt in range(3):
        try:
            with quiet_experimental():
                storage = RDBStorage(
                    spec.url, engine_kwargs=_engine_kwargs(spec),
                    heartbeat_interval=int(heartbeat_interval),
                    grace_period=None if grace_period is None else int(grace_period),
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry, inherit_intermediate_values=inherit_intermediate_values),
                )
            if spec.kind == "sqlite" and spec.path is not None:
                _use_wal(storage.engine)
            _DISPLAY[storage] = spec
            return storage
        except storage_errors() as exc:
            last_exc = exc
            # Workers that start together on an empty database race to create Optuna's tables;
            # the losers see "already exists" and succeed on a second look.
            if not _is_schema_race(exc):
                break
            time.sleep(0.2 * (attempt + 1))
    raise StorageError(_explain(last_exc, spec)) from None


def _use_wal(engine) -> None:
    """Write-ahead log + synchronous=NORMAL: a trial makes ~20 small commits, and with the default
    rollback journal each one waits for two fsyncs, which made SQLite the bottleneck of a few
    local workers. In WAL mode readers never block the writer, and NORMAL stays consistent
    through crashes (only the last commits before a power cut can be lost). WAL needs all
    processes on one machine, which SQLite needs anyway."""
    import sqlalchemy

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    sqlalchemy.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened so far lack the pragma
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()
    if str(mode).lower() != "wal":
        _logger.warning("SQLite kept journal mode %s (WAL unavailable on this filesystem)", mode)


def _is_schema_race(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "already exists" in text or "duplicate key value" in text


def storage_spec(storage: BaseStorage) -> StorageSpec | None:
    """The parsed URL a storage was opened from by :func:`open_storage` (None for others)."""
    return _DISPLAY.get(storage)


def describe_storage(storage: BaseStorage) -> str:
    """The storage's URL with the password hidden, for logs and reports."""
    spec = _DISPLAY.get(storage)
    if spec is not None:
        return spec.display
    if isinstance(storage, RDBStorage):
        return redact_url(storage.url)
    return type(storage).__name__


def check_storage(url: str | os.PathLike) -> str:
    """Connect to ``url`` without creating anything; the one-line description of what was found."""
    spec = parse_storage_url(url)
    _require_driver(spec)
    if spec.kind == "journal":
        state = "exists" if spec.path.exists() else "will be created"
        if spec.path.exists() and not os.access(spec.path, os.W_OK):
            raise StorageError(f"storage {spec.display}: {spec.path} is not writable")
        return f"ok: {spec.display} (journal file {state})"
    if spec.kind == "sqlite" and spec.path is not None and not spec.path.exists():
        if not os.access(spec.path.parent, os.W_OK):
            raise StorageError(f"storage {spec.display}: directory {spec.path.parent} is not writable")
        return f"ok: {spec.display} (SQLite file will be created)"
    import sqlalchemy

    engine = sqlalchemy.create_engine(spec.url, **_engine_kwargs(spec))
    try:
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            has_schema = inspector.has_table("studies")
            studies = conn.execute(sqlalchemy.text("SELECT count(*) FROM studies")).scalar() if has_schema else 0
    except storage_errors() as exc:
        raise StorageError(_explain(exc, spec)) from None
    finally:
        engine.dispose()
    what = f"{studies} stud{'y' if studies == 1 else 'ies'}" if has_schema else "empty, tables will be created"
    return f"ok: {spec.display} ({what})"


# --------------------------------------------------------------------------------------------
# Studies
# --------------------------------------------------------------------------------------------
def create_study_once(storage: BaseStorage, name: str, directions: Sequence[str | optuna.study.StudyDirection],
                      sampler: optuna.samplers.BaseSampler | None = None,
                      pruner: optuna.pruners.BasePruner | None = None,
                      load_if_exists: bool = True) -> optuna.Study:
    """Create study ``name`` (or load it when ``load_if_exists``); safe when workers race to create it.

    A loaded study must optimise the same directions, otherwise its results would be read
    backwards.
    """
    if not name or not str(name).strip():
        raise StorageError("a study needs a non-empty name")
    wanted = [_direction(d) for d in directions]
    if not wanted:
        raise StorageError("a study needs at least one direction (minimize or maximize)")
    display = describe_storage(storage)
    try:
        return optuna.create_study(storage=storage, study_name=name, directions=wanted,
                                   sampler=sampler, pruner=pruner, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        if not load_if_exists:
            raise StorageError(f"study '{name}' already exists in {display}") from None
    except storage_errors() as exc:
        spec = _DISPLAY.get(storage) or StorageSpec(kind="sqlite", url="", display=display)
        raise StorageError(_explain(exc, spec)) from None
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if list(study.directions) != wanted:
        have = ", ".join(d.name.lower() for d in study.directions)
        want = ", ".join(d.name.lower() for d in wanted)
        raise StorageError(f"study '{name}' in {display} optimises [{have}], not [{want}]")
    return study


def load_existing_study(storage: BaseStorage, name: str, sampler: optuna.samplers.BaseSampler | None = None,
                        pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Load study ``name``; a missing study names the studies that do exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        have = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "none"
        raise StorageError(f"no study '{name}' in {describe_storage(storage)} (studies there: {have})") from None


def _direction(direction: str | optuna.study.StudyDirection) -> optuna.study.StudyDirection:
    if isinstance(direction, optuna.study.StudyDirection):
        return direction
    text = str(direction).strip().lower()
    if text in ("minimize", "maximize"):
        return optuna.study.StudyDirection.MINIMIZE if text == "minimize" else optuna.study.StudyDirection.MAXIMIZE
    raise StorageError(f"study direction '{direction}' is not one of minimize, maximize")




# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m snnas.study.storage",
                                     description="Check that a study storage URL is usable.")
    parser.add_argument("--check", metavar="URL", required=True,
                        help="storage URL: sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DB, journal:///PATH")
    args = parser.parse_args(argv)
    try:
        print(check_storage(args.check))
    except StorageError as exc:
        print(f"snnas: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
