"""How big a space is, and how much of it is the same network twice.

A space is define-by-run (which parameters a trial is asked depends on earlier answers: the wiring
space's optional edges depend on the stage's depth), so its points are counted by walking the
tree of answers rather than multiplying the genes' choices. A small space is walked whole. A large
one is walked stage by stage: for every answer to the network-wide genes, each stage's own
parameters (``s0.block``, ``s0.blocks``, ...) are walked with the other stages fixed, and the
stages' counts multiply. That is exact for builders whose stages are independent and whose
canonical form folds each stage on its own (``canonical()`` works stage by stage); a builder whose
stage depends on its neighbours (``dense_ops``: a stage's transition follows the next stage's
operation) is small enough to be walked whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from snnas.errors import GenotypeError
from snnas.genotype import Genotype

WALK_LIMIT = 500  # spaces with at most this many points are walked whole


class _TooMany(Exception):
    pass


class _ReplayTrial:
    """Answers parameters from a path of choice indices; past the path's end (or for parameters
    outside ``walked``) it takes the first choice and records how many there were."""

    def __init__(self, path: list[int], walked: Callable[[str], bool], fixed: dict[str, Any] | None = None):
        self.path, self.walked, self.fixed = path, walked, fixed or {}
        self.seen: list[tuple[int, int]] = []  # (index, choices) of each walked parameter, in call order
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        if name in self.params:  # asked again (a network-wide gene read by every stage): the same answer
            return self.params[name]
        if name in self.fixed:
            value = self.fixed[name]
        elif self.walked(name):
            pos = len(self.seen)
            index = self.path[pos] if pos < len(self.path) else 0
            self.seen.append((index, len(choices)))
            value = choices[index]
        else:
            value = choices[0]
        self.params[name] = value
        return value


def walk(suggest: Callable[[Any], Genotype], walked: Callable[[str], bool], fixed: dict[str, Any] | None = None,
         limit: int | None = None) -> Iterator[tuple[dict[str, Any], Genotype | None]]:
    """Every (parameters, genotype) the walked parameters can produce (genotype None where the
    answers build no valid network), depth first; more than ``limit`` raises ``_TooMany``."""
    path: list[int] = []
    count = 0
    while True:
        trial = _ReplayTrial(path, walked, fixed)
        try:
            genotype = suggest(trial)
        except GenotypeError:
            genotype = None
        count += 1
        if limit is not None and count > limit:
            raise _TooMany
        yield trial.params, genotype
        seen = list(trial.seen)
        while seen and seen[-1][0] + 1 >= seen[-1][1]:
            seen.pop()
        if not seen:
            return
        path = [i for i, _ in seen[:-1]] + [seen[-1][0] + 1]


def _stage_of(name: str) -> int | None:
    head, dot, _ = name.partition(".")
    return int(head[1:]) if dot and head[:1] == "s" and head[1:].isdigit() else None


@dataclass(frozen=True)
class SpaceSize:
    points: int  # answers a sampler can give (valid networks)
    networks: int  # distinct networks among them (canonical keys)
    exact_walk: bool  # walked whole, or stage by stage

    @property
    def folded(self) -> float:
        """The share of points that are another point's network."""
        return 1.0 - self.networks / self.points if self.points else 0.0


def space_size(space) -> SpaceSize:
    """Points and distinct networks of ``space`` (a :class:`~snnas.spaces.Space`)."""
    try:
        keys, points = set(), 0
        for _, g in walk(space.suggest, lambda name: True, limit=WALK_LIMIT):
            if g is not None:
                points += 1
                keys.add(g.canonical().key)
        return SpaceSize(points, len(keys), True)
    except _TooMany:
        pass
    points = networks = 0
    for global_params, g in walk(space.suggest, lambda name: _stage_of(name) is None):
        if g is None:
            continue
        fixed = {k: v for k, v in global_params.items() if _stage_of(k) is None}
        stage_points, stage_networks = [], []
        for i in range(len(g.stages)):
            forms, count = set(), 0
            for _, gi in walk(space.suggest, lambda name, i=i: _stage_of(name) == i, fixed):
                if gi is not None:
                    count += 1
                    forms.add(repr(gi.canonical().stages[i].to_dict()))
            stage_points.append(count)
            stage_networks.append(len(forms))
        points += math.prod(stage_points)
        networks += math.prod(stage_networks)
    return SpaceSize(points, networks, False)
