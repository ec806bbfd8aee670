"""The search on real (tiny) data: objective, dedupe, seeds, resume after SIGINT and SIGKILL."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from snnas.study.adapter import FAILED_TRIAL_ATTR
from snnas.data import load_splits
from snnas.fit import FitSettings
from snnas.search.attrs import NAMES
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity, promoted_data
from snnas.search.objective import MODEL_FILE, SearchObjective
from snnas.spaces import load_space
from snnas.study.attrs import WORKER_ATTR
from search_helpers import tiny_space

TINY = ["--data", "fashion-2", "--train-per-class", "16", "--train-per-class2", "16", "--val-per-class", "8",
        "--resolution", "16", "--width-mult", "0.0625", "--epochs", "2", "--epochs2", "1", "--batch-size", "16",
        "--no-progress", "--no-report"]

TINY_SPACE = tiny_space(("pa_a", "sew"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def tiny_space(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPACE)
    return path


def _fidelity(epochs=1, recipe="proxy", **kw):
    fit = FitSettings(recipe=recipe, epochs=(epochs,), timesteps=(1,), width_mult=0.0625, batch_size=16)
    base = dict(phase="phase1", data="fashion-2", resolution=16, train_per_class=16, val_per_class=8, fit=fit)
    return Fidelity(**{**base, **kw})


def test_objective_with_fixed_trial(tmp_path, tiny_space, cache_dir):
    fid = _fidelity()
    splits = load_splits(fid.data, resolution=16, train_per_class=16, val_per_class=8, cache_dir=cache_dir)
    study = optuna.create_study(direction="maximize")
    objective = SearchObjective(load_space(str(tiny_space)), fid, splits, tmp_path, Dedupe(study))
    trial = optuna.trial.FixedTrial({"depth": "18", "block": "sew", "connect": "dense_add"})
    value = objective(trial)
    assert 0.0 <= value <= 1.0
    attrs = trial.user_attrs
    assert attrs["genotype"].startswith("if|small64|basic.sew.64x2.s1.dense_add")
    assert "dense_add" not in attrs["canonical"]  # sew + dense_add folds to its chain
    assert attrs["params"] > 0 and attrs["sops"] > 0 and 0 <= attrs["firing_rate"] <= 1
    assert attrs["fidelity"] == fid.key and attrs["phase"] == "phase1" and attrs["val_acc"] == value
    assert attrs["device"] == "cpu"
    assert set(attrs) <= NAMES  # every attribute the objective writes is a field of the one record
    weights = objective.work_dir(attrs["key"], trial.number) / MODEL_FILE
    assert weights.is_file() and "model_artifact" not in attrs  # no study, no artifact store: weights stay here
    from snnas import load_model

    assert load_model(weights).genotype.to_str() == attrs["canonical"]


def test_seed_presets_train_to_the_end_under_a_pruner_that_prunes_everything(tmp_path, tiny_space, cache_dir):
    fid = _fidelity(epochs=2)
    splits = load_splits(fid.data, resolution=16, train_per_class=16, val_per_class=8, cache_dir=cache_dir)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    objective = SearchObjective(load_space(str(tiny_space)), fid, splits, tmp_path, Dedupe(study))
    study.enqueue_trial({"depth": "18", "block": "pa_a", "connect": "dense_add"},
                        user_attrs={"seed_preset": "danet_a_resnet18"})
    study.enqueue_trial({"depth": "18", "block": "sew", "connect": "chain"})
    study.optimize(objective, n_trials=2)
    seed, sampled = study.trials
    assert seed.state == TrialState.COMPLETE and sorted(seed.intermediate_values) == [1, 2]
    assert sampled.state == TrialState.PRUNED and sorted(sampled.intermediate_values) == [1]


def test_promotion_keeps_the_seed_preset_name():
    import contextlib

    from snnas.search.funnel import promote

    phase1, phase2 = optuna.create_study(direction="maximize"), optuna.create_study(direction="maximize")
    for value, key, preset in ((0.9, "k-seed", "danet_a_resnet18"), (0.8, "k-sampled", None), (0.1, "k-low", None)):
        attrs = {"key": key, "canonical": f"genotype-{key}", **({"seed_preset": preset} if preset else {})}
        phase1.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    promote(phase1, phase2, 2, contextlib.nullcontext())
    promote(phase1, phase2, 2, contextlib.nullcontext())  # a restart enqueues nothing twice
    waiting = {t.user_attrs["promoted_key"]: t.user_attrs for t in phase2.trials}
    assert sorted(waiting) == ["k-sampled", "k-seed"]
    assert waiting["k-seed"]["seed_preset"] == "danet_a_resnet18" and "seed_preset" not in waiting["k-sampled"]


def test_promoted_data():
    assert promoted_data("fashion-5") == "fashion-10"
    assert promoted_data("imagenet-5:/data/in") == "imagenet-20:/data/in"
    assert promoted_data("cifar10:/x") == "cifar10:/x"
    assert _fidelity().key != _fidelity(epochs=2).key
    assert _fidelity().key != _fidelity(recipe="short").key  # the recipe is part of what a score means


def _search(args, tmp_path, cache_dir, **popen):
    cmd = [sys.executable, "scripts/search.py", *TINY, "--cache-dir", str(cache_dir), "--out", str(tmp_path / "runs"),
           *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _study(tmp_path, name):
    storage = f"sqlite:///{tmp_path / 'runs' / name.split('.')[0] / 'study.db'}"  # phase 2 shares phase 1's file
    return optuna.load_study(study_name=name, storage=storage)


def test_dedupe_trains_each_network_once(tmp_path, tiny_space, cache_dir):
    proc = _search(["--space", str(tiny_space), "--trials", "5", "--promote", "0", "--seed", "3"], tmp_path, cache_dir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    study = _study(tmp_path, "tiny")
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))  # a reuse of a pruned run is pruned
    assert len(done) == 5
    trained = [t for t in done if "dedupe_of" not in t.user_attrs]
    keys = [t.user_attrs["key"] for t in trained]
    assert len(keys) == len(set(keys)) <= 2  # pa_a and sew; dense_add folds into chain
    assert len(trained) < len(done)  # 5 trials over at most 2 networks: some were reused
    for t in done:
        if "dedupe_of" in t.user_attrs:
            earlier = study.trials[t.user_attrs["dedupe_of"]]
            assert earlier.user_attrs["key"] == t.user_attrs["key"] and earlier.state == t.state
            if t.state == TrialState.COMPLETE:
                assert earlier.values == t.values
    first = study.trials[0]
    assert first.user_attrs["seed_preset"] == "danet_a_resnet18"


def _peek(db, query: str) -> int:
    """A count from the search's SQLite file, read-only: opening it through Optuna while the search
    is still creating it would race its schema creation (and could make the search fail)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute(query).fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:  # no tables yet, or locked for a moment
        return 0


_RUNNING_REPORTED = ("SELECT COUNT(*) FROM trials t JOIN trial_intermediate_values v ON v.trial_id = t.trial_id "
                     "WHERE t.state = 'RUNNING'")


def _wait_mid_trial(tmp_path, name, proc, timeout=300):
    """Until one trial has finished and the next is running (so a signal most likely lands mid-trial)."""
    db = tmp_path / "runs" / name / "study.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"search ended early: {proc.stdout.read()}")
        if _peek(db, "SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'") \
                and _peek(db, "SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'"):
            return
        time.sleep(0.2)
    pytest.fail("no trial completed in time")


@pytest.mark.parametrize("sig, workers", [
    (signal.SIGINT, 1), (signal.SIGKILL, 1), (signal.SIGINT, 2), (signal.SIGKILL, 2)],
    ids=["SIGINT-1 worker", "SIGKILL-1 worker", "SIGINT-2 workers", "SIGKILL-2 workers"])
def test_interrupted_search_resumes_to_its_budget(tmp_path, cache_dir, sig, workers):
    """Ctrl-C or kill -9 of the whole process group (with --workers 2: the parent and its workers)."""
    args = ["--space", "dense_additive", "--study", "resume", "--trials", "6", "--promote", "1", "--epochs", "3",
            "--heartbeat-interval", "1", "--grace-period", "3", "--workers", str(workers)]
    if sig == signal.SIGKILL:  # epochs long enough that the kill lands inside the trial that reported one
        args += ["--train-per-class", "64"]
    proc = _search(args, tmp_path, cache_dir, start_new_session=True)
    _wait_mid_trial(tmp_path, "resume", proc)
    if sig == signal.SIGKILL:
        _wait_for_epoch_of_running_trial(tmp_path, "resume", proc, _RUNNING_CHECKPOINTED)
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=120)
    study = _study(tmp_path, "resume")
    before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    left_running = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]
    assert before
    if sig == signal.SIGINT:  # an interrupted worker closes its trial (failed, reason "interrupted")
        assert not left_running
        assert all(t.user_attrs.get("fail_reason") == "interrupted" for t in study.get_trials(states=(TrialState.FAIL,)))
    rerun = _search(args, tmp_path, cache_dir)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    study = _study(tmp_path, "resume")
    after = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert all(after[n] == v for n, v in before.items())  # every finished trial kept as it was
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 6
    assert not study.get_trials(states=(TrialState.RUNNING,))
    if sig == signal.SIGKILL:
        assert left_running, "the kill left no trial running: nothing was there to retry"
    resumed = []
    for number in left_running:  # a killed worker's trial: failed by its stale heartbeat, then retried
        assert study.trials[number].state == TrialState.FAIL
        retried = [t for t in study.trials if t.system_attrs.get(FAILED_TRIAL_ATTR) == number]
        dead = study.trials[number].params  # killed while sampling: some genes drawn, or none yet
        assert retried and {k: retried[0].params.get(k) for k in dead} == dead
        resumed += [t.user_attrs.get("resumed_from_epoch", 0) for t in retried if t.state == TrialState.COMPLETE]
    if sig == signal.SIGKILL:  # from the checkpoint the dead trial left in the artifact store
        assert resumed and max(resumed) >= 1, resumed
    stored = sorted(p.name for p in (tmp_path / "runs" / "resume" / "artifacts").iterdir())
    assert all(not name.startswith("checkpoint-") for name in stored), stored  # dropped once recorded
    assert _study(tmp_path, "resume.phase2").get_trials(states=(TrialState.COMPLETE,))


def test_a_reused_result_carries_its_energy_constraint(tmp_path, tiny_space, cache_dir):
    fid = _fidelity()
    splits = load_splits(fid.data, resolution=16, train_per_class=16, val_per_class=8, cache_dir=cache_dir)
    study = optuna.create_study(direction="maximize")
    objective = SearchObjective(load_space(str(tiny_space)), fid, splits, tmp_path, Dedupe(study), max_sops=1.0)
    for _ in range(2):  # the same network twice: the second trial reuses the first's result
        study.enqueue_trial({"depth": "18", "block": "sew", "connect": "chain"})
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert second.user_attrs["dedupe_of"] == first.number
    assert first.constraints == second.constraints and second.constraints["sops"] > 0  # infeasible, like its source


_RUNNING_CHECKPOINTED = ("SELECT COUNT(*) FROM trials t JOIN trial_system_attributes a ON a.trial_id = t.trial_id "
                         "WHERE t.state = 'RUNNING' AND a.key = 'snnas_checkpoints' AND a.value_json LIKE '%\"step\"%'")


def _wait_for_epoch_of_running_trial(tmp_path, name, proc, query=_RUNNING_REPORTED, timeout=300):
    """Until a running trial has reported at least one epoch (``query``: or stored its checkpoint)."""
    db = tmp_path / "runs" / name / "study.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"search ended early: {proc.stdout.read()}")
        if _peek(db, query):
            return
        time.sleep(0.1)
    pytest.fail("no trial reported an epoch in time")


def test_a_killed_workers_trial_is_retried_first_at_once_and_resumes(tmp_path, cache_dir):
    """Default heartbeat and grace period (30 s / 120 s): the rerun must not wait them out."""
    args = ["--space", "dense_additive", "--study", "killed", "--trials", "4", "--promote", "0", "--epochs", "3"]
    proc = _search(args, tmp_path, cache_dir, start_new_session=True)
    _wait_for_epoch_of_running_trial(tmp_path, "killed", proc, _RUNNING_CHECKPOINTED)  # it resumes from that
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    study = _study(tmp_path, "killed")
    (dead,) = study.get_trials(states=(TrialState.RUNNING,))
    waiting_before = [t.number for t in study.get_trials(states=(TrialState.WAITING,))]
    assert waiting_before  # seeds still queued ahead of any retry by number

    started = time.monotonic()
    rerun = _search(args, tmp_path, cache_dir)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert time.monotonic() - started < 120  # not one grace period
    assert f"trial {dead.number} was running in process" in out and "retrying it now" in out
    study = _study(tmp_path, "killed")
    assert study.trials[dead.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get(FAILED_TRIAL_ATTR) == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs.get("resumed_from_epoch", 0) >= 1  # from the dead trial's checkpoint
    others = [t for t in study.trials if t.number in waiting_before and t.datetime_start is not None]
    assert all(retry.datetime_start <= t.datetime_start for t in others)  # before every queued trial


def test_local_worker_processes_share_one_study_to_its_exact_budget(tmp_path, tiny_space, cache_dir):
    proc = _search(["--space", str(tiny_space), "--trials", "5", "--promote", "1", "--workers", "2"], tmp_path,
                   cache_dir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    threads = max(1, (os.cpu_count() or 1) // 2)  # the machine's cores shared out between the two
    assert f"phase 1: 2 worker processes, {threads} thread{'s' if threads > 1 else ''} each (2 on cpu)" in out
    study = _study(tmp_path, "tiny")
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 5 and not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    pids = {t.system_attrs[WORKER_ATTR]["pid"] for t in study.trials}
    assert len(pids) == 2 and proc.pid not in pids  # both workers ran trials; the parent only watched
    trained = [t.user_attrs["key"] for t in done if "dedupe_of" not in t.user_attrs]
    assert len(trained) == len(set(trained))  # dedupe holds across the processes
    (promoted,) = _study(tmp_path, "tiny.phase2").get_trials(states=(TrialState.COMPLETE,))
    source = study.trials[promoted.user_attrs["promoted_from"]]
    assert promoted.params == source.params and promoted.distributions == source.distributions  # its genes
    assert study.metric_names == ["val_acc"] and _study(tmp_path, "tiny.phase2").metric_names == ["val_acc"]


def test_bad_worker_counts_fail_before_any_work(tmp_path, cache_dir):
    for flag in (["--workers", "0"], ["--threads", "0"]):
        proc = _search(["--trials", "2", *flag], tmp_path, cache_dir)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2 and out.strip() == "snnas: error: --workers and --threads must be at least 1"
        assert not (tmp_path / "runs").exists()
    proc = _search(["--trials", "2", "--workers", "2", "--storage", "sqlite:///:memory:"], tmp_path, cache_dir)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "an in-memory SQLite study lives in one process" in out
    assert not (tmp_path / "runs").exists()


def test_seeds_are_queued_as_the_budget_runs_them(tmp_path, cache_dir):
    """12 seed networks and a budget of 2: two are queued, and a continuation to 5 queues three more."""
    from snnas.search.funnel import SearchOptions, run_search

    def create(trials):
        options = SearchOptions(space="dense_additive", data="fashion-2", out=tmp_path / "runs", trials=trials,
                                train_per_class=16, val_per_class=8, resolution=16, width_mult=0.0625,
                                batch_size=16, progress=False, allow_large=True, create_only=True,
                                cache_dir=str(cache_dir))
        return run_search(options, log=lambda _: None).phase1.get_trials(states=(TrialState.WAITING,))

    assert [t.user_attrs["seed_preset"] for t in create(2)] == ["danet_a_resnet18", "danet_b_resnet18"]
    assert len(create(5)) == 5 and len(create(5)) == 5
