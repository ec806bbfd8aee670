"""bench/search_replay.py on hand-made recordings where the answer is known, and
bench/search_outcome.py end to end on tiny networks and data (the plumbing, not the figures)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from snnas.data import FASHION_DEFAULT_DIR
from snnas.fit import FitSettings, built_genotype
from snnas.spaces import load_space
from search_helpers import tiny_space

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def _uniform_keys() -> list[str]:
    space = load_space("uniform", resolution=28)
    keys = []
    for _, g in space.uniform():
        key = built_genotype(g, FitSettings(recipe="short", epochs=(5,)), 28).key
        if key not in keys:
            keys.append(key)
    return keys


def _recordings(tmp_path: Path, truth: dict[str, float], phase1: dict[str, float], phase2: dict[str, float]):
    table = {"settings": {"data": "fashion-10", "data_seed": 0, "resolution": 28,
                          "fit": {"recipe": "short", "epochs": [5], "width_mult": 0.25}},
             "runs": [{"key": k, "genotype": "", "seed": s, "test_acc": v + 0.001 * s, "wall_s": 100.0, "sops": 1.0}
                      for k, v in truth.items() for s in (0, 1)]}
    sweep = {"runs": [{"setting": name, "key": k, "seed": s, "wall_s": 10.0 if name == "p1" else 30.0,
                       "val_curve": [v * 0.8, v * 0.9, v]}
                      for name, scores in (("p1", phase1), ("p2", phase2)) for k, v in scores.items() for s in (0, 1)]}
    (tmp_path / "table.json").write_text(json.dumps(table))
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))


def _replay(tmp_path: Path) -> dict[str, dict]:
    import search_replay

    out = tmp_path / "replay.json"
    assert search_replay.main(["--table", str(tmp_path / "table.json"), "--sweep", str(tmp_path / "sweep.json"),
                               "--phase1", "p1", "--phase2", "p2", "--reps", "6", "--trials", "40",
                               "--out", str(out)]) == 0
    assert out.with_suffix(".png").is_file()
    return {r["strategy"]: r for r in json.loads(out.read_text())["strategies"]}


def test_replay_finds_the_best_when_the_proxy_ranks_perfectly(tmp_path):
    keys = _uniform_keys()
    truth = {k: 0.9 - 0.01 * i for i, k in enumerate(keys)}
    _recordings(tmp_path, truth, truth, truth)
    rows = _replay(tmp_path)
    for name, row in rows.items():
        assert row["found_share"] >= 0.8, (name, row)
        assert row["compute_spent_median"] < 18  # never more than training all 18 once


def test_replay_credits_the_funnel_when_only_phase_2_ranks_right(tmp_path):
    keys = _uniform_keys()
    truth = {k: 0.9 - 0.01 * i for i, k in enumerate(keys)}
    misleading = dict(truth)
    misleading[keys[0]], misleading[keys[1]] = truth[keys[1]], truth[keys[0]]  # phase 1 swaps the top two
    _recordings(tmp_path, truth, misleading, truth)
    rows = _replay(tmp_path)
    assert rows["tpe"]["found_share"] == 0  # it trusts phase 1 (random only finds it by missing the decoy)
    assert rows["funnel K=3, eta=3"]["found_share"] >= 0.8 > rows["random"]["found_share"]  # phase 2 decides
    assert rows["funnel K=3, eta=3"]["within_noise_within_budget_share"] >= 0.8


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_search_outcome_runs_end_to_end_on_tiny_networks(tmp_path):
    cache = tmp_path / "cache"
    table = tmp_path / "groundtruth_fashion2.json"
    gt = [sys.executable, "bench/groundtruth.py", "--data", "fashion-2", "--resolution", "16", "--train-per-class", "32",
          "--val-per-class", "8", "--epochs", "1", "--width-mult", "0.0625", "--seeds", "0,1", "--depths", "18",
          "--blocks", "pa_a,origin", "--out", str(table), "--work", str(tmp_path / "gt"), "--cache-dir", str(cache),
          "--threads", "1"]
    assert subprocess.run(gt, cwd=ROOT, capture_output=True, timeout=600).returncode == 0
    out = tmp_path / "outcome.json"
    for mode in ("acc", "acc,sops"):  # one mode at a time: the second run keeps what the first found
        cmd = [sys.executable, "bench/search_outcome.py", "--table", str(table), "--trials", "13", "--promote", "1",
               "--pareto-max", "2", "--work", str(tmp_path / "oc"), "--out", str(out), "--threads", "1",
               "--objectives", mode, "--",
               "--data", "fashion-2", "--resolution", "16", "--train-per-class", "16", "--train-per-class2", "16",
               "--val-per-class", "8", "--width-mult", "0.0625", "--epochs", "1", "--epochs2", "1", "--batch-size",
               "16", "--cache-dir", str(cache), "--no-report"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert {d["name"] for d in doc["danets"]} == {"danet_a_resnet18", "danet_c_resnet18"}
    assert {f["mode"] for f in doc["found"]} == {"acc", "acc,sops"} and set(doc["search"]) == {"acc", "acc,sops"}
    for f in doc["found"]:  # every found network trained at the table's fidelity with the table's seeds
        assert f["seeds"] == [0, 1] and 0 <= f["test_acc_mean"] <= 1 and f["sops"] > 0
        assert set(f) >= {"key", "genotype", "seeds", "test_acc_mean", "test_acc_spread", "sops"}
    assert out.with_suffix(".png").is_file() and "| network | found by |" in done.stdout
    # the studies were copied beside the results as they ran, with their phase-1 trials summarized
    for mode in ("acc", "acc-sops"):
        summary = json.loads(out.with_name(f"outcome.{mode}.phase1.json").read_text())
        assert summary["completed"] == len(summary["trials"]) >= 2 and summary["trials_budget"] == 13
        assert all(r["val_acc"] is not None and r["genotype"] for r in summary["trials"])
    assert set(json.loads(out.with_name("outcome.acc-sops.phase1.json").read_text())["front_keys"]) \
        <= {r["key"] for r in summary["trials"]}
    copy = out.with_name("outcome.acc-sops.study.db")  # one file to commit: no WAL beside it, none to come
    assert not list(tmp_path.glob("outcome.*.study.db-*")), sorted(p.name for p in tmp_path.iterdir())
    db = sqlite3.connect(copy)
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    assert mode == "delete"
    # a machine without the study (a new session) continues from the copy: nothing is trained again
    shutil.rmtree(tmp_path / "oc" / "search")
    before = out.read_text()
    again = subprocess.run(cmd[:cmd.index("--objectives") + 1] + ["acc,sops"] + cmd[cmd.index("--objectives") + 2:],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "continuing from" in again.stdout and "seed 0: test" not in again.stdout
    assert json.loads(out.read_text())["found"] == json.loads(before)["found"]


def test_search_workers_bench_compares_configurations_on_the_same_networks(tmp_path):
    out = tmp_path / "workers.json"
    cmd = [sys.executable, "bench/search_workers.py", "--configs", "1x1", "2x1", "--trials", "3", "--data",
           "fashion-2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--",
           "--resolution", "16", "--train-per-class", "16", "--val-per-class", "8", "--width-mult", "0.0625",
           "--epochs", "1", "--batch-size", "16"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert sorted((r["workers"], r["threads"]) for r in runs) == [(1, 1), (2, 1)]
    assert all(r["trials"] == 3 and r["trials_per_hour"] > 0 for r in runs)
    assert runs[0]["networks"] == runs[1]["networks"]  # the same seed networks in both
    assert "| 2 x 1 |" in done.stdout and "same networks in every configuration: yes" in done.stdout
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)  # resumes: nothing to run
    assert again.returncode == 0 and "trials/h (" not in again.stdout.split("|")[0]


def test_a_study_copy_cut_short_leaves_no_part_file(tmp_path):
    import search_outcome

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "study.db").write_bytes(b"not a database, a copy of it fails")
    copy = tmp_path / "results" / "study.db"
    copy.parent.mkdir()
    snapshots = search_outcome.StudySnapshots(SimpleNamespace(run_dir=run_dir), copy, tmp_path / "p1.json", every=0)
    with pytest.raises(sqlite3.DatabaseError):
        snapshots.take()
    assert list(copy.parent.iterdir()) == []


def test_sampler_bench_shares_the_seed_trials_of_an_earlier_study(tmp_path):
    """``--seeds-from``: every search of the comparison starts from the same finished seed trials,
    which the search then does not queue again; an interrupted seed is not copied."""
    import efficient_sampler
    import optuna

    from snnas.search.attrs import TrialAttrs
    from snnas.search.funnel import enqueue_seeds
    from snnas.study.locks import study_lock

    args, rest = efficient_sampler.parse_args(["--work", str(tmp_path / "work")])
    options = efficient_sampler.search_options(args, "random", 1, rest)
    space = load_space("efficient", resolution=28)
    seeds = space.seeds()

    def dists(params):  # the space's own choices, as a search records them
        return {k: optuna.distributions.CategoricalDistribution(list(space.context.genes[k.split(".")[-1]]))
                for k in params}

    source = tmp_path / "earlier.db"
    url = f"sqlite:///{source}"
    origin = optuna.create_study(study_name="earlier", storage=url, directions=["maximize", "minimize"])
    optuna.create_study(study_name="earlier.phase2", storage=url)
    options.study_attrs(space.name, space.source).write(origin)
    for i, (preset, params) in enumerate(seeds[:3]):
        state = optuna.trial.TrialState.FAIL if i == 2 else optuna.trial.TrialState.COMPLETE
        origin.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists(params), values=[[0.8, 0.001], [0.7, 0.002]][i] if i < 2 else None,
            state=state, user_attrs={"seed_preset": preset, "key": f"k{i}", "model_artifact": "elsewhere"},
            system_attrs={"fixed_params": params}))
    sampled = seeds[3][1]
    origin.add_trial(optuna.trial.create_trial(params=sampled, distributions=dists(sampled), values=[0.5, 0.002],
                                               user_attrs={"key": "k3"}))

    assert efficient_sampler.copy_seed_trials(source, options, "random") == 2
    study = optuna.load_study(study_name=options.study_name, storage=f"sqlite:///{options.run_dir / 'study.db'}")
    copied = study.get_trials(deepcopy=False)
    assert [t.values for t in copied] == [[0.8, 0.001], [0.7, 0.002]]
    assert [TrialAttrs.of(t).seed_preset for t in copied] == [seeds[0][0], seeds[1][0]]
    assert all("model_artifact" not in t.user_attrs for t in copied)
    assert study.user_attrs["fidelity_phase1"] == origin.user_attrs["fidelity_phase1"]
    assert study.user_attrs["sampler"] == "random"
    # the search queues only the seeds it does not hold yet, and a resumed repetition copies nothing
    assert enqueue_seeds(study, space, study_lock(study._storage, study.study_name), 30) == len(seeds) - 2
    assert efficient_sampler.copy_seed_trials(source, options, "random") == 0
    with pytest.raises(Exception, match="no such file"):
        efficient_sampler.copy_seed_trials(tmp_path / "missing.db", options, "random")


@pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")
@pytest.mark.parametrize("seeds, promoted", [
    ('"danet_b_resnet18"', True),   # the search promoted DANet-B-18: its phase-2 trial is the reference
    ('"danet_a_resnet18"', False),  # it did not: the bench trains DANet-B-18 at phase 2's fidelity itself
])
def test_sampler_bench_runs_both_phases_and_reads_danet_b_from_the_study_when_it_was_promoted(
        tmp_path, monkeypatch, seeds, promoted):
    import efficient_sampler
    import optuna

    from snnas.search.attrs import TrialAttrs

    space = tmp_path / "tiny.toml"
    space.write_text(tiny_space(("pa_a", "pa_b", "origin")).replace('"danet_a_resnet18"', seeds))
    if promoted:  # a second training of it would be waste: fail if the bench starts one

        def retrained(*_args, **_kwargs):
            raise AssertionError("DANet-B-18 trained again although the phase-2 study holds it")
        monkeypatch.setattr(efficient_sampler, "GenotypeFit", retrained)
    monkeypatch.setenv("SNNAS_CACHE", str(tmp_path / "default-cache"))  # the bench must use --cache-dir
    out = tmp_path / "sampler.json"
    argv = ["--space", str(space), "--samplers", "random", "--repeats", "1", "--trials", "1", "--promote", "1",
            "--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1", "--",
            "--data", "fashion-2", "--resolution", "16", "--train-per-class", "16", "--train-per-class2", "16",
            "--val-per-class", "8", "--width-mult", "0.0625", "--epochs", "1", "--epochs2", "1", "--batch-size", "16",
            "--cache-dir", str(tmp_path / "cache"), "--no-report"]
    assert efficient_sampler.main(argv) == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["networks"] == 1 and run["sampled"] == 0 and run["hypervolume"] >= 0
    ref = run["danet_b_phase2"]
    assert 0 <= ref["acc"] <= 1 and ref["energy_mj"] > 0
    assert len(run["phase2"]) == 1
    study = optuna.load_study(study_name="tiny-random-r0.phase2",  # named after the space file's stem
                              storage=f"sqlite:///{tmp_path / 'work' / 'tiny-random-r0' / 'study.db'}")
    presets = {TrialAttrs.of(t).seed_preset: TrialAttrs.of(t).key for t in study.get_trials(deepcopy=False)}
    assert ("danet_b_resnet18" in presets) is promoted
    if promoted:
        held = [n for n in run["phase2"] if n["key"] == presets["danet_b_resnet18"]]
        assert held and (held[0]["acc"], held[0]["energy_mj"]) == (ref["acc"], ref["energy_mj"])
    dominating = [n for n in run["phase2"] if n["acc"] >= ref["acc"] and n["energy_mj"] <= ref["energy_mj"]
                  and (n["acc"] > ref["acc"] or n["energy_mj"] < ref["energy_mj"])]
    assert run["dominate_danet_b"] == len(dominating)
    assert not (tmp_path / "default-cache").exists()  # every split, the reference's and chance's too, in --cache-dir
