"""Phase 1's samplers, by the name ``--sampler`` takes.

``tpe`` is the default: multivariate TPE (it models the genes jointly), for one objective or
several (Optuna's TPE splits good from bad trials by non-domination and hypervolume contribution
when there are several). NSGA-II was the multi-objective default before; its first generation (50
trials) is random, which is the whole budget of a search on a CPU, so it could never beat random
search there. ``random`` is random search, the baseline every NAS paper reports: a search that
does not beat it has learnt nothing the space did not give away. Random search needs no model of
the objectives, so it serves one objective or several alike.
"""
from __future__ import annotations

import optuna

from snnas.errors import SnnasError
from snnas.study.adapter import quiet_experimental

SAMPLERS = ("tpe", "random")


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise SnnasError(f"--sampler: {name!r} is unknown; choose from {', '.join(SAMPLERS)}")


def sampler_name(name: str, objectives: int) -> str:
    """The sampler that really runs, as a study records it (``tpe`` with several objectives is
    multi-objective TPE, recorded as ``motpe``)."""
    check_sampler(name)
    return "motpe" if name == "tpe" and objectives > 1 else name


def make_sampler(name: str, objectives: int, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler; ``trials`` (the phase's budget) sizes TPE's random start-up."""
    kind = sampler_name(name, objectives)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: a trial another worker is still training counts as a poor result while TPE
    # proposes, so parallel workers spread out instead of proposing the network being trained (one
    # process asks only between its trials, where nothing of its own runs: no change there).
    with quiet_experimental():  # multivariate TPE is marked experimental
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=max(4, trials // 4))
