"""Trial files in Optuna's artifact store: where it is, checkpoints that follow a retry, and the
errors a bad location gives."""
from __future__ import annotations

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from snnas.study.artifacts import (STORE_ATTR, ArtifactStoreError, checkpoints_of, open_artifact_store,
                                   parse_artifact_location, study_artifact_store)
from snnas.study.adapter import HEARTBEAT_WARNING, storage_of, take_waiting
from snnas.study.storage import create_study_once, open_storage

pytestmark = pytest.mark.filterwarnings(f"ignore:{HEARTBEAT_WARNING}:UserWarning")


def _study(tmp_path, name="s"):
    storage = open_storage(f"sqlite:///{tmp_path}/study.db")
    return create_study_once(storage, name, ["maximize"])


def _files(store_dir):
    return sorted(p.name for p in store_dir.iterdir())


def test_a_checkpoint_replaces_the_last_and_a_retry_restores_it(tmp_path):
    study = _study(tmp_path)
    store = open_artifact_store(tmp_path / "store")
    trial = study.ask()
    local = tmp_path / "local.pt"
    for epoch in (1, 2):
        local.write_bytes(f"weights after epoch {epoch}".encode())
        store.save_checkpoint(trial, "phase1", local, epoch)
    assert len(_files(tmp_path / "store")) == 1  # the epoch-1 file is gone once epoch 2 is stored
    assert checkpoints_of(trial)["phase1"]["step"] == 2

    # The worker dies: the storage's retry callback re-queues the trial with its system attrs.
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[trial.number])
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    retry = take_waiting(study, waiting)
    restored = store.restore_checkpoints(retry, lambda slot: tmp_path / "elsewhere" / slot / "checkpoint.pt")
    assert restored == {"phase1": 2}
    assert (tmp_path / "elsewhere" / "phase1" / "checkpoint.pt").read_bytes() == b"weights after epoch 2"

    finished = study.tell(retry, 1.0)  # dropped once the result is recorded, from the frozen record
    store.drop_checkpoints(finished)
    assert _files(tmp_path / "store") == []


def test_weights_are_an_optuna_artifact_of_their_trial(tmp_path):
    study = _study(tmp_path)
    store = open_artifact_store(tmp_path / "store")
    trial = study.ask()
    (tmp_path / "model.pt").write_bytes(b"w")
    artifact_id = store.upload(trial, tmp_path / "model.pt")
    metas = optuna.artifacts.get_all_artifact_meta(study.trials[trial.number], storage=storage_of(study))
    assert [(m.artifact_id, m.filename) for m in metas] == [(artifact_id, "model.pt")]
    assert store.download(artifact_id, tmp_path / "out" / "m.pt").read_bytes() == b"w"
    with pytest.raises(ArtifactStoreError, match="is not in the artifact store"):
        store.download("no-such-id", tmp_path / "out" / "x.pt")
    assert not (tmp_path / "out" / "x.pt").exists() and _files(tmp_path / "out") == ["m.pt"]  # no partial file


def test_the_study_records_a_given_store_and_refuses_a_second_one(tmp_path):
    study = _study(tmp_path)
    default = tmp_path / "run" / "artifacts"
    shared = tmp_path / "shared"
    assert study_artifact_store(study, str(shared), default).location.path == shared
    assert study.user_attrs[STORE_ATTR] == str(shared)
    assert study_artifact_store(study, None, default).location.path == shared  # later workers find it
    assert not default.exists()
    with pytest.raises(ArtifactStoreError, match="keeps its files in"):
        study_artifact_store(study, str(tmp_path / "other"), default)


@pytest.mark.parametrize("text, message", [
    ("", "empty location"),
    ("ftp://host/dir", "ftp:// is not a supported store"),
    ("s3://", "is not an S3 bucket name"),
    ("s3://Upper_Case/x", "is not an S3 bucket name"),
])
def test_bad_locations_fail_in_one_line(text, message):
    with pytest.raises(ArtifactStoreError, match=message):
        parse_artifact_location(text)


def test_a_file_is_not_a_store(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactStoreError, match="is a file, not a directory"):
        parse_artifact_location(tmp_path / "f")


def test_s3_parses_bucket_and_prefix_and_names_boto3_when_missing():
    loc = parse_artifact_location("s3://my-bucket/searches/run1/")
    assert (loc.bucket, loc.prefix, loc.text) == ("my-bucket", "searches/run1", "s3://my-bucket/searches/run1")
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(ArtifactStoreError, match=r"needs boto3 \(pip install 'snnas\[s3\]'\)"):
            open_artifact_store(loc)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", ["write", "remove"])
def test_a_worker_killed_inside_a_save_leaves_no_file_behind(tmp_path, crash_at):
    """Killed mid-write (a partial file nothing points to) or after the swap (the replaced file
    still there): the next save, here the retry's, removes the leftover."""
    study = _study(tmp_path)
    store = open_artifact_store(tmp_path / "store")
    trial = study.ask()
    local = tmp_path / "local.pt"
    local.write_bytes(b"epoch 1")
    store.save_checkpoint(trial, "phase1", local, 1)
    backend = store.backend
    real = getattr(backend, crash_at)

    def crash(artifact_id, *args):
        if crash_at == "write":
            args[0].read(3)
            (tmp_path / "store" / artifact_id).write_bytes(b"par")  # a half-written file
        raise _Crash()

    setattr(backend, crash_at, crash)
    local.write_bytes(b"epoch 2")
    with pytest.raises(_Crash):
        store.save_checkpoint(trial, "phase1", local, 2)
    setattr(backend, crash_at, real)
    assert len(_files(tmp_path / "store")) == 2  # one file too many, but listed as garbage
    expected = 1 if crash_at == "write" else 2  # the swap happened only when the remove crashed
    assert checkpoints_of(trial)["phase1"]["step"] == expected

    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[trial.number])
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    retry = take_waiting(study, waiting)
    assert store.restore_checkpoints(retry, lambda slot: tmp_path / "r" / slot) == {"phase1": expected}
    assert (tmp_path / "r" / "phase1").read_bytes() == f"epoch {expected}".encode()
    local.write_bytes(b"epoch 3")
    store.save_checkpoint(retry, "phase1", local, 3)
    assert len(_files(tmp_path / "store")) == 1  # the leftover is gone with the replaced file
    store.drop_checkpoints(study.tell(retry, 1.0))
    assert _files(tmp_path / "store") == []


@pytest.mark.parametrize("locked", [False, True])
def test_a_save_after_the_trial_was_taken_over_stops_and_removes_nothing(tmp_path, locked):
    """The worker of a trial that was failed and retried behind its back (its heartbeat lapsed)
    must not touch the checkpoint its retry inherited."""
    from snnas.study.failures import Superseded
    from snnas.study.locks import LocalLock

    study = _study(tmp_path)
    store = open_artifact_store(tmp_path / "store")
    trial = study.ask()
    local = tmp_path / "local.pt"
    local.write_bytes(b"epoch 1")
    inherited = store.save_checkpoint(trial, "phase1", local, 1)
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, study.trials[trial.number])
    local.write_bytes(b"epoch 2")
    with pytest.raises(Superseded):
        store.save_checkpoint(trial, "phase1", local, 2, lock=LocalLock() if locked else None)
    assert _files(tmp_path / "store") == [inherited]
