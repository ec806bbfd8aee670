"""The per-trial failure policy: diverged → pruned, out of memory → failed, any error → failed with
its message; the study goes on in every case."""
from __future__ import annotations

import math
import weakref

import optuna
import pytest
from optuna.trial import TrialState

from snnas.study.adapter import FAILED_TRIAL_ATTR, HEARTBEAT_WARNING, trial_id
from snnas.errors import Diverged
from snnas.study.failures import (
    FAILURE_CATCH,
    TrialFailed,
    failures_markdown,
    guarded,
    is_out_of_memory,
    list_failures,
)
from snnas.study.storage import create_study_once, open_storage
from snnas.study.workers import run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings(f"ignore:{HEARTBEAT_WARNING}:UserWarning")


class Ballast:
    """Stands for a tensor that filled the memory: must be collectable after the trial fails."""


def make_objective(bad_trial: int, failure, epochs: int = 4, bad_epoch: int = 2, refs: list | None = None):
    """Trains 'epochs' epochs; trial number ``bad_trial`` hits ``failure`` at ``bad_epoch``."""
    alive_at_start: list[list[bool]] = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        ballast = Ballast()
        if refs is not None:
            # Before this trial allocates, what earlier trials held must be gone already.
            alive_at_start.append([r() is not None for r in refs])
            refs.append(weakref.ref(ballast))
        loss = 1.0
        for epoch in range(epochs):
            loss = loss * 0.5 + x * 0.01
            if trial.number == bad_trial and epoch == bad_epoch:
                if failure == "nan-loss":
                    raise Diverged(epoch=epoch, step=7, value=float("nan"))
                if failure == "nan-value":
                    return float("nan")
                if failure == "inf-value":
                    return math.inf
                raise failure
            trial.report(loss, epoch)
        return loss

    objective.alive_at_start = alive_at_start
    return objective


def run_study(tmp_path, objective, budget: int = 5):
    storage = open_storage(f"sqlite:///{tmp_path}/f.db", heartbeat_interval=1, grace_period=3)
    study = create_study_once(storage, "f", ["minimize"])
    summary = run_worker(study, objective, storage=storage, budget=budget)
    return study, summary


@pytest.mark.parametrize("failure", ["nan-loss", "nan-value", "inf-value"])
def test_divergence_prunes_with_reason_and_the_study_goes_on(tmp_path, failure):
    study, summary = run_study(tmp_path, make_objective(1, failure))
    trials = study.get_trials()
    bad = trials[1]
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["fail_reason"] == "diverged"
    assert sorted(bad.intermediate_values) == [0, 1]  # stopped at the chosen epoch
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4
    assert summary.ran == 5
    records = list_failures(study)
    assert [(r.number, r.state, r.reason) for r in records] == [(1, "PRUNED", "diverged")]
    if failure == "nan-loss":
        assert "loss nan at epoch 2, step 7" in records[0].detail


def _oom_errors():
    import torch

    return {
        "torch": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "cuda": torch.cuda.OutOfMemoryError("CUDA out of memory."),
        "cpu": MemoryError(),
        "runtime": RuntimeError("[enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: not enough memory: "
                                "you tried to allocate 1 bytes. out of memory"),
    }


@pytest.mark.parametrize("kind", ["torch", "cuda", "cpu", "runtime"])
def test_out_of_memory_fails_with_reason_frees_memory_and_the_study_goes_on(tmp_path, kind):
    refs: list = []
    objective = make_objective(2, _oom_errors()[kind], refs=refs)
    study, summary = run_study(tmp_path, objective, budget=4)
    trials = study.get_trials()
    assert len(trials) == 5  # the failed trial does not count toward the budget
    bad = trials[2]
    assert bad.state == TrialState.FAIL
    assert bad.user_attrs["fail_reason"] == "oom"
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4
    assert summary.states == {"COMPLETE": 4, "FAIL": 1}
    assert objective.alive_at_start[3] == [False, False, False], "the failed trial's memory outlived it"
    assert list_failures(study)[0].reason == "oom"


def test_any_other_error_fails_with_its_message(tmp_path):
    error = ValueError("bad\nshape [3, 4]   vs [4]")
    study, _ = run_study(tmp_path, make_objective(0, error), budget=3)
    bad = study.get_trials()[0]
    assert bad.state == TrialState.FAIL
    assert bad.user_attrs["fail_reason"] == "ValueError: bad shape [3, 4] vs [4]"
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_failure_reasons_never_carry_a_storage_password(tmp_path):
    error = ConnectionError("lost postgresql://alice:hunter2secret@db.example:5432/nas mid-trial")
    study, _ = run_study(tmp_path, make_objective(0, error), budget=1)
    reason = study.get_trials()[0].user_attrs["fail_reason"]
    assert "hunter2secret" not in reason and "postgresql://alice:***@db.example:5432/nas" in reason


def test_works_with_study_optimize_catch(tmp_path):
    """Objectives run by plain study.optimize get the same policy."""
    study = optuna.create_study(direction="minimize")
    objective = guarded(make_objective(1, MemoryError("host out of memory")))
    assert guarded(objective) is objective  # idempotent
    study.optimize(objective, n_trials=3, catch=FAILURE_CATCH)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["fail_reason"] == "oom"


def test_errors_outside_catch_stop_the_worker_after_recording(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/f.db")
    study = create_study_once(storage, "f", ["minimize"])
    with pytest.raises(TrialFailed):
        run_worker(study, make_objective(0, KeyError("x")), storage=storage, budget=3, catch=())
    trial = study.get_trials()[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "KeyError: 'x'"


def test_interrupt_marks_the_trial_and_propagates(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/f.db")
    study = create_study_once(storage, "f", ["minimize"])
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, make_objective(0, KeyboardInterrupt()), storage=storage, budget=3)
    trial = study.get_trials()[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"


def test_an_interrupt_before_the_objective_starts_still_closes_the_trial(tmp_path, monkeypatch):
    """Ctrl-C between taking a trial and training it (here: while the worker tags the trial)."""
    storage = open_storage(f"sqlite:///{tmp_path}/f.db", heartbeat_interval=1, grace_period=3)
    study = create_study_once(storage, "f", ["minimize"])
    tag = storage.set_trial_system_attr

    def interrupted_tag(trial_id, key, value):
        tag(trial_id, key, value)
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "set_trial_system_attr", interrupted_tag)
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, make_objective(-1, None), storage=storage, budget=3)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"


def test_is_out_of_memory_follows_causes():
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise RuntimeError("data loader worker died") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of range"))


def test_failures_markdown_lists_reasons():
    from snnas.study.failures import FailureRecord

    table = failures_markdown([FailureRecord(3, "FAIL", "oom", key="k|1"), FailureRecord(5, "PRUNED", "diverged")])
    assert "| 3 | fail | oom | k|1 |" in table and "| 5 | pruned | diverged |  |" in table
    assert failures_markdown([]) == "No failed or pruned trials.\n"


def test_lost_worker_is_listed_with_its_retry(tmp_path):
    """A trial failed by the heartbeat has no recorded reason; the listing explains it."""
    import time

    storage = open_storage(f"sqlite:///{tmp_path}/f.db", heartbeat_interval=1, grace_period=2)
    study = create_study_once(storage, "f", ["minimize"])
    lost = study.ask()
    lost.suggest_float("x", 0.0, 1.0)
    storage.record_heartbeat(trial_id(lost))  # then its worker "dies": no more beats
    time.sleep(2.5)
    summary = run_worker(study, make_objective(-1, None), storage=storage, budget=2)
    assert summary.ran == 2
    records = list_failures(study)
    assert len(records) == 1 and records[0].number == 0
    retry = next(t for t in study.get_trials() if t.system_attrs.get(FAILED_TRIAL_ATTR) == 0)
    assert records[0].reason == f"worker lost (no heartbeat); retried as trial {retry.number}"
    assert retry.params == lost.params and retry.state == TrialState.COMPLETE
