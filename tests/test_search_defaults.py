"""The search's defaults are the proxy the sweep measured: the same training, the same data."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from snnas.fit import FitSettings
from snnas.search import defaults
from snnas.search.funnel import SearchOptions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from proxy_fidelity import SETTINGS  # noqa: E402

CHOSEN = "10s-f10-lr0.8"  # the setting bench/proxy_fidelity.py ranked best at the make-search budget


def _configs(settings: FitSettings) -> list:
    return [(p.timesteps, p.config) for p in settings.phases()]


def test_the_default_recipe_trains_exactly_the_chosen_sweep_setting():
    chosen = SETTINGS[CHOSEN]
    assert chosen.data == defaults.DATA
    assert (chosen.per_class, chosen.epochs, chosen.val_per_class) == (
        defaults.TRAIN_PER_CLASS, defaults.EPOCHS, defaults.VAL_PER_CLASS)
    default = FitSettings(recipe=defaults.RECIPE, epochs=(defaults.EPOCHS,), timesteps=(1,), seed=3)
    assert _configs(default) == _configs(chosen.fit(seed=3, width_mult=0.25))
    # and it is not some other setting of the sweep: the plain `short` recipe trains differently
    assert _configs(default) != _configs(SETTINGS["10s-f10"].fit(seed=3, width_mult=0.25))


def test_search_options_and_the_command_line_share_the_defaults():
    from argparse import ArgumentParser

    from snnas.cli.search import add_arguments

    parser = ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    options = SearchOptions()
    for name in ("data", "recipe", "epochs", "epochs2", "train_per_class", "train_per_class2", "val_per_class"):
        assert getattr(args, name) == getattr(options, name), name
    assert options.recipe == defaults.RECIPE and options.data == defaults.DATA


def test_the_chosen_setting_is_measured_for_every_table_network():
    sweep = json.loads((ROOT / "bench/results/proxy_sweep.json").read_text())
    table = json.loads((ROOT / "bench/results/groundtruth_fashion10.json").read_text())
    keys = {r["key"] for r in table["runs"]}
    for seed in (0, 1):
        measured = {r["key"] for r in sweep["runs"] if r["setting"] == CHOSEN and r["seed"] == seed}
        assert measured >= keys, f"seed {seed}: {len(keys - measured)} networks unmeasured"
