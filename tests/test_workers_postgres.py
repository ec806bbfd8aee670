"""The scale-out guarantees on a real PostgreSQL 15 (throw-away server on 127.0.0.1, see pg.py)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest

from pg import ROLE_PASSWORD, free_port
from snnas.errors import StorageError
from snnas.study.storage import check_storage, open_storage
from test_workers import STUDY, concurrent_scenario, kill_scenario

pytestmark = [pytest.mark.postgres,
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")]


def test_three_workers_one_study(postgres_url, tmp_path):
    concurrent_scenario(postgres_url, tmp_path, workers=3, budget=24)


def test_kill_minus_9_worker(postgres_url, tmp_path):
    kill_scenario(postgres_url, tmp_path)


def test_workers_racing_to_create_one_study_on_an_empty_database(postgres_url):
    """Tables and study are created by whoever wins; the others load what it made."""
    code = textwrap.dedent(f"""
        import sys, time
        from snnas.study.storage import open_storage, create_study_once
        url, go = sys.argv[1], float(sys.argv[2])
        while time.time() < go:
            time.sleep(0.001)
        storage = open_storage(url)
        study = create_study_once(storage, {STUDY!r}, ["maximize"])
        print(storage.get_study_id_from_name({STUDY!r}))
    """)
    import time

    go = time.time() + 3.0  # after every interpreter has imported optuna
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_url, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    assert len({out.strip() for out, _ in outs}) == 1
    summaries = optuna.get_all_study_summaries(open_storage(postgres_url), include_best_trial=False)
    assert [s.study_name for s in summaries] == [STUDY]


def _assert_one_clean_line(message: str, *secrets: str) -> None:
    assert "\n" not in message
    for secret in secrets:
        assert secret not in message


def test_wrong_password(postgres_server):
    url = postgres_server.url("postgres", password="Wr0ng-Pa55word")
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    _assert_one_clean_line(message, "Wr0ng-Pa55word", ROLE_PASSWORD)
    assert "rejected the password of user 'snnas'" in message and "snnas:***@127.0.0.1" in message


def test_unreachable_server(postgres_server):
    port = free_port()  # nothing listens there
    url = postgres_server.url("postgres", port=port)
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    _assert_one_clean_line(message, ROLE_PASSWORD)
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused" in message


def test_missing_database(postgres_server):
    with pytest.raises(StorageError) as info:
        open_storage(postgres_server.url("no_such_db"))
    message = str(info.value)
    _assert_one_clean_line(message, ROLE_PASSWORD)
    assert "has no database 'no_such_db'" in message


def test_check_command_exit_codes(postgres_server, postgres_url):
    bad = postgres_server.url("postgres", password="An0ther-Wr0ng")
    proc = subprocess.run([sys.executable, "-m", "snnas.study.storage", "--check", bad],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snnas: error: storage postgresql://snnas:***@")
    assert "An0ther-Wr0ng" not in proc.stderr + proc.stdout
    proc = subprocess.run([sys.executable, "-m", "snnas.study.storage", "--check", postgres_url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ok: postgresql://snnas:***@127.0.0.1:{postgres_server.port}/" \
                                  f"{postgres_url.rsplit('/', 1)[1]} (empty, tables will be created)"
    assert ROLE_PASSWORD not in proc.stdout + proc.stderr
    open_storage(postgres_url)  # creates the tables
    assert check_storage(postgres_url).endswith("(0 studies)")
