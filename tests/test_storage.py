"""Storage URLs: parsing, redaction, one-line errors, creating a study once, the study lock.
(PostgreSQL server errors are in test_workers_postgres.py.)"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage

from snnas.errors import StorageError
from snnas.study.storage import (
    check_storage,
    create_study_once,
    describe_storage,
    load_existing_study,
    open_storage,
    parse_storage_url,
)
from snnas.redact import redact_text, redact_url
from snnas.study.locks import study_lock

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice:s3cret@db:5432/nas", "postgresql://alice:***@db:5432/nas"),
    ("postgresql+psycopg2://alice:p%40ss@db/nas?sslmode=require", "postgresql+psycopg2://alice:***@db/nas?sslmode=require"),
    ("postgresql://alice:pa@ss@db/nas", "postgresql://***@db/nas"),  # an unencoded @: hide up to the last
    ("postgresql://alice@db/nas", "postgresql://alice@db/nas"),
    ("postgresql://db/nas", "postgresql://db/nas"),
    ("sqlite:///runs/x.db", "sqlite:///runs/x.db"),
    ("runs/x.db", "runs/x.db"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_hides_passwords_inside_messages():
    text = 'could not connect to "postgresql://bob:hunter2@10.0.0.1/db"; retry postgres://x:y@h/d'
    out = redact_text(text, "hunter2")
    assert "hunter2" not in out and ":y@" not in out
    assert "postgresql://bob:***@10.0.0.1/db" in out and "postgres://x:***@h/d" in out
    assert redact_text("password is swordfish", "swordfish") == "password is ***"


@pytest.mark.parametrize("url, kind", [
    ("runs/s.db", "sqlite"), ("sqlite:///runs/s.db", "sqlite"), ("sqlite:///:memory:", "sqlite"),
    ("postgresql://u:p@h/d", "postgresql"), ("postgres://u:p@h:6543/d", "postgresql"),
    ("postgresql+psycopg2://u:p@h/d", "postgresql"), ("journal:///tmp/s.log", "journal"),
])
def test_parse_kinds(url, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    spec = parse_storage_url(url)
    assert spec.kind == kind
    if kind == "postgresql":
        assert spec.url.startswith("postgresql+psycopg2://") and "p@" not in spec.display


def test_journal_url_paths():
    assert str(parse_storage_url("journal:///tmp/s.log").path) == "/tmp/s.log"
    assert str(parse_storage_url("journal:////tmp/s.log").path) == "/tmp/s.log"


@pytest.mark.parametrize("url, needle", [
    ("mysql://u:topsecret@h/d", "unsupported scheme 'mysql'"),
    ("redis://:topsecret@h:6379/0", "unsupported scheme 'redis'"),
    ("postgresql+asyncpg://u:topsecret@h/d", "driver 'asyncpg' is not supported"),
    ("postgresql://u:topsecret@h/", "names no database"),
    ("postgresql://u:topsecret@/d", "names no host"),
    ("postgresql://u:topsecret@h:99999/d", "malformed URL"),
    ("postgresql://u:topsecret@h:port/d", "malformed URL"),
    ("sqlite://relative.db", "three slashes"),
    ("journal://", "names no file"),
])
def test_bad_urls_are_one_clear_line_without_password(url, needle):
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    assert needle in message and "\n" not in message and "topsecret" not in message


def test_default_path_is_created_and_means_sqlite(tmp_path):
    storage = open_storage(None, tmp_path / "runs" / "study" / "study.db")
    assert isinstance(storage, RDBStorage)
    assert (tmp_path / "runs" / "study" / "study.db").exists()
    assert describe_storage(storage) == f"sqlite:///{tmp_path}/runs/study/study.db"


def test_plain_path_is_sqlite_and_explicit_missing_directory_is_an_error(tmp_path):
    assert isinstance(open_storage(str(tmp_path / "x.db")), RDBStorage)
    with pytest.raises(StorageError, match="directory .*nope does not exist"):
        open_storage(str(tmp_path / "nope" / "x.db"))
    with pytest.raises(StorageError, match="is a directory"):
        open_storage(f"sqlite:///{tmp_path}")


def test_a_file_that_is_not_sqlite(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are notes, not a database\n" * 100)
    with pytest.raises(StorageError) as info:
        open_storage(str(bogus))
    assert str(info.value) == f"storage sqlite:///{bogus}: {bogus} is not a SQLite database"


def test_sqlite_runs_in_wal_mode(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/w.db")
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_heartbeat_settings_are_validated(tmp_path):
    with pytest.raises(StorageError, match="grace period"):
        open_storage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=5, grace_period=5)
    storage = open_storage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=2, grace_period=5)
    assert storage.get_heartbeat_interval() == 2
    assert storage.get_heartbeat_stale_trial_callback() is not None


def test_journal_storage(tmp_path):
    storage = open_storage(f"journal://{tmp_path}/s.log")
    assert isinstance(storage, JournalStorage)
    study = create_study_once(storage, "j", ["maximize"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    again = open_storage(f"journal://{tmp_path}/s.log")
    assert len(optuna.load_study(study_name="j", storage=again).trials) == 2
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"journal://{tmp_path}/missing/s.log")


def test_create_study_once(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/c.db")
    first = create_study_once(storage, "s", ["maximize", "minimize"])
    second = create_study_once(storage, "s", ["maximize", "minimize"])
    assert first._study_id == second._study_id
    with pytest.raises(StorageError, match=r"optimises \[maximize, minimize\], not \[minimize\]"):
        create_study_once(storage, "s", ["minimize"])
    with pytest.raises(StorageError, match="already exists"):
        create_study_once(storage, "s", ["maximize", "minimize"], load_if_exists=False)
    with pytest.raises(StorageError, match="not one of minimize, maximize"):
        create_study_once(storage, "t", ["up"])
    with pytest.raises(StorageError, match=r"no study 'nope' .*\(studies there: s\)"):
        load_existing_study(storage, "nope")


def test_create_study_once_race_between_threads(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/r.db")
    ids, errors = [], []

    def create():
        try:
            ids.append(create_study_once(storage, "race", ["maximize"])._study_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 1 and len(ids) == 4


def test_file_lock_excludes_other_holders(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/l.db")
    create_study_once(storage, "l", ["maximize"])
    first, second = study_lock(storage, "l"), study_lock(storage, "l")
    order = []
    with first:
        with first:  # re-entrant in one thread
            pass

        def take():
            with second:
                order.append("second")

        thread = threading.Thread(target=take)
        thread.start()
        time.sleep(0.2)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]
    assert (tmp_path / "l.db.snnas-lock").exists()


def test_check_storage(tmp_path):
    assert check_storage(f"sqlite:///{tmp_path}/new.db") == f"ok: sqlite:///{tmp_path}/new.db (SQLite file will be created)"
    assert not (tmp_path / "new.db").exists()
    storage = open_storage(f"sqlite:///{tmp_path}/old.db")
    create_study_once(storage, "a", ["maximize"])
    assert check_storage(f"sqlite:///{tmp_path}/old.db").endswith("(1 study)")
    assert check_storage(f"journal://{tmp_path}/j.log").endswith("(journal file will be created)")


def test_check_command_line_exit_codes(tmp_path):
    bad = "mysql://root:Sup3rSecret@localhost/db"
    proc = subprocess.run([sys.executable, "-m", "snnas.study.storage", "--check", bad],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("snnas: error: storage mysql://root:***@localhost/db: unsupported scheme 'mysql'; use "
                           "sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DATABASE, journal:///PATH "
                           "or a plain file path (SQLite)\n")
    assert "Sup3rSecret" not in proc.stdout
    ok = subprocess.run([sys.executable, "-m", "snnas.study.storage", "--check", f"sqlite:///{tmp_path}/a.db"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")
