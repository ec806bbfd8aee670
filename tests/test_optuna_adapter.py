"""Each assumption ``snnas.study.adapter`` makes about Optuna, checked against the installed release."""
from __future__ import annotations

import inspect
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from snnas.study import adapter
from snnas.study.storage import create_study_once, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _heartbeat_study(tmp_path, name="a"):
    storage = open_storage(f"sqlite:///{tmp_path}/a.db", heartbeat_interval=1, grace_period=2)
    return storage, create_study_once(storage, name, ["maximize"])


def test_a_study_names_its_storage_and_a_trial_its_storage_id(tmp_path):
    storage, study = _heartbeat_study(tmp_path)
    assert isinstance(adapter.storage_of(study), optuna.storages.BaseStorage)  # Optuna wraps RDB in a cache
    with adapter.quiet_heartbeat_warning():
        live = study.ask()
    frozen = study.trials[live.number]
    assert storage.get_trial(adapter.trial_id(live)).number == live.number
    assert adapter.storage_of(study).get_trial(adapter.trial_id(live)).number == live.number
    assert adapter.trial_id(frozen) == adapter.trial_id(live)


def test_taking_one_queued_trial_works_as_optunas_own_queue_does(tmp_path):
    _, study = _heartbeat_study(tmp_path)
    study.enqueue_trial({"x": 1})
    study.enqueue_trial({"x": 2})
    first, second = study.get_trials(states=(TrialState.WAITING,))
    taken = adapter.take_waiting(study, second)
    assert taken is not None and adapter.state_now(taken) == TrialState.RUNNING
    assert adapter.enqueued_params(taken) == {"x": 2} == adapter.enqueued_params(second)
    assert taken.suggest_int("x", 0, 9) == 2  # the enqueued value, as for a trial Optuna pops itself
    assert adapter.take_waiting(study, second) is None  # another worker was first
    study.tell(taken, 1.0)
    assert adapter.take_waiting(study, second) is None  # finished meanwhile
    assert adapter.ask(study).number == first.number  # Optuna's queue goes on with the rest
    # The storage primitive the copy relies on, and the method it copies.
    source = inspect.getsource(optuna.Study._pop_waiting_trial_id)
    assert "set_trial_state_values" in source and "UpdateFinishedTrialError" in source


def test_a_finished_trial_refuses_attribute_writes(tmp_path):
    _, study = _heartbeat_study(tmp_path)
    trial = adapter.ask(study)
    adapter.set_system_attr(trial, "k", 1)
    assert adapter.system_attrs(trial)["k"] == 1
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # how a lapsed worker learns it was superseded
        adapter.set_system_attr(trial, "k", 2)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("k", 2)


def test_a_requeued_trial_carries_parameters_and_attributes_and_names_its_chain(tmp_path):
    _, study = _heartbeat_study(tmp_path)
    trial = adapter.ask(study)
    trial.suggest_int("x", 0, 9)
    trial.set_user_attr("key", "k")
    trial.set_user_attr("fail_reason", "why this run failed")
    adapter.set_system_attr(trial, "record", {"slots": {"a": 1}})
    failed = study.tell(trial, state=TrialState.FAIL)
    number = adapter.requeue(study, failed, without_user_attrs=("fail_reason",))
    retry = study.trials[number]
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert retry.user_attrs == {"key": "k"}
    assert retry.system_attrs["record"] == {"slots": {"a": 1}}  # the checkpoint record travels with it
    assert retry.system_attrs[adapter.FAILED_TRIAL_ATTR] == failed.number
    assert retry.system_attrs[adapter.RETRY_HISTORY_ATTR] == [failed.number]
    again = study.tell(adapter.take_waiting(study, retry), state=TrialState.FAIL)
    number = adapter.requeue(study, again)
    third = study.trials[number]
    assert third.system_attrs[adapter.FAILED_TRIAL_ATTR] == failed.number  # the chain's first
    assert third.system_attrs[adapter.RETRY_HISTORY_ATTR] == [failed.number, retry.number]
    assert adapter.requeue(optuna.create_study(), failed) is None  # no retries on this storage


def test_the_heartbeat_warning_is_the_one_the_filter_names(tmp_path):
    _, study = _heartbeat_study(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.ask()
    assert any(str(w.message).startswith(adapter.HEARTBEAT_WARNING) for w in caught), [str(w.message) for w in caught]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter.ask(study)
    assert not [w for w in caught if adapter.HEARTBEAT_WARNING in str(w.message)]


def test_stale_trials_fail_and_are_requeued_and_metrics_are_named(tmp_path):
    import time

    storage, study = _heartbeat_study(tmp_path)
    trial = adapter.ask(study)
    storage.record_heartbeat(adapter.trial_id(trial))
    time.sleep(3)
    adapter.fail_stale_trials(study)
    assert adapter.state_now(trial) == TrialState.FAIL
    assert [t.system_attrs[adapter.FAILED_TRIAL_ATTR] for t in study.get_trials(states=(TrialState.WAITING,))] == [0]
    adapter.name_metrics(study, ["val_acc"])
    assert study.metric_names == ["val_acc"]


def test_hypervolume_and_its_greedy_subset_are_what_the_adapter_says():
    import numpy as np

    losses = np.array([[-0.9, 1.0], [-0.8, 0.5], [-0.5, 0.1]])
    ref = np.array([0.0, 2.0])
    # rectangles by hand: 0.9 x 1 + 0.8 x 0.5 + 0.5 x 0.4
    assert adapter.hypervolume(losses, ref) == pytest.approx(0.9 + 0.4 + 0.2)
    # alone: 0.9, 1.2, 0.95; the greedy first takes row 1, then row 2 adds 0.2 against row 0's 0.1 x 1
    assert adapter.hypervolume_subset(losses, 2, ref) == [1, 2]
