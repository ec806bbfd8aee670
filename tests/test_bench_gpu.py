"""bench/gpu.py, the prepared GPU check, at tiny sizes: every section runs and lands in its JSON with
sane numbers, a re-run measures nothing twice, and a spent budget skips instead of overrunning."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from snnas.errors import SnnasError
from tests.data_helpers import write_fashion_idx
from tests.devices import DEVICES, HAS_CUDA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

SECTIONS = {"throughput", "switch", "data", "proxy", "groundtruth", "workers"}


def _run(argv: list[str]) -> int:
    import gpu

    with torch.random.fork_rng(devices=[]):
        return gpu.main(argv)


def _records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(path.read_text())["runs"]}


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_gpu_check_runs_every_section_at_tiny_sizes(device, tmp_path, one_thread):
    out = tmp_path / "gpu.json"
    argv = ["--device", device, "--smoke", "--threads", "1", "--fashion-dir", str(write_fashion_idx(tmp_path / "f")),
            "--out", str(out), "--work", str(tmp_path / "work")]
    assert _run(argv) == 0
    records = _records(out)
    summary = records.pop("summary")
    assert {r["section"] for r in records.values()} == SECTIONS
    compiled = {rid for rid, r in records.items() if r.get("switch") == "compile"}
    assert all(records[rid]["status"].startswith("skipped: smoke") for rid in compiled) and len(compiled) == 2
    assert all(r["status"] == "ok" for rid, r in records.items() if rid not in compiled), \
        [(rid, r["status"]) for rid, r in records.items() if r["status"] != "ok"]

    cells = [r for r in records.values() if r["section"] in ("throughput", "switch") and r["status"] == "ok"]
    assert len(cells) == 36 + 6 and all(_positive(r["images_per_s"]) and r["batch"] >= 1 for r in cells)
    assert all((r["peak_gib"] is not None) == (device == "cuda") for r in cells)
    rows = summary["throughput"]
    compared = [r for r in rows if r["spikingjelly"] is not None]
    assert {(r["scale"], r["T"]) for r in compared} == {(s, t) for s in ("16px-w1", "8px-w1-imagenet-stem")
                                                        for t in (1, 2)}
    assert all(_positive(r["vs_spikingjelly"]) for r in compared)
    assert all(_positive(r["vs_ann_t1"]) for r in rows if r["T"] == 1 and r["scale"] != "8px-w1-imagenet-stem")
    assert all(r["vs_ann_t1"] is None for r in rows if r["T"] != 1)
    assert len(summary["targets"]) == 8 and all(isinstance(t["pass"], bool) for t in summary["targets"])
    assert len(summary["switches"]) == 6 and all(_positive(s["vs_defaults"]) for s in summary["switches"])

    data = [r for r in records.values() if r["section"] == "data"]
    assert len(data) == 2 and all(0 <= r["wait_share"] < 1 and _positive(r["step_ms"]) for r in data)
    proxy, truth, workers = records["proxy"], records["groundtruth"], records["workers/1"]
    assert _positive(proxy["wall_s"]) and proxy["speedup_vs_cpu"] == pytest.approx(19.0 / proxy["wall_s"])
    assert 0 <= proxy["val_acc"] <= 1 and 0 <= truth["test_acc"] <= 1 and _positive(truth["speedup_vs_cpu"])
    assert workers["trials"] == 2 and _positive(workers["trials_per_hour"])
    assert summary["missing"] == sorted(compiled)

    # resumable: a second run measures nothing again
    assert _run(argv) == 0
    again = _records(out)
    assert all(again[rid] == r for rid, r in records.items() if r["status"] == "ok")

    # a spent budget records every measurement as skipped rather than running past it
    spent = tmp_path / "spent.json"
    assert _run(argv[:-4] + ["--out", str(spent), "--work", str(tmp_path / "work"), "--budget-s", "0.001"]) == 0
    statuses = {rid: r["status"] for rid, r in _records(spent).items() if rid != "summary"}
    assert statuses.keys() == records.keys()
    assert all(s == "skipped: time budget" for rid, s in statuses.items() if rid not in compiled)


def test_gpu_check_refuses_a_device_it_cannot_use(tmp_path):
    with pytest.raises(SnnasError, match="expected cuda, cuda:N or cpu"):
        _run(["--device", "tpu", "--out", str(tmp_path / "x.json"), "--work", str(tmp_path)])
    if not HAS_CUDA:
        with pytest.raises(SnnasError, match="no CUDA device"):
            _run(["--device", "cuda", "--out", str(tmp_path / "x.json"), "--work", str(tmp_path)])
