"""The efficient space and energy as an objective: fronts, hypervolume promotion, space sizes."""
import argparse
import contextlib
import itertools
import json
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from snnas.cli.search import add_arguments, options_from
from snnas.genotype import Genotype
from snnas.search.attrs import TrialAttrs
from snnas.search.funnel import promote, promoted_trials
from snnas.search.leaderboard import summarize
from snnas.search.pareto import Point, front, hypervolume, select_by_hypervolume
from snnas.spaces import load_space
from snnas.spaces.size import space_size

OBJ = ("acc", "energy")


def _points(*pairs):
    return [Point(f"n{i}", (acc, energy)) for i, (acc, energy) in enumerate(pairs)]


def test_front_keeps_only_the_undominated():
    pts = _points((0.9, 1.0), (0.8, 0.5), (0.85, 1.2), (0.7, 0.5), (0.6, 0.2))
    assert [p.key for p in front(pts, OBJ)] == ["n0", "n1", "n4"]  # n2 (worse than n0) and n3 (than n1) go


def test_hypervolume_by_hand():
    pts = _points((0.9, 1.0), (0.8, 0.5))
    # reference (acc 0.1, energy 2): rectangles (0.9-0.1)*(2-1) + (0.8-0.1)*(1-0.5)
    assert hypervolume(pts, OBJ, (0.1, 2.0)) == pytest.approx(0.8 * 1.0 + 0.7 * 0.5)
    assert hypervolume(_points((0.05, 1.0)), OBJ, (0.1, 2.0)) == 0.0  # worse than chance adds nothing


def test_selection_by_hypervolume_spreads_over_the_front():
    # the three most accurate networks crowd at high energy; the cheap end of the front is worth more
    pts = _points((0.90, 10.0), (0.895, 9.5), (0.89, 9.0), (0.80, 1.0), (0.60, 0.5))
    ref = (0.1, 11.0)
    chosen = select_by_hypervolume(pts, OBJ, 3, ref)
    best = max(itertools.combinations(front(pts, OBJ), 3), key=lambda c: hypervolume(c, OBJ, ref))
    # n2 adds more volume than the most accurate n0 (0.09 x 2 against 0.1 x 1): accuracy alone picks n0-n2
    assert {p.key for p in chosen} == {p.key for p in best} == {"n2", "n3", "n4"}
    assert [p.key for p in chosen] == ["n2", "n3", "n4"]  # most accurate first
    assert len(select_by_hypervolume(pts, OBJ, 10, ref)) == 5  # a small front goes whole


def _study_with(values):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, (acc, energy) in enumerate(values):
        study.add_trial(optuna.trial.create_trial(values=[acc, energy], user_attrs={
            "key": f"k{i}", "canonical": f"genotype-{i}", "energy_mj": energy}))
    return study


def test_a_multi_objective_search_promotes_by_hypervolume_not_accuracy():
    study = _study_with([(0.90, 10.0), (0.895, 9.5), (0.89, 9.0), (0.80, 1.0), (0.60, 0.5), (0.5, 11.0)])  # reference energy: 11
    by_hv = promoted_trials(study, 3, OBJ, chance=0.1)
    assert [TrialAttrs.of(t).key for t in by_hv] == ["k2", "k3", "k4"]
    by_acc = promoted_trials(study, 3, ("acc",))
    assert [TrialAttrs.of(t).key for t in by_acc] == ["k0", "k1", "k2"]
    phase2 = optuna.create_study(direction="maximize")
    promote(study, phase2, 3, contextlib.nullcontext(), OBJ, chance=0.1)
    assert sorted(t.user_attrs["promoted_key"] for t in phase2.trials) == ["k2", "k3", "k4"]


@pytest.mark.parametrize("name, points, networks", [
    ("uniform", 24, 18),  # 6 blocks x 2 wirings x 2 depths; sew/pa_a/pa_b dense_add are their chains
    ("dense_additive", 2 * 12 ** 4, 2 * 9 ** 4),  # per stage 6 x 2, of which 9 differ
    # per stage 6 blocks x 2 wirings x 5 depths x 4 widths = 240; distinct: identity blocks 3 x 5 x 4,
    # the others 3 x (5 x 2 - 1) x 4 (a one-block dense_add is its chain) = 168; x 3 neurons
    ("efficient", 3 * 240 ** 4, 3 * 168 ** 4),
])
def test_space_sizes(name, points, networks):
    size = space_size(load_space(name, resolution=28))
    assert (size.points, size.networks) == (points, networks)


def test_show_space_prints_its_size():
    # the efficient space's figures are checked above in-process; the command is checked on a small space
    out = subprocess.run([sys.executable, "-m", "snnas", "show", "--space", "uniform", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert (info["points"], info["networks"]) == (24, 18) and len(info["seeds"]) == 12
    text = subprocess.run([sys.executable, "-m", "snnas", "show", "--space", "uniform"],
                          capture_output=True, text=True, timeout=120).stdout
    assert "24 points, 18 distinct networks (25.0% fold" in text
    assert info["objectives"] == ["acc"] and "objectives acc (a search's default" in text


@pytest.mark.parametrize("argv, objectives", [(["--space", "efficient"], ("acc", "energy")),
                                              (["--space", "efficient", "--objectives", "acc"], ("acc",)),
                                              (["--space", "dense_additive"], ("acc",)),
                                              (["--space", "dense_additive", "--objectives", "acc,sops"], ("acc", "sops"))])
def test_a_search_optimizes_the_space_s_objectives_unless_told(argv, objectives):
    """`make search SPACE=efficient` trades accuracy against energy without another flag."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from(parser.parse_args(argv)).objectives == objectives


def test_efficient_space_narrows_the_stem_with_stage_one():
    space = load_space("efficient", resolution=28)
    g = space.suggest(optuna.trial.FixedTrial({"neuron": "if", **{
        f"s{i}.{k}": v for i in range(4) for k, v in
        (("block", "pa_b"), ("blocks", "1"), ("connect", "chain"), ("width_mult", "0.5"))}}))
    assert [s.width for s in g.stages] == [32, 64, 128, 256] and g.stem_width == 32
    assert [s.depth for s in g.stages] == [1, 1, 1, 1]
    assert summarize(g) == "w32-64-128-256 1-1-1-1 pa_b x4"
    assert space.encode(g) is not None
    resnet_widths = ("if|half64|basic.pa_b.64x1.s1.chain|basic.pa_b.128x1.s2.chain|basic.pa_b.256x1.s2.chain|"
                     "basic.pa_b.512x1.s2.chain")
    assert summarize(Genotype.from_str(resnet_widths)) == "1-1-1-1 pa_b x4"  # a ResNet's own widths go unsaid


TINY_EFFICIENT = """
name = "tiny_efficient"
builder = "sized_stages"
[fixed]
stem = "small"
[genes]
neuron = ["if"]
block = ["pa_b", "sew"]
connect = ["chain"]
blocks = ["1", "2"]
width_mult = ["0.5", "1"]
per_stage = ["blocks", "width_mult"]
[seeds]
presets = ["danet_b_resnet18"]
"""


def test_a_search_with_energy_as_objective_promotes_its_front(tmp_path):
    space = tmp_path / "tiny_efficient.toml"
    space.write_text(TINY_EFFICIENT)
    out = tmp_path / "runs"
    cmd = [sys.executable, "scripts/search.py", "--space", str(space), "--objectives", "acc,energy", "--trials", "4",
           "--promote", "2", "--out", str(out), "--data", "fashion-2", "--train-per-class", "16",
           "--train-per-class2", "16", "--val-per-class", "8", "--resolution", "16", "--width-mult", "0.0625",
           "--epochs", "1", "--epochs2", "1", "--batch-size", "16", "--no-progress", "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    storage = f"sqlite:///{out / 'tiny_efficient' / 'study.db'}"
    phase1 = optuna.load_study(study_name="tiny_efficient", storage=storage)
    phase2 = optuna.load_study(study_name="tiny_efficient.phase2", storage=storage)
    done = [t for t in phase1.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    for t in done:
        attrs = TrialAttrs.of(t)
        assert t.values[1] == pytest.approx(attrs.energy_mj) and attrs.energy_mj > 0
        assert attrs.latency_ms > 0 and attrs.latency_threads == 1
    networks = [t for t in promoted_trials(phase1, 2, OBJ, chance=0.5)]
    promoted = {t.user_attrs["promoted_key"] for t in phase2.trials}
    assert promoted == {TrialAttrs.of(t).key for t in networks}
    pareto = {p.key for p in front([Point(TrialAttrs.of(t).key, tuple(t.values)) for t in done], OBJ)}
    assert promoted <= pareto
    run = out / "tiny_efficient"
    for plot in ("pareto_energy.png", "pareto_energy_phase2.png"):  # the accuracy-energy front of each phase
        assert (run / "plots" / plot).stat().st_size > 0
    report = (run / "report.md").read_text()
    board = [line for line in report.splitlines() if line.startswith("| ") and "`" in line]
    on_front = [line for line in board if line.rstrip().split("|")[-3].strip() == "yes"]
    assert on_front
    danet_b = next(line for line in board if "danet_b_resnet18" in line)
    assert danet_b.split("|")[-4].strip() == "1.00"  # energies as multiples of DANet-B-18's (a seed here)
