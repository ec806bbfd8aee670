import subprocess
import sys

import optuna
import pytest

from snnas import get_preset
from snnas.errors import SpaceError
from snnas.search.funnel import enqueue_seeds
from snnas.study.locks import LocalLock
from snnas.spaces import list_spaces, load_space
from snnas.spaces.builders import BUILDERS, register_builder

SPACES = list_spaces()


def test_the_three_spaces_ship():
    assert {"dense_additive", "dense_ops", "wiring"} <= set(SPACES)


@pytest.mark.parametrize("name", SPACES)
def test_space_samples_50_valid_genotypes(name):
    space = load_space(name, resolution=28)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    keys = set()
    for _ in range(50):
        trial = study.ask()
        g = space.suggest(trial)  # a GenotypeError here would fail the test
        assert g.stem == "half"  # the one stem policy on 28 px images
        params = space.encode(g)
        assert params is not None, f"{g.to_str()} cannot be encoded back"
        again = space.suggest(optuna.trial.FixedTrial(params))
        assert again.canonical() == g.canonical()
        keys.add(g.canonical().key)
        study.tell(trial, 0.0)
    whole = {g.canonical().key for _, g in space.uniform()}
    if keys <= whole:  # a space without per-stage genes (uniform): its few networks, most of them drawn
        assert len(keys) >= 2 * len(whole) // 3
    else:
        assert len(keys) >= 20  # the space really varies


@pytest.mark.parametrize("name", SPACES)
def test_fresh_study_starts_with_the_seeds_in_order(name):
    space = load_space(name, resolution=28)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seeds = space.seeds()
    assert enqueue_seeds(study, space, LocalLock()) == len(seeds)
    assert enqueue_seeds(study, space, LocalLock()) == 0  # idempotent
    for preset, params in seeds:
        trial = study.ask()
        g = space.suggest(trial)
        expected = get_preset(preset).replace(stem="half", neuron=space.context.neuron)
        assert g.canonical() == expected.canonical(), preset
        assert trial.user_attrs["seed_preset"] == preset
        study.tell(trial, 0.0)


def test_dense_additive_seeds_are_the_papers_networks():
    space = load_space("dense_additive", resolution=224)
    names = [n for n, _ in space.seeds()]
    assert names[:4] == ["danet_a_resnet18", "danet_b_resnet18", "danet_c_resnet18", "danet_d_resnet18"]
    assert space.context.stem == "imagenet"


BROKEN = {
    "unknown top key": ('name = "x"\nbuilder = "resnet_stages"\ncolour = 3\n', "colour"),
    "not toml": ("name = \n", "not valid TOML"),
    "unknown builder": ('builder = "nope"\n[genes]\ndepth = ["18"]\n', "builder"),
    "unknown gene": ('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["origin"]\nconnect = ["chain"]\nwidth = ["8"]\n',
                     "genes.width"),
    "bad choice": ('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["resnext"]\nconnect = ["chain"]\n',
                   "resnext"),
    "missing gene": ('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["origin"]\n', "genes.connect"),
    "bad fixed": ('builder = "resnet_stages"\n[fixed]\nneuron = "hh"\n[genes]\ndepth = ["18"]\nblock = ["origin"]\n'
                  'connect = ["chain"]\n', "neuron"),
    "unknown seed": ('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["origin"]\nconnect = ["chain"]\n'
                     '[seeds]\npresets = ["resnet9000"]\n', "resnet9000"),
    "seed outside the space": ('builder = "resnet_stages"\n[genes]\ndepth = ["18"]\nblock = ["origin"]\n'
                               'connect = ["chain"]\n[seeds]\npresets = ["sew_resnet18"]\n', "sew_resnet18"),
    "empty choices": ('builder = "resnet_stages"\n[genes]\ndepth = []\nblock = ["origin"]\nconnect = ["chain"]\n',
                      "genes.depth"),
    **{f"objectives {bad}": (f'builder = "resnet_stages"\nobjectives = {bad}\n[genes]\ndepth = ["18"]\n'
                             'block = ["origin"]\nconnect = ["chain"]\n', "objectives")
       for bad in ('["energy"]', '["acc", "watts"]', '"acc"', '["acc", "energy", "energy"]', '[]')},
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_space_files_name_the_problem(tmp_path, case):
    text, fragment = BROKEN[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_space_name():
    with pytest.raises(SpaceError, match="known spaces"):
        load_space("no_such_space")


def test_broken_space_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('builder = "resnet_stages"\n[genes]\ndepth = ["7"]\nblock = ["origin"]\nconnect = ["chain"]\n')
    proc = subprocess.run([sys.executable, "scripts/search.py", "--space", str(path), "--data", "fashion-2",
                           "--train-per-class", "5", "--val-per-class", "5", "--cache-dir", str(tmp_path / "cache"),
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("snnas: error: space file") and "genes.depth" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_registering_a_builder_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_builder("resnet_stages", BUILDERS["resnet_stages"])
