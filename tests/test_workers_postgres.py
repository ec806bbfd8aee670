"""The scale-out guarantees on a real PostgreSQL 15 (throw-away server on 127.0.0.1, see pg.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from pg import ROLE_PASSWORD, free_port
from snnas.study.adapter import FAILED_TRIAL_ATTR, HEARTBEAT_WARNING
from snnas.errors import StorageError
from snnas.study.artifacts import checkpoint_slots
from snnas.study.storage import check_storage, open_storage
from test_workers import STUDY, concurrent_scenario, kill_scenario

pytestmark = [pytest.mark.postgres,
              pytest.mark.filterwarnings(f"ignore:{HEARTBEAT_WARNING}:UserWarning")]


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


def _running_checkpoint(url: str, study: str) -> int | None:
    """The number of a RUNNING trial whose checkpoint of epoch >= 1 is in the artifact store."""
    try:
        trials = optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except KeyError:  # the study is not created yet
        return None
    for t in trials:
        pointers = checkpoint_slots(t.system_attrs)
        if any(ref["step"] >= 1 for ref in pointers.values()):
            return t.number
    return None


def test_workers_in_different_directories_share_trial_files_through_the_artifact_store(postgres_url, tmp_path):
    """Worker A is killed mid-trial in its own directory; worker B, in another, retries that trial
    from the checkpoint in the shared store; export from a third directory writes the weights."""
    from test_search import TINY

    shared, cache = tmp_path / "shared-store", tmp_path / "cache"
    dirs = {name: tmp_path / name for name in ("a", "b", "c")}
    for d in dirs.values():
        d.mkdir()
    tiny = [a for a in TINY if a != "--no-report"]
    args = [sys.executable, "-m", "snnas", "search", *tiny, "--train-per-class", "96", "--epochs", "6",
            "--space", "dense_additive", "--study", "dirs", "--storage", postgres_url, "--artifacts", str(shared),
            "--trials", "2", "--promote", "0", "--no-report", "--cache-dir", str(cache),
            "--heartbeat-interval", "1", "--grace-period", "3"]
    worker_a = subprocess.Popen(args, cwd=dirs["a"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    deadline = time.monotonic() + 300
    dead = None
    while dead is None:
        if worker_a.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker A never checkpointed a running trial: {worker_a.communicate()[0]}")
        dead = _running_checkpoint(postgres_url, "dirs")
        time.sleep(0.05)
    os.killpg(worker_a.pid, signal.SIGKILL)
    worker_a.communicate(timeout=60)

    worker_b = subprocess.run(args, cwd=dirs["b"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600)
    assert worker_b.returncode == 0, worker_b.stdout
    study = optuna.load_study(study_name="dirs", storage=open_storage(postgres_url))
    assert study.trials[dead].state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get(FAILED_TRIAL_ATTR) == dead]
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] >= 1  # B had no file of A's: it came from the store
    assert not (dirs["b"] / "runs" / "dirs" / "artifacts").exists()  # every file went to the shared store
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    stored = sorted(p.name for p in shared.iterdir())
    assert sorted(t.user_attrs["model_artifact"] for t in done) == stored  # weights kept, checkpoints dropped

    export = subprocess.run([sys.executable, "-m", "snnas", "export", "--study", "dirs", "--storage", postgres_url,
                             "--out", "exported"], cwd=dirs["c"], capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    (network,) = (dirs["c"] / "exported").iterdir()
    from snnas import load_model

    assert load_model(network / "model.pt").genotype.canonical().key == network.name
    assert postgres_url.split("@")[0].split(":")[-1] not in export.stdout + export.stderr  # no password shown
