"""bench/neuron_outcome.py on hand-made results whose answer is known: rows grouped by network
shape and by neuron and T, each held against the same shape's IF at T=1 from the table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPE = "half16|basic.pa_b.16x1.s1.chain|basic.pa_b.32x1.s2.chain"
OTHER = "half16|basic.origin.16x1.s1.chain|basic.origin.32x1.s2.chain"


def _run(seed, neuron, acc, energy, shape=SHAPE, **extra):
    return {"key": f"{neuron}-{shape}", "genotype": f"{neuron}|{shape}", "seed": seed, "test_acc": acc,
            "energy_mj": energy, "sops": 1e5, "firing_rate": 0.2, "neuron_mac_ops": 0.0, "train_s": 50.0,
            "epochs_run": 5, **extra}


def _write(path, timesteps, runs):
    path.write_text(json.dumps({"format": "snnas-fulltrain/1", "settings": {"fit": {"timesteps": [timesteps]}},
                                "runs": runs}))
    return path


def _outcome(tmp_path, *results):
    out = tmp_path / "outcome.json"
    done = subprocess.run([sys.executable, "bench/neuron_outcome.py", "--table", str(tmp_path / "table.json"),
                           "--results", *map(str, results), "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return done, out


@pytest.fixture
def table(tmp_path):
    return _write(tmp_path / "table.json", 1, [
        _run(0, "if", 0.80, 1e-3, preset="tiny_b"), _run(1, "if", 0.82, 1e-3, preset="tiny_b"),
        _run(0, "if", 0.70, 2e-3, shape=OTHER, preset="tiny_origin")])


def test_each_variant_is_held_against_its_shapes_if_at_t1(tmp_path, table):
    gwr = _write(tmp_path / "gwr.json", 1, [_run(0, "gwr", 0.83, 1.5e-3, neuron_mac_ops=2e5),
                                            _run(1, "gwr", 0.85, 1.5e-3, neuron_mac_ops=2e5),
                                            _run(0, "gwr(dil=off)", 0.79, 1.2e-3)])
    t2 = _write(tmp_path / "t2.json", 2, [_run(0, "if", 0.84, 2e-3), _run(1, "if", 0.86, 2e-3)])
    done, out = _outcome(tmp_path, gwr, t2)
    assert done.returncode == 0, done.stderr
    entries = {e["variant"]: e for e in json.loads(out.read_text())["networks"]}
    assert set(entries) == {"if, T=1", "gwr, T=1", "gwr(dil=off), T=1", "if, T=2"}  # OTHER has no variant
    assert all(e["network"] == "tiny_b" for e in entries.values())
    assert entries["gwr, T=1"]["delta_acc_points"] == pytest.approx(3.0)
    assert entries["gwr, T=1"]["energy_ratio"] == pytest.approx(1.5)
    assert entries["gwr, T=1"]["neuron_mac_ops"] == pytest.approx(2e5)
    assert entries["if, T=2"]["delta_acc_points"] == pytest.approx(4.0) and entries["if, T=2"]["seeds"] == [0, 1]
    assert entries["gwr(dil=off), T=1"]["test_acc_spread"] == 0 and entries["gwr(dil=off), T=1"]["seeds"] == [0]
    assert out.with_suffix(".png").is_file() and "| tiny_b | gwr, T=1 | 0,1 | 84.00 |" in done.stdout


def test_a_results_file_without_runs_is_one_line(tmp_path, table):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"seed": 0}]}))
    done, out = _outcome(tmp_path, bad)
    assert done.returncode != 0 and not out.exists()
    assert done.stderr.strip().count("\n") == 0 and "run 0 lacks a genotype" in done.stderr
