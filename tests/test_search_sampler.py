"""``--sampler tpe|random``: random search, the baseline a NAS result is read against, runs phase 1
when asked, for one objective or two, and the study says which sampler produced it."""
from __future__ import annotations

import io
from argparse import ArgumentParser
from contextlib import redirect_stderr, redirect_stdout

import optuna
import pytest
from optuna.trial import TrialState

from snnas.cli import main
from snnas.cli.search import add_arguments, options_from
from snnas.data import FASHION_DEFAULT_DIR
from snnas.errors import SnnasError
from snnas.search.funnel import SearchOptions, make_sampler, run_search
from search_helpers import tiny_space

needs_fashion = pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed")

TINY_SPACE = tiny_space(("pa_a", "sew", "origin"), per_stage=True)


def tiny_options(tmp_path, **kw) -> SearchOptions:
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    base = dict(space=str(space), data="fashion-2", train_per_class=16, train_per_class2=16, val_per_class=8,
                resolution=16, width_mult=0.0625, epochs=1, epochs2=1, batch_size=16, recipe="proxy", promote=0,
                progress=False, out=tmp_path / "runs", cache_dir=str(tmp_path / "cache"))
    return SearchOptions(**{**base, **kw})


def parse(*argv: str) -> SearchOptions:
    parser = ArgumentParser()
    add_arguments(parser)
    return options_from(parser.parse_args(list(argv)))


@pytest.mark.parametrize("sampler, objectives, expected", [
    ("tpe", ("acc",), optuna.samplers.TPESampler),
    ("tpe", ("acc", "sops"), optuna.samplers.TPESampler),
    ("random", ("acc",), optuna.samplers.RandomSampler),
    ("random", ("acc", "sops"), optuna.samplers.RandomSampler),  # random search needs no model: any objectives
])
def test_the_sampler_follows_the_option(sampler, objectives, expected):
    assert type(make_sampler(SearchOptions(sampler=sampler, objectives=objectives))) is expected


def test_the_command_line_passes_the_sampler_and_defaults_to_tpe():
    assert parse().sampler == "tpe" == SearchOptions().sampler
    assert parse("--sampler", "random").sampler == "random"
    assert parse("--sampler", "random", "--objectives", "acc,sops").objectives == ("acc", "sops")


def test_an_unknown_sampler_is_one_line_and_exit_2(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as info:
        main(["search", "--sampler", "grid", "--out", str(tmp_path / "runs")])
    assert info.value.code == 2
    text = err.getvalue()
    assert text.startswith("snnas: error:") and text.count("\n") == 1, text
    assert "--sampler" in text and "grid" in text and "tpe" in text and "random" in text
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SnnasError, match="--sampler: 'grid' is unknown; choose from tpe, random"):
        SearchOptions(sampler="grid")


@needs_fashion
@pytest.mark.parametrize("sampler, objectives, recorded, kind", [
    ("random", ("acc",), "random", optuna.samplers.RandomSampler),
    ("random", ("acc", "sops"), "random", optuna.samplers.RandomSampler),
    ("tpe", ("acc", "sops"), "motpe", optuna.samplers.TPESampler),
    ("tpe", ("acc",), "tpe", optuna.samplers.TPESampler),
])
def test_the_study_records_its_sampler(tmp_path, sampler, objectives, recorded, kind):
    result = run_search(tiny_options(tmp_path, sampler=sampler, objectives=objectives, create_only=True),
                        log=lambda _: None)
    assert result.phase1.user_attrs["sampler"] == recorded
    assert type(result.phase1.sampler) is kind


@needs_fashion
def test_a_random_search_runs_phase_1_with_the_random_sampler(tmp_path, one_thread):
    options = tiny_options(tmp_path, sampler="random", trials=3, seed=5)
    result = run_search(options, log=lambda _: None)
    assert type(result.phase1.sampler) is optuna.samplers.RandomSampler
    done = result.phase1.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 3 and done[0].user_attrs["seed_preset"] == "danet_a_resnet18"
    # The same study, reopened from its storage, still says how it was searched.
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'runs' / 'tiny' / 'study.db'}")
    assert stored.user_attrs["sampler"] == "random"
