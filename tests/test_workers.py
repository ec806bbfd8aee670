"""Workers sharing one study: exact budget, dedupe, kill -9 recovery (SQLite here; PostgreSQL in
test_workers_postgres.py, which reuses the scenarios below)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from snnas.study.adapter import FAILED_TRIAL_ATTR, HEARTBEAT_WARNING, trial_id
from snnas.study.artifacts import open_artifact_store
from snnas.search.dedupe import Dedupe, find, lookup
from snnas.study.locks import study_lock
from snnas.study.storage import create_study_once, open_storage
from snnas.search.synthetic import SyntheticObjective, synthetic_accuracy, synthetic_key
from snnas.study.workers import run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The tests drive study.ask() by hand on heartbeat storages, as the workers do.
pytestmark = pytest.mark.filterwarnings(f"ignore:{HEARTBEAT_WARNING}:UserWarning")

STUDY = "workers"
HEARTBEAT = 1
GRACE = 3


# --------------------------------------------------------------------------------------------
# Helpers shared with the PostgreSQL module
# --------------------------------------------------------------------------------------------
def create_study(url: str, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    storage = open_storage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    return create_study_once(storage, STUDY, ["maximize"], pruner=pruner)


def load_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)


def start_workers(url: str, n: int, budget: int, trace_dir: Path, go: Path, *extra: str) -> list[subprocess.Popen]:
    procs = []
    for seed in range(n):
        cmd = [sys.executable, "-m", "snnas.search.synthetic", "--storage", url, "--study", STUDY,
               "--budget", str(budget), "--trace-dir", str(trace_dir), "--wait-for", str(go),
               "--seed", str(seed), "--heartbeat-interval", str(HEARTBEAT), "--grace-period", str(GRACE),
               "--poll-s", "0.1", *extra]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:  # all imported and connected: start them at one moment
        line = proc.stdout.readline().strip()
        if line != "ready":
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"worker did not start ({proc.returncode}): {line} {err[-2000:]}")
    go.touch()
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 60) -> list[dict]:
    summaries = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("workers did not finish in time")
        assert proc.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


def trainings(trace_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(trace_dir.glob("train-*.json"))]


def assert_consistent(trials, budget: int, failed: int = 0) -> Counter:
    """Exact budget, no duplicate or missing trial numbers, nothing left running."""
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials))), f"duplicate or missing trial numbers: {numbers}"
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == budget, states
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0, states
    assert states[TrialState.FAIL] == failed, states
    return states


def concurrent_scenario(url: str, tmp_path: Path, workers: int = 3, budget: int = 24) -> None:
    create_study(url, pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    trace = tmp_path / "trace"
    procs = start_workers(url, workers, budget, trace, tmp_path / "go", "--epochs", "4", "--epoch-s", "0.08")
    summaries = finish(procs)
    trials = load_trials(url)
    states = assert_consistent(trials, budget)
    assert states[TrialState.PRUNED] > 0, "the pruner never pruned: the test lost its point"
    # No lost trial: every trial in the study was run to its end by exactly one worker.
    assert sum(s["ran"] for s in summaries) == len(trials)
    assert all(s["ran"] > 0 for s in summaries), summaries
    # No duplicate training of one (key, fidelity): the trace files are created exclusively.
    trained = trainings(trace)
    claims = [(r["key"], r["fidelity"]) for r in trained]
    assert len(claims) == len(set(claims)), f"a key was trained twice: {Counter(claims).most_common(3)}"
    by_number = {t.number: t for t in trials}
    trained_numbers = {r["trial"] for r in trained}
    reused = [t for t in trials if "dedupe_of" in t.user_attrs]
    assert trained_numbers == {t.number for t in trials} - {t.number for t in reused}
    assert len(reused) >= budget - 7  # 7 distinct keys in the synthetic space
    for t in trials:
        assert t.user_attrs["key"] == synthetic_key(t.params["depth"], t.params["wiring"])
    for t in reused:
        original = by_number[t.user_attrs["dedupe_of"]]
        assert original.user_attrs["key"] == t.user_attrs["key"]
        assert original.state == t.state
        if t.state == TrialState.COMPLETE:
            assert t.value == original.value


def kill_scenario(url: str, tmp_path: Path, budget: int = 6, epochs: int = 6, epoch_s: float = 0.15) -> None:
    create_study(url)
    trace, store = tmp_path / "trace", tmp_path / "store"
    procs = start_workers(url, 2, budget, trace, tmp_path / "go", "--no-dedupe", "--pruner", "none",
                          "--epochs", str(epochs), "--epoch-s", str(epoch_s), "--artifacts", str(store))
    pids = {p.pid: p for p in procs}
    victim, killed_epoch = None, None
    deadline = time.monotonic() + 30
    while sum(t.state.is_finished() for t in load_trials(url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # kill once there are finished trials whose survival can be checked
    while victim is None and time.monotonic() < deadline:
        for ckpt in trace.glob("ckpt-*.json"):
            try:
                rec = json.loads(ckpt.read_text())
            except (OSError, ValueError):
                continue
            fresh = time.time() - ckpt.stat().st_mtime < epoch_s * 0.8
            if rec["pid"] in pids and 1 <= rec["epoch"] <= epochs - 3 and fresh:
                victim, killed_epoch = pids[rec["pid"]], rec["epoch"]
                break
        time.sleep(0.02)
    assert victim is not None, "no worker reached the middle of a trial"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    before = {t.number: (t.state, t.values, dict(t.intermediate_values))
              for t in load_trials(url) if t.state.is_finished()}
    assert before, "kill came before any trial finished: nothing to check intact"
    survivor = [p for p in procs if p is not victim]
    finish(survivor)
    trials = load_trials(url)
    assert_consistent(trials, budget, failed=1)
    by_number = {t.number: t for t in trials}
    for number, snapshot in before.items():  # finished trials intact
        t = by_number[number]
        assert (t.state, t.values, dict(t.intermediate_values)) == snapshot
    killed = next(t for t in trials if t.state == TrialState.FAIL)
    records = {r["trial"]: r for r in trainings(trace)}
    assert records[killed.number]["pid"] == victim.pid
    retries = [t for t in trials if t.system_attrs.get(FAILED_TRIAL_ATTR) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    retry = retries[0]
    assert retry.params == killed.params
    # It resumed from the killed trial's checkpoint in the artifact store, not from epoch 0, and kept its curve.
    # The trace's checkpoint of epoch E is written just before its upload, so a kill between the two leaves
    # epoch E-1 stored (a loaded machine makes that window wide): the retry starts at E or E+1, never at 0.
    assert records[retry.number]["start_epoch"] >= killed_epoch >= 1
    assert list(store.iterdir()) == []  # every checkpoint dropped once its trial was recorded
    assert sorted(retry.intermediate_values) == list(range(epochs))
    assert retry.value == pytest.approx(synthetic_accuracy(retry.user_attrs["key"], epochs - 1))


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------
def test_kill_minus_9_on_sqlite(tmp_path):
    kill_scenario(f"sqlite:///{tmp_path}/study.db", tmp_path)


def test_three_workers_on_sqlite(tmp_path):
    concurrent_scenario(f"sqlite:///{tmp_path}/study.db", tmp_path, budget=15)


def test_run_worker_exact_budget_in_process_threads(tmp_path):
    """Threads share one process-local lock path too; the budget is exact."""
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    study = create_study_once(storage, STUDY, ["maximize"])
    objective = SyntheticObjective(epochs=2, epoch_s=0.01)
    summaries = []
    threads = [threading.Thread(target=lambda: summaries.append(
        run_worker(optuna.load_study(study_name=STUDY, storage=storage), objective, storage=storage,
                   budget=9, lock=study_lock(storage, STUDY), poll_s=0.05))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert_consistent(study.get_trials(), 9)
    assert sum(s.ran for s in summaries) == 9


def test_journal_storage_runs_to_budget(tmp_path):
    url = f"journal://{tmp_path}/study.log"
    storage = open_storage(url)
    study = create_study_once(storage, STUDY, ["maximize"])
    summary = run_worker(study, SyntheticObjective(epochs=2, epoch_s=0.0), storage=storage, budget=5)
    assert summary.ran == 5
    assert_consistent(study.get_trials(), 5)
    # Another worker joining a finished study has nothing to do.
    assert run_worker(study, SyntheticObjective(epochs=2, epoch_s=0.0), storage=storage, budget=5).ran == 0


def test_budget_must_be_positive(tmp_path):
    from snnas.errors import SnnasError

    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = create_study_once(storage, STUDY, ["maximize"])
    with pytest.raises(SnnasError, match="at least 1"):
        run_worker(study, SyntheticObjective(), storage=storage, budget=0)


# --------------------------------------------------------------------------------------------
# Dedupe
# --------------------------------------------------------------------------------------------
def _dedupe_study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/d.db", heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    study = create_study_once(storage, STUDY, ["maximize"])
    return storage, study, Dedupe(study, study_lock(storage, STUDY), poll_s=0.05)


def test_dedupe_claims_then_reuses(tmp_path):
    _, study, dedupe = _dedupe_study(tmp_path)
    first = study.ask()
    assert dedupe.claim(first, "k1", 4) is None
    first.set_user_attr("params", 123)
    study.tell(first, 0.75)
    assert lookup(study, "k1", 4) == 0.75
    assert lookup(study, "k1", 8) is None  # another fidelity is another evaluation
    assert lookup(study, "k2", 4) is None
    second = study.ask()
    assert dedupe.claim(second, "k1", 4) == 0.75
    study.tell(second, 0.75)
    reused = study.get_trials()[1]
    assert reused.user_attrs["dedupe_of"] == 0 and reused.user_attrs["params"] == 123
    other = study.ask()
    assert dedupe.claim(other, "k1", 8) is None


def test_dedupe_prunes_a_duplicate_of_a_pruned_trial(tmp_path):
    _, study, dedupe = _dedupe_study(tmp_path)
    first = study.ask()
    assert dedupe.claim(first, "k", "proxy") is None
    study.tell(first, state=TrialState.PRUNED)
    second = study.ask()
    with pytest.raises(optuna.TrialPruned):
        dedupe.claim(second, "k", "proxy")
    assert second.user_attrs["fail_reason"] == "same key as pruned trial 0"


class _WaitSeen(logging.Handler):
    """Set once dedupe logs that a trial waits for a holder."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.event = threading.Event()

    def emit(self, record):
        if "waits for trial" in record.getMessage():
            self.event.set()


@pytest.fixture
def wait_seen():
    logger = logging.getLogger("snnas.search.dedupe")
    handler, level = _WaitSeen(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_dedupe_waits_for_a_running_holder_and_retrains_if_it_fails(tmp_path, wait_seen):
    _, study, dedupe = _dedupe_study(tmp_path)
    for outcome, expected in ((0.5, [0.5]), (TrialState.FAIL, [None])):  # a failed holder frees the key
        holder = study.ask()
        assert dedupe.claim(holder, f"k{expected}", 1) is None
        waiter, results = study.ask(), []
        wait_seen.event.clear()
        thread = threading.Thread(target=lambda: results.append(dedupe.claim(waiter, f"k{expected}", 1)))
        thread.start()
        assert wait_seen.event.wait(10), "the second trial did not wait for the running holder"
        assert thread.is_alive() and results == []
        if outcome == TrialState.FAIL:
            study.tell(holder, state=outcome)
        else:
            study.tell(holder, outcome)
        thread.join(10)
        assert results == expected
    assert find(study, "k[None]", 1, states=(TrialState.RUNNING,)).number == waiter.number


def test_synthetic_key_folds_depth_one():
    assert synthetic_key(1, "dense_add") == synthetic_key(1, "chain") == "chain-d1"
    assert synthetic_key(2, "dense_add") != synthetic_key(2, "dense_cat")
    assert synthetic_accuracy("dense_add-d3", 3) > synthetic_accuracy("chain-d3", 3)


def test_an_interrupt_while_a_trial_is_taken_arrives_once_the_worker_holds_it():
    import os
    import signal

    from snnas.study.workers import interrupts_deferred

    held = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a handler would run here, were the signal not held
            held = True
    assert held


def test_a_parent_closes_the_trials_its_interrupted_workers_left_running(tmp_path):
    import os
    import socket

    from snnas.study.attrs import REASON_ATTR, WORKER_ATTR
    from snnas.study.heartbeats import _process_start, fail_dead_local_trials

    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = create_study_once(storage, STUDY, ["maximize"])
    dead, alive, elsewhere = study.ask(), study.ask(), study.ask()
    parent = os.getppid()  # alive; with another start time it stands for a dead process whose pid was reused
    for trial, host, start in ((dead, socket.gethostname(), "1"), (alive, socket.gethostname(), _process_start(parent)),
                               (elsewhere, "another-host", "1")):
        storage.set_trial_system_attr(trial_id(trial), WORKER_ATTR, {"host": host, "pid": parent, "start": start})
    store = open_artifact_store(tmp_path / "store")
    (tmp_path / "ckpt.pt").write_bytes(b"epoch 1")
    kept = store.save_checkpoint(alive, "phase1", tmp_path / "ckpt.pt", 1)
    store.save_checkpoint(dead, "phase1", tmp_path / "ckpt.pt", 1)
    assert fail_dead_local_trials(study, interrupted=True, artifacts=store) == [dead.number]
    states = {t.number: (t.state, t.user_attrs.get(REASON_ATTR)) for t in study.get_trials()}
    assert states[dead.number] == (TrialState.FAIL, "interrupted")
    assert states[alive.number][0] == states[elsewhere.number][0] == TrialState.RUNNING
    assert not study.get_trials(states=(TrialState.WAITING,))  # an interrupted trial is not retried
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [kept]  # nothing resumes the dead one's


@pytest.mark.parametrize("where", ["training", "taken"])
def test_an_interrupted_worker_drops_the_checkpoints_of_the_trial_it_closes(tmp_path, monkeypatch, where):
    """Ctrl-C in a worker: its trial fails as interrupted and is never retried, so no checkpoint of
    it may stay in the store (one stored after an epoch, or one a retry inherited from a dead trial)."""
    from snnas.study import workers

    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = create_study_once(storage, STUDY, ["maximize"])
    store = open_artifact_store(tmp_path / "store")
    (tmp_path / "ckpt.pt").write_bytes(b"epoch 1")
    if where == "taken":  # a dead trial's retry, interrupted after it is taken and before it trains
        dead = study.ask()
        store.save_checkpoint(dead, "phase1", tmp_path / "ckpt.pt", 1)
        study.tell(dead, state=TrialState.FAIL)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[dead.number])
        real_take = workers._take

        def take_as_ctrl_c_lands(s):  # held while the trial is taken, raised once the worker holds it
            os.kill(os.getpid(), signal.SIGINT)
            return real_take(s)

        monkeypatch.setattr(workers, "_take", take_as_ctrl_c_lands)

        def objective(trial):
            raise AssertionError("an interrupted worker trains nothing")
    else:
        def objective(trial):
            store.save_checkpoint(trial, "phase1", tmp_path / "ckpt.pt", 1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, storage=storage, budget=2, artifacts=store)
    (closed,) = [t for t in study.get_trials() if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")]
    assert closed.user_attrs["fail_reason"] == "interrupted"
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert list((tmp_path / "store").iterdir()) == []
