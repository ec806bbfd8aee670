"""Every finished training is kept: the finish order, the retry race, a lapsed worker, studies that
find their own files, a bounded dedupe wait and settings fixed at creation."""
from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from snnas.study.adapter import FAILED_TRIAL_ATTR, HEARTBEAT_WARNING, storage_of, trial_id
from snnas.search.dedupe import Dedupe
from snnas.search.synthetic import SyntheticObjective
from snnas.study.artifacts import STORE_ATTR, ArtifactStoreError, open_artifact_store, study_artifact_store
from snnas.study.attrs import WORKER_ATTR
from snnas.study.heartbeats import fail_dead_local_trials
from snnas.study.locks import study_lock
from snnas.study.storage import create_study_once, open_storage
from snnas.study.workers import run_worker
from search_helpers import tiny_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings(f"ignore:{HEARTBEAT_WARNING}:UserWarning")

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--data", "fashion-2", "--train-per-class", "16", "--train-per-class2", "16", "--val-per-class", "8",
        "--resolution", "16", "--width-mult", "0.0625", "--epochs", "2", "--epochs2", "1", "--batch-size", "16",
        "--no-progress", "--no-report"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def dead_local_worker() -> dict:
    """The worker record of a process that ran on this machine and is gone."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return {"host": socket.gethostname(), "pid": proc.pid, "start": "1"}


# --------------------------------------------------------------------------------------------
# 1. Upload the weights, tell the value, then drop the checkpoints
# --------------------------------------------------------------------------------------------
def test_weights_that_cannot_be_stored_keep_the_training_and_its_retry_resumes_from_it(tmp_path, cache_dir,
                                                                                        monkeypatch):
    from snnas.search.funnel import SearchOptions, run_search
    from snnas.study.artifacts import ArtifactStore

    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space(("pa_a", "sew")))
    real_upload, calls = ArtifactStore.upload, []

    def full_disk_once(self, trial, path):
        calls.append(trial.number)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_upload(self, trial, path)

    monkeypatch.setattr(ArtifactStore, "upload", full_disk_once)
    lines: list[str] = []
    options = SearchOptions(space=str(space), data="fashion-2", study="full", out=tmp_path / "runs", trials=2,
                            promote=0, epochs=2, train_per_class=16, val_per_class=8, resolution=16,
                            width_mult=0.0625, batch_size=16, progress=False, cache_dir=str(cache_dir))
    result = run_search(options, log=lines.append)
    first = result.phase1.trials[0]
    assert first.state == TrialState.FAIL and "No space left on device" in first.user_attrs["fail_reason"]
    assert any("trial 0" in line and f"{first.user_attrs['val_acc']:.4g}" in line for line in lines), lines
    (retry,) = [t for t in result.phase1.trials if t.system_attrs.get(FAILED_TRIAL_ATTR) == 0]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_epoch"] == 2  # nothing retrained
    assert retry.value == first.user_attrs["val_acc"]
    store = tmp_path / "runs" / "full" / "artifacts"
    kept = sorted(t.user_attrs["model_artifact"] for t in result.phase1.trials if t.state == TrialState.COMPLETE)
    assert sorted(p.name for p in store.iterdir()) == kept  # weights kept, every checkpoint dropped


# --------------------------------------------------------------------------------------------
# 2. A retry's new owner is written in the locked step that takes it
# --------------------------------------------------------------------------------------------
class _GapLock:
    """The study lock; after every release, another local worker's locked step runs in the gap."""

    def __init__(self, lock, study):
        self.lock, self.study, self.failed, self.depth = lock, study, [], 0

    def __enter__(self):
        self.lock.__enter__()
        self.depth += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        self.lock.__exit__(*exc)
        if self.depth == 0:
            with self.lock:
                self.failed += fail_dead_local_trials(self.study)


def test_a_retry_belongs_to_its_new_worker_from_the_moment_it_is_taken(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=3)
    study = create_study_once(storage, "race", ["maximize"])
    dead = study.ask()
    dead.suggest_int("depth", 1, 3)
    dead.suggest_categorical("wiring", ["chain", "dense_add", "dense_cat"])
    storage.set_trial_system_attr(trial_id(dead), WORKER_ATTR, dead_local_worker())
    fail_dead_local_trials(study)  # its retry, trial 1, carries the dead worker's record
    lock = _GapLock(study_lock(storage, "race"), study)
    summary = run_worker(study, SyntheticObjective(epochs=2, epoch_s=0.0), storage=storage, budget=1, lock=lock)
    assert lock.failed == []  # the other worker saw a live owner in the gap
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert summary.ran == 1 and study.trials[1].system_attrs[FAILED_TRIAL_ATTR] == 0


# --------------------------------------------------------------------------------------------
# 3. A worker whose heartbeat lapsed while it trained
# --------------------------------------------------------------------------------------------
class _StoredCheckpoints:
    """A trial with epochs that checkpoints each one to the artifact store and resumes from it."""

    def __init__(self, store, work: Path, epochs: int = 2, after_last=None):
        self.store, self.work, self.epochs, self.after_last = store, work, epochs, after_last
        self.started: dict[int, int] = {}

    def __call__(self, trial):
        here = self.work / f"trial{trial.number}"
        restored = self.store.restore_checkpoints(trial, lambda slot: here / slot)
        start = restored.get("proxy", -1) + 1
        self.started[trial.number] = start
        for epoch in range(start, self.epochs):
            (here / "proxy").parent.mkdir(parents=True, exist_ok=True)
            (here / "proxy").write_text(f"epoch {epoch}")
            self.store.save_checkpoint(trial, "proxy", here / "proxy", epoch)
        if self.after_last is not None:
            self.after_last()
        return 0.5


def test_a_worker_whose_heartbeat_lapsed_says_it_was_superseded_and_keeps_the_retrys_files(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/s.db"
    storage_a = open_storage(url, heartbeat_interval=1, grace_period=2)
    study_a = create_study_once(storage_a, "lapse", ["maximize"])
    beat, beats = storage_a.record_heartbeat, []

    def one_beat_then_silence(trial_id):  # a database outage longer than the grace period
        beats.append(trial_id)
        if len(beats) == 1:
            beat(trial_id)

    storage_a.record_heartbeat = one_beat_then_silence
    store = open_artifact_store(tmp_path / "store")
    trained, go_on = threading.Event(), threading.Event()
    objective_a = _StoredCheckpoints(store, tmp_path / "a", after_last=lambda: (trained.set(), go_on.wait(60)))
    lines_a, outcome = [], []

    def worker_a():
        try:
            outcome.append(run_worker(study_a, objective_a, storage=storage_a, budget=1, poll_s=0.05,
                                      lock=study_lock(storage_a, "lapse"), log=lines_a.append, artifacts=store))
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=worker_a, daemon=True)
    thread.start()
    assert trained.wait(60)
    storage_b = open_storage(url, heartbeat_interval=1, grace_period=2)
    study_b = optuna.load_study(study_name="lapse", storage=storage_b)
    objective_b = _StoredCheckpoints(store, tmp_path / "b")
    with caplog.at_level(logging.INFO):
        run_worker(study_b, objective_b, storage=storage_b, budget=1, poll_s=0.05, lock=study_lock(storage_b, "lapse"),
                   artifacts=store)
        go_on.set()
        thread.join(60)
    assert not thread.is_alive() and not isinstance(outcome[0], BaseException), outcome
    assert objective_b.started == {1: 2}  # the retry resumed from A's last checkpoint
    trials = study_b.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    said = "\n".join(lines_a)
    assert "trial 0" in said and "0.5" in said and "superseded" in said and "trial 1" in said, said
    assert "failed: None" not in caplog.text
    assert list((tmp_path / "store").iterdir()) == []  # the retry dropped the checkpoints it inherited


# --------------------------------------------------------------------------------------------
# 4. The study finds its own files
# --------------------------------------------------------------------------------------------
def test_the_default_store_is_recorded_too(tmp_path):
    study = create_study_once(open_storage(f"sqlite:///{tmp_path}/s.db"), "s", ["maximize"])
    default = tmp_path / "run" / "artifacts"
    assert study_artifact_store(study, None, default).location.path == default
    assert study.user_attrs[STORE_ATTR] == str(default)
    elsewhere = tmp_path / "another-run" / "artifacts"
    assert study_artifact_store(study, None, elsewhere).location.path == default  # what the study records wins


def test_a_recorded_store_this_machine_cannot_see_is_one_line(tmp_path):
    study = create_study_once(open_storage(f"sqlite:///{tmp_path}/s.db"), "s", ["maximize"])
    remote = tmp_path / "machine-a" / "runs" / "s" / "artifacts"
    study.set_user_attr(STORE_ATTR, str(remote))
    with pytest.raises(ArtifactStoreError) as info:
        study_artifact_store(study, None, tmp_path / "here")
    assert str(remote) in str(info.value) and "this machine" in str(info.value) and "\n" not in str(info.value)
    assert not remote.exists()  # not created here: the files would split over two stores


def test_a_retry_whose_checkpoint_is_gone_starts_over(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study = create_study_once(storage, "s", ["maximize"])
    store = open_artifact_store(tmp_path / "store")
    trial = study.ask()
    (tmp_path / "ckpt").write_text("epoch 1")
    artifact_id = store.save_checkpoint(trial, "proxy", tmp_path / "ckpt", 1)
    store.remove(artifact_id)  # the store of another machine, or a cleaned bucket
    assert store.restore_checkpoints(trial, lambda slot: tmp_path / "r" / slot) == {}
    assert not (tmp_path / "r" / "proxy").exists()


def test_export_finds_the_weights_from_the_storage_url_alone(tmp_path, cache_dir, monkeypatch, capsys):
    """search --out DIR, then export --storage sqlite:///DIR/... from another directory."""
    from snnas.cli import main

    out = tmp_path / "DIR"
    assert main(["search", "--space", "dense_additive", "--study", "s", "--trials", "6", "--promote", "2",
                 "--out", str(out), *TINY, "--epochs", "1", "--cache-dir", str(cache_dir)]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["export", "--study", "s", "--storage", f"sqlite:///{out}/s/study.db", "--rank", "1",
                 "--out", "ex/"]) == 0, capsys.readouterr().err
    (network,) = (elsewhere / "ex").iterdir()
    assert sorted(p.name for p in network.iterdir()) == ["architecture.png", "card.md", "genotype.json", "model.pt"]


# --------------------------------------------------------------------------------------------
# 5. Dedupe waits with a bound and sees a dead local holder at once
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["journal:///{tmp}/s.log", "sqlite:///{tmp}/s.db"])
def test_dedupe_sees_a_dead_local_holder_at_once(tmp_path, url):
    storage = open_storage(url.format(tmp=tmp_path))  # SQLite: the default grace period of 120 s
    study = create_study_once(storage, "d", ["maximize"])
    dedupe = Dedupe(study, study_lock(storage, "d"), poll_s=0.05)
    holder = study.ask()
    assert dedupe.claim(holder, "k", "f") is None
    storage.set_trial_system_attr(trial_id(holder), WORKER_ATTR, dead_local_worker())
    waiter, results = study.ask(), []
    thread = threading.Thread(target=lambda: results.append(dedupe.claim(waiter, "k", "f")), daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the waiter waited on a holder whose process is gone"
    assert results == [None]  # the key is the waiter's to train
    assert study.trials[holder.number].state == TrialState.FAIL


def test_dedupe_stops_waiting_for_a_silent_holder_after_its_bound(tmp_path, caplog):
    storage = open_storage(f"journal:///{tmp_path}/s.log")  # no heartbeats: a holder elsewhere may be dead
    study = create_study_once(storage, "d", ["maximize"])
    dedupe = Dedupe(study, study_lock(storage, "d"), poll_s=0.05, max_wait_s=0.5)
    holder = study.ask()
    assert dedupe.claim(holder, "k", "f") is None
    storage.set_trial_system_attr(trial_id(holder), WORKER_ATTR, {"host": "another-machine", "pid": 1, "start": "1"})
    waiter = study.ask()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="snnas.search.dedupe"):
        assert dedupe.claim(waiter, "k", "f") is None
    assert 0.5 <= time.monotonic() - started < 10
    assert f"trial {waiter.number}" in caplog.text and f"trial {holder.number}" in caplog.text


# --------------------------------------------------------------------------------------------
# 6. A study's settings are fixed when it is created
# --------------------------------------------------------------------------------------------
def test_a_rerun_with_other_settings_is_refused_in_one_line(tmp_path, cache_dir, capsys):
    from snnas.cli import main

    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space(("pa_a", "sew")))

    def search(*extra):
        return main(["search", "--space", str(space), "--study", "fixed", "--trials", "2", "--out",
                     str(tmp_path / "runs"), *TINY, "--cache-dir", str(cache_dir), "--create-only", *extra])

    assert search() == 0
    study = optuna.load_study(study_name="fixed", storage=f"sqlite:///{tmp_path}/runs/fixed/study.db")
    recorded = study.user_attrs["fidelity_phase1"]
    capsys.readouterr()
    assert search("--epochs", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snnas: error: --epochs 3:"), err
    assert "--epochs 2" in err and "--study" in err
    assert optuna.load_study(study_name="fixed", storage=storage_of(study)).user_attrs["fidelity_phase1"] == recorded
    assert search("--seed", "7") == 0  # the sampler's seed differs per machine; training does not
