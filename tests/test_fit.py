"""The one training path: a search trial and `retrain` train the same weights; settings and keys."""
from __future__ import annotations

import optuna
import pytest
import torch

from snnas import load_model
from snnas.cli import retrain
from snnas.data import FASHION_DEFAULT_DIR, load_splits
from snnas.errors import SnnasError
from snnas.fit import FitSettings, GenotypeFit, built_genotype
from snnas.presets import get_preset
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity
from snnas.search.objective import MODEL_FILE, SearchObjective
from snnas.spaces import load_space

pytestmark = [pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed"),
              pytest.mark.usefixtures("one_thread")]

AUTO_SPACE = """
name = "tiny_auto"
builder = "resnet_stages"
[fixed]
stem = "auto"
[genes]
depth = ["18"]
block = ["origin", "pa_a"]
connect = ["chain", "dense_add"]
"""
DATA = dict(resolution=16, train_per_class=24, val_per_class=8)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _retrain_argv(genotype: str, seed: int, out, cache_dir) -> list[str]:
    return ["--genotype", genotype, "--data", "fashion-2", "--resolution", "16", "--train-per-class", "24",
            "--val-per-class", "8", "--recipe", "short", "--epochs", "2", "--timesteps", "1", "--width-mult", "0.0625",
            "--batch-size", "16", "--seed", str(seed), "--cache-dir", str(cache_dir), "--out", str(out), "--no-progress"]


def _state(path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_search_objective_and_retrain_train_identical_weights(tmp_path, cache_dir):
    space_file = tmp_path / "tiny_auto.toml"
    space_file.write_text(AUTO_SPACE)
    splits = load_splits("fashion-2", cache_dir=cache_dir, **DATA)
    fit = FitSettings(recipe="short", epochs=(2,), timesteps=(1,), width_mult=0.0625, batch_size=16, seed=3)
    fid = Fidelity(phase="phase1", data="fashion-2", fit=fit, **DATA)
    objective = SearchObjective(load_space(str(space_file), resolution=16), fid, splits, tmp_path / "run",
                                Dedupe(optuna.create_study(direction="maximize")))
    trial = optuna.trial.FixedTrial({"depth": "18", "block": "origin", "connect": "dense_add"})
    objective(trial)
    searched = trial.user_attrs["canonical"]
    assert searched.startswith("if|half64|")  # the space's `auto` stem is the one stem policy

    assert retrain.main(_retrain_argv(searched, 3, tmp_path / "same", cache_dir)) == 0
    ours, theirs = _state(objective.work_dir(trial.user_attrs["key"], trial.number) / MODEL_FILE), _state(tmp_path / "same" / "model.pt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "a search trial and retrain trained different weights"

    # The preset's own (ImageNet-stem) genotype resolves to the same network under retrain's --stem auto.
    assert retrain.main(_retrain_argv("danet_c_resnet18", 3, tmp_path / "preset", cache_dir)) == 0
    preset = _state(tmp_path / "preset" / "model.pt")
    assert all(torch.equal(ours[k], preset[k]) for k in ours)

    # ... and another seed does not, so the comparison above can fail.
    assert retrain.main(_retrain_argv(searched, 4, tmp_path / "other", cache_dir)) == 0
    other = _state(tmp_path / "other" / "model.pt")
    assert not all(torch.equal(ours[k], other[k]) for k in ours)


def test_built_genotype_folds_equivalents_and_resolves_the_stem():
    settings = FitSettings()
    chain = get_preset("sew_resnet18")
    folded = chain.replace(stages=tuple(s.__class__(**{**s.__dict__, "connect": "dense_add"}) for s in chain.stages))
    assert built_genotype(folded, settings, 28) == built_genotype(chain, settings, 28)
    assert built_genotype(chain, settings, 28).stem == "half"
    assert built_genotype(chain, settings, 224).stem == "imagenet"
    assert built_genotype(chain, settings.replace(stem="small"), 28).stem == "small"


@pytest.mark.parametrize("change", [dict(recipe="proxy"), dict(epochs=(3,)), dict(timesteps=(1, 2)),
                                    dict(width_mult=0.5), dict(stem="small"), dict(seed=1), dict(batch_size=32),
                                    dict(lr_per_256=0.8), dict(warmup_epochs=0.2), dict(augment="crop_flip"),
                                    dict(aux_heads=True)])
def test_every_setting_that_changes_the_numbers_changes_the_key(change):
    base = FitSettings(recipe="short", epochs=(2,), timesteps=(1,))
    assert base.replace(**change).key != base.key
    assert FitSettings.from_dict(base.replace(**change).to_dict()) == base.replace(**change)


def test_settings_plan_the_phases_with_their_overrides():
    phases = FitSettings(recipe="short", epochs=(3,), timesteps=(1, 4), batch_size=32, lr_per_256=0.8,
                         warmup_epochs=0.25, seed=7).phases()
    assert [p.timesteps for p in phases] == [1, 4]
    first, second = phases[0].config, phases[1].config
    assert first.epochs == 3 and first.batch_size == 32 and first.lr_per_256 == 0.8 and first.seed == 7
    assert first.warmup_epochs == 0.25 and second.warmup_epochs != 0.25  # the warm-up override is phase 1's
    assert FitSettings(recipe="paper-subset").phases()[0].timesteps == 4  # no T given: the recipe's


@pytest.mark.parametrize("change, needle", [
    (dict(recipe="nope"), "unknown recipe"), (dict(epochs=(0,)), "--epochs"), (dict(timesteps=()), "--timesteps"),
    (dict(width_mult=-1.0), "--width-mult"), (dict(stem="tiny"), "--stem"), (dict(seed=-1), "--seed"),
    (dict(augment="blur"), "--augment"), (dict(batch_size=0), "batch_size"), (dict(warmup_epochs=9.0), "warmup"),
])
def test_bad_settings_fail_at_construction(change, needle):
    with pytest.raises(SnnasError, match=needle):
        FitSettings(**{"recipe": "short", **change})


def test_a_split_smaller_than_one_batch_fails_before_training(cache_dir):
    splits = load_splits("fashion-2", cache_dir=cache_dir, **DATA)
    with pytest.raises(SnnasError, match="fewer than one batch"):
        GenotypeFit("danet_a_resnet18", splits, FitSettings(recipe="short", batch_size=64, width_mult=0.0625))
