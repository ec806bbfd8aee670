"""bench/fulltrain.py end to end on tiny networks: a network the table holds at the same fit takes the
table's rows, any other trains at the table's fidelity and seeds, a rerun trains nothing, and results
of another T never land in the same file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snnas.data import FASHION_DEFAULT_DIR
from snnas.fit import FitSettings, built_genotype
from snnas.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
FIT = FitSettings(recipe="short", epochs=(1,), width_mult=0.0625, batch_size=16)
SMALL = "if|half64|basic.origin.64x1.s1.chain|basic.origin.128x1.s2.chain"


def _table(tmp_path: Path) -> Path:
    danet = built_genotype(get_preset("danet_c_resnet18"), FIT, 16)
    runs = [{"key": danet.key, "genotype": danet.to_str(), "preset": "danet_c_resnet18", "seed": seed,
             "test_acc": acc, "sops": 2e4, "energy_mj": 2e-5, "firing_rate": 0.2, "train_s": 3.0}
            for seed, acc in ((0, 0.61), (1, 0.63))]
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"format": "snnas-groundtruth/1", "runs": runs, "settings": {
        "data": "fashion-2", "data_seed": 0, "resolution": 16, "train_per_class": 16, "val_per_class": 8,
        "fit": FIT.to_dict()}}))
    return path


def _fulltrain(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "bench/fulltrain.py", "--table", str(_table(tmp_path)), "--out", str(tmp_path / "out.json"),
           "--work", str(tmp_path / "work"), "--threads", "1", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_fulltrain_trains_what_the_table_lacks_and_resumes_to_nothing(tmp_path):
    nets = ["--nets", "danet_c_resnet18", f"small={SMALL}"]
    done = _fulltrain(tmp_path, *nets)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = [line for line in done.stdout.splitlines() if line.startswith("training ")]
    assert [line.split()[1] for line in trained] == ["small", "small"]  # seeds 0 and 1: the table's
    runs = json.loads((tmp_path / "out.json").read_text())["runs"]
    assert sorted(r["seed"] for r in runs) == [0, 1] and {r["name"] for r in runs} == {"small"}
    assert all(0 <= r["test_acc"] <= 1 and r["energy_mj"] > 0 and r["epochs_run"] == 1 for r in runs)
    report = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert "| 0,1 | 62.00 | 2.00 |" in report["danet_c_resnet18"]  # the table's rows, not trained again
    mean = 100 * sum(r["test_acc"] for r in runs) / 2
    assert f"| 0,1 | {mean:.2f} |" in report["small"]

    again = _fulltrain(tmp_path, *nets)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "training " not in again.stdout and json.loads((tmp_path / "out.json").read_text())["runs"] == runs

    other_t = _fulltrain(tmp_path, *nets, "--timesteps", "2")  # another T is another file
    assert other_t.returncode == 2 and other_t.stderr.count("\n") == 1 and "other settings" in other_t.stderr
    assert json.loads((tmp_path / "out.json").read_text())["runs"] == runs


@pytest.mark.parametrize("nets, names", [(["--nets", "no_such_preset"], "no_such_preset"),
                                         (["--nets", "bad=if|half64|basic.nope.64x1.s1.chain"], "stage")])
def test_fulltrain_names_a_bad_network_before_training(tmp_path, nets, names):
    done = _fulltrain(tmp_path, *nets)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and names in done.stderr
    assert not (tmp_path / "work").exists()
