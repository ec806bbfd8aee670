"""``--workers N`` spreads the workers over the visible GPUs (round robin, several per GPU), checked
without a GPU: torch is told it has some."""
from __future__ import annotations

import pytest
import torch

from snnas.errors import SnnasError
from snnas.search.options import visible_devices
from snnas.study.processes import assign_devices
from search_helpers import tiny_space


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_workers_go_round_robin_over_the_devices():
    assert assign_devices(5, ["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert assign_devices(1, ["cuda:1", "cuda:0"]) == ["cuda:1"]
    assert assign_devices(3, ["cpu"]) == ["cpu"] * 3


def test_every_visible_gpu_by_default_and_the_chosen_ones_when_asked(two_gpus):
    assert visible_devices(None, None) == ("cuda:0", "cuda:1")
    assert visible_devices("1,0", None) == ("cuda:1", "cuda:0")
    assert visible_devices("cuda:1,cpu", None) == ("cuda:1", "cpu")
    assert visible_devices(None, "cuda:1") == ("cuda:1",)
    with pytest.raises(SnnasError, match=r"^--devices cuda:2: this machine has GPUs cuda:0\.\.cuda:1$"):
        visible_devices("cuda:0,cuda:2", None)
    with pytest.raises(SnnasError, match="give one"):
        visible_devices("0", "cuda:0")
    with pytest.raises(SnnasError, match="not a device"):
        visible_devices("gpu0", None)


def test_without_a_gpu_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert visible_devices(None, None) == ("cpu",)
    with pytest.raises(SnnasError, match="this machine has no GPU"):
        visible_devices("0", None)


def test_each_spawned_workers_objective_gets_its_device(tmp_path, two_gpus, monkeypatch, one_thread):
    """Three workers on two GPUs: the parent hands worker i device i mod 2, and the worker's
    objective trains there (the worker runs in this process here, its trials not at all)."""
    from snnas.search import funnel
    from snnas.search.funnel import SearchOptions, run_search

    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space(("pa_a", "sew")))
    received = []

    def in_this_process(target, argsets, study, title, refresh=None, log=print, artifacts=None):
        for args in argsets:
            target(*args)

    def record(study, objective, **kw):
        received.append(objective.device)

    monkeypatch.setattr(funnel, "run_local_workers", in_this_process)
    monkeypatch.setattr(funnel, "run_worker", record)
    lines = []
    options = SearchOptions(space=str(space), data="fashion-2", out=tmp_path / "runs", trials=3, promote=0,
                            workers=3, threads=1, train_per_class=16, val_per_class=8, resolution=16,
                            width_mult=0.0625, epochs=1, batch_size=16, progress=False, allow_large=True,
                            cache_dir=str(tmp_path / "cache"))
    run_search(options, log=lines.append)
    assert received == ["cuda:0", "cuda:1", "cuda:0"]
    assert "phase 1: 3 worker processes, 1 thread each (2 on cuda:0, 1 on cuda:1)" in lines
