"""Ground truth: ranking statistics on hand-made tables, and bench/groundtruth.py resuming after a kill."""
from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snnas.cli import retrain
from snnas.data import FASHION_DEFAULT_DIR
from snnas.errors import SnnasError
from snnas.groundtruth import (GroundTruthError, Table, agreement, find_table, kendall_tau, no_table_reason,
                               pairwise_taus, top_k, top_k_recall)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def hand_table(tmp_path: Path, accs: dict[str, list[float]], data: str = "fashion-10") -> Path:
    runs = [{"key": k, "genotype": f"g-{k}", "preset": None, "seed": s, "test_acc": a}
            for k, values in accs.items() for s, a in enumerate(values)]
    path = tmp_path / f"groundtruth_{data.replace('-', '')}.json"
    path.write_text(json.dumps({"settings": {"data": data, "data_seed": 0}, "runs": runs}))
    return path


def test_kendall_tau_on_hand_made_rankings():
    truth = {"a": 4, "b": 3, "c": 2, "d": 1}
    assert kendall_tau({"a": 9, "b": 8, "c": 7, "d": 6}, truth) == pytest.approx(1.0)
    assert kendall_tau({"a": 1, "b": 2, "c": 3, "d": 4}, truth) == pytest.approx(-1.0)
    # one swapped pair of six: (5 - 1) / 6
    assert kendall_tau({"a": 4, "b": 3, "c": 1, "d": 2}, truth) == pytest.approx(4 / 6)
    assert kendall_tau({"a": 1, "zz": 2}, truth) != kendall_tau({"a": 1, "zz": 2}, truth)  # NaN: one shared key
    assert kendall_tau({"a": 1, "b": 0, "extra": 5}, truth) == pytest.approx(1.0)  # only shared keys count


def test_top_k_recall_on_hand_made_rankings():
    truth = {"a": .9, "b": .8, "c": .7, "d": .6, "e": .5}
    assert top_k(truth, 2) == ["a", "b"]
    assert top_k_recall({"a": 5, "b": 4, "c": 3, "d": 2, "e": 1}, truth, 3) == 1.0
    assert top_k_recall({"e": 5, "d": 4, "a": 3, "b": 2, "c": 1}, truth, 3) == pytest.approx(1 / 3)
    assert top_k_recall({"e": 5, "d": 4, "c": 3, "b": 2, "a": 1}, truth, 2) == 0.0
    assert top_k_recall({"a": 1, "b": 2}, truth, 3) == 1.0  # k shrinks to the shared networks


def test_table_means_spreads_and_its_own_seed_to_seed_tau(tmp_path):
    path = hand_table(tmp_path, {"a": [.90, .88, .89], "b": [.85, .86, .84], "c": [.80, .87, .70]})
    table = Table.read(path)
    nets = table.networks()
    assert [n.key for n in nets] == ["a", "b", "c"]
    assert nets[0].mean == pytest.approx(.89) and nets[2].spread == pytest.approx(.17)
    # seed 0: a > b > c; seed 1: a > c > b; seed 2: a > b > c
    assert table.seed_taus() == {(0, 1): pytest.approx(1 / 3), (0, 2): pytest.approx(1.0), (1, 2): pytest.approx(1 / 3)}
    assert table.seed_tau() == pytest.approx(5 / 9)
    got = agreement({"a": .7, "b": .6, "c": .5}, table)
    assert got.networks == 3 and got.tau == pytest.approx(1.0) and got.top3_recall == 1.0
    assert got.table_seed_tau == pytest.approx(5 / 9)
    assert pairwise_taus({0: {"x": 1, "y": 2}, 1: {"x": 2, "y": 1}}) == {(0, 1): pytest.approx(-1.0)}


def test_find_table_matches_the_data_and_skips_foreign_files(tmp_path):
    hand_table(tmp_path, {"a": [.9], "b": [.8]}, data="fashion-10")
    (tmp_path / "groundtruth_broken.json").write_text("{not json")
    assert find_table("fashion-10", 0, tmp_path).settings["data"] == "fashion-10"
    assert find_table("fashion-10", 1, tmp_path) is None
    assert find_table("imagenet-20:/x", 0, tmp_path) is None
    with pytest.raises(GroundTruthError, match="cannot read"):
        Table.read(tmp_path / "groundtruth_broken.json")


def test_a_tau_over_fewer_than_four_networks_is_not_printed(tmp_path):
    table = Table.read(hand_table(tmp_path, {"a": [.9], "b": [.8], "c": [.7], "d": [.6]}))
    three = agreement({"a": 3, "b": 2, "c": 1}, table).describe()
    assert "too few for a Kendall tau" in three and "1.00" not in three.split(";")[0]
    four = agreement({"a": 4, "b": 3, "c": 1, "d": 2}, table).describe()
    assert four.startswith("Kendall tau 0.67 against full training over 4 networks")


def test_the_packaged_table_is_found_without_a_folder_and_a_missing_one_says_why():
    table = find_table("fashion-10")
    assert table is not None and table.settings["data"] == "fashion-10"
    reason = no_table_reason("imagenet-20:/data/in", 3)
    assert "no ground-truth table trained on imagenet-20:/data/in (data seed 3)" in reason and "\n" not in reason
    assert find_table("imagenet-20:/data/in", 3) is None


def test_proxy_truth_joins_full_trainings_beyond_the_table(tmp_path):
    import proxy_fidelity

    base = hand_table(tmp_path, {"a": [.9, .88], "b": [.8, .81]})
    doc = json.loads(base.read_text())
    for r, preset in zip(doc["runs"], ["pa", "pa", "pb", "pb"]):
        r["preset"], r["energy_mj"] = preset, 1.0
    doc["settings"]["fit"] = {"width_mult": 0.25}
    base.write_text(json.dumps(doc))
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps({"settings": {"data": "fashion-10", "fit": {"width_mult": 0.25}}, "runs": [
        {"key": "c", "genotype": "g-c", "seed": 0, "test_acc": .85, "energy_mj": .5, "name": "shrink"},
        {"key": "a", "genotype": "g-a", "seed": 0, "test_acc": .10}]}))  # a run the table has: the table's stays
    truth = proxy_fidelity.truth_table(base, [extra], "pa")
    assert {(r["key"], r["seed"]) for r in truth.runs} == {("a", 0), ("a", 1), ("c", 0)}
    assert truth.mean_acc() == {"a": pytest.approx(.89), "c": pytest.approx(.85)}
    shrink = next(n for n in truth.networks() if n.key == "c")  # named as a network, not passed off as a depth
    assert shrink.extra == {"name": "shrink"}
    with pytest.raises(SnnasError, match="--presets: zz not in"):
        proxy_fidelity.truth_table(base, [], "pa,zz")
    extra.write_text(json.dumps({"settings": {"data": "fashion-10", "fit": {"width_mult": 0.5}}, "runs": []}))
    with pytest.raises(SnnasError, match="not trained at the table's fidelity: width_mult 0.5 \\(table: 0.25\\)"):
        proxy_fidelity.truth_table(base, [extra], None)
    # another T (bench/fulltrain.py --timesteps 2) is another truth: refused, not joined
    extra.write_text(json.dumps({"settings": {"data": "fashion-10", "fit": {"width_mult": 0.25, "timesteps": [2],
                                                                          "seed": 0}}, "runs": []}))
    with pytest.raises(SnnasError, match="timesteps \\[2\\] \\(table: None\\)"):
        proxy_fidelity.truth_table(base, [extra], None)
    extra.write_text(json.dumps({"settings": {"data": "fashion-2", "fit": {"width_mult": 0.25}}, "runs": []}))
    with pytest.raises(SnnasError, match="trained on fashion-2, not the table's fashion-10"):
        proxy_fidelity.truth_table(base, [extra], None)


def test_proxy_energy_against_full_training_energy(tmp_path):
    import proxy_fidelity

    runs = [{"key": k, "seed": 0, "test_acc": .8, "energy_mj": e} for k, e in zip("abcd", (4.0, 3.0, 2.0, 1.0))]
    table = Table({"data": "fashion-10"}, tuple(runs))
    got = proxy_fidelity.energy_agreement({"a": 2.0, "b": 1.5, "c": 0.5, "d": 1.0}, table)
    assert got["networks"] == 4 and got["tau"] == pytest.approx(4 / 6)
    assert got["ratio_median"] == pytest.approx(0.5) and got["ratio_min"] == .25 and got["ratio_max"] == 1.0
    assert proxy_fidelity.energy_agreement({"a": 2.0, "b": 1.0, "c": 1.0}, table) is None  # too few to rank


def test_proxy_sweep_summary_against_a_hand_made_table(tmp_path):
    import proxy_fidelity

    table = Table.read(hand_table(tmp_path, {"a": [.90, .89], "b": [.86, .85], "c": [.80, .81], "d": [.12, .11]}))
    setting = proxy_fidelity.SETTINGS["5s-f5"]
    runs = [{"setting": setting.name, "key": k, "seed": s, "val_acc": v, "wall_s": 2.0, "depth": "18", "classes": 5}
            for s, scores in enumerate([{"a": .8, "b": .7, "c": .21, "d": .2}, {"a": .7, "b": .8, "c": .22, "d": .2}])
            for k, v in scores.items()]
    got = proxy_fidelity.summarize(setting, runs, table)
    assert got["seeds"] == [0, 1] and got["top3_recall"] == 1.0
    assert got["tau"] == pytest.approx(kendall_tau({"a": .75, "b": .75, "c": .215, "d": .2}, table.mean_acc()))
    assert got["proxy_seed_tau"] == pytest.approx(kendall_tau(
        {"a": .8, "b": .7, "c": .21, "d": .2}, {"a": .7, "b": .8, "c": .22, "d": .2}))
    assert got["at_chance_but_learns"] == ["c"]  # d is at chance in the table too
    assert proxy_fidelity.summarize(setting, runs[:3], table) is None  # no seed covers every network

    # networks joined after the sweep ran: what it measured is read against those networks' truth only
    bigger = Table.read(hand_table(tmp_path, {"a": [.90, .89], "b": [.86, .85], "c": [.80, .81], "d": [.12, .11],
                                              "e": [.95, .94]}))
    assert proxy_fidelity.summarize(setting, runs, bigger) is None  # e never measured: no complete seed
    part = proxy_fidelity.measured_part(setting, runs, bigger)
    assert set(part.mean_acc()) == {"a", "b", "c", "d"}
    assert proxy_fidelity.summarize(setting, runs, part)["tau"] == pytest.approx(got["tau"])
    late = [{**runs[0], "key": "e", "val_acc": .1}]  # at one of the two seeds only: not a network it has
    assert set(proxy_fidelity.measured_part(setting, runs + late, bigger).mean_acc()) == {"a", "b", "c", "d"}
    assert proxy_fidelity.measured_part(setting, [r for r in runs if r["key"] != "d"], bigger) is None  # 3 < 4


# ---------------------------------------------------------------- bench/groundtruth.py end to end
needs_fashion = pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")
TINY = ["--data", "fashion-2", "--resolution", "16", "--train-per-class", "40", "--val-per-class", "8",
        "--epochs", "2", "--width-mult", "0.0625", "--seeds", "0,1", "--depths", "18", "--blocks", "sew,origin",
        "--threads", "1"]


def _bench(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "groundtruth.py"), *TINY, "--out", str(tmp_path / "gt.json"),
            "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"), *extra]


def _runs(path: Path) -> list[dict]:
    return json.loads(path.read_text())["runs"] if path.exists() else []


@needs_fashion
@pytest.mark.slow
def test_groundtruth_resumes_after_a_kill_and_its_commands_reproduce_the_rows(tmp_path, one_thread):
    out = tmp_path / "gt.json"
    proc = subprocess.Popen(_bench(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not _runs(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {(r["key"], r["seed"]): r for r in _runs(out)}
    assert before, "the table wrote no finished run before it was killed"

    done = subprocess.run(_bench(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = _runs(out)
    ids = [(r["key"], r["seed"]) for r in after]
    assert len(ids) == len(set(ids)) == 6  # 3 canonical networks (sew dense_add folds into its chain) x 2 seeds
    assert all(r == next(a for a in after if (a["key"], a["seed"]) == k) for k, r in before.items())
    assert "mean seed-to-seed tau" in done.stdout and "| rank | network |" in done.stdout
    for r in after:
        assert len(r["val_curve"]) == 2 and r["params"] > 0 and r["sops"] > 0 and r["wall_s"] >= 0
        assert r["command"].startswith("python scripts/retrain.py --genotype")

    row = after[0]  # its command, run through retrain, trains the same network to the same test accuracy
    argv = shlex.split(row["command"])[2:] + ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "re"),
                                               "--no-progress"]
    assert retrain.main(argv) == 0
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert summary["key"] == row["key"] and summary["test_acc"] == row["test_acc"]


@needs_fashion
@pytest.mark.slow
def test_two_groundtruth_processes_share_the_work_without_repeating_a_run(tmp_path):
    procs = [subprocess.Popen(_bench(tmp_path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outputs]
    trained = [line for out, _ in outputs for line in out.splitlines() if line.startswith("training ")]
    ids = [(r["key"], r["seed"]) for r in _runs(tmp_path / "gt.json")]
    assert len(trained) == len(ids) == len(set(ids)) == 6


@needs_fashion
def test_groundtruth_refuses_a_results_file_with_other_settings(tmp_path):
    out = tmp_path / "gt.json"
    out.write_text(json.dumps({"format": "snnas-groundtruth/1", "settings": {"data": "fashion-10"}, "runs": []}))
    done = subprocess.run(_bench(tmp_path, "--report-only"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "other settings" in done.stderr and json.loads(out.read_text())["settings"] == {"data": "fashion-10"}
