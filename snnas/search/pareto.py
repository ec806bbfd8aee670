"""Fronts of a multi-objective search: which networks are not dominated, and which few to keep.

With accuracy and energy as objectives there is no single best network: phase 2 retrains the
phase-1 Pareto set, and when that holds more networks than ``--promote`` allows, the ones kept are
those that together cover the most hypervolume (the greedy subset selection Optuna's own
multi-objective samplers use), so a promotion spreads over the front instead of crowding at its
accurate end. The hypervolume is also how two searches' fronts are compared (bench/efficient_sampler.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from snnas.search.attrs import OBJECTIVE_DIRECTIONS as DIRECTIONS
from snnas.study import adapter


@dataclass(frozen=True)
class Point:
    """One network's objective values, in the search's objective order."""

    key: str
    values: tuple[float, ...]


def _losses(points: Sequence[Point], objectives: Sequence[str]) -> np.ndarray:
    """Values turned into losses (every objective minimised), one row per point."""
    signs = np.array([-1.0 if DIRECTIONS[o] == "maximize" else 1.0 for o in objectives])
    return np.array([p.values for p in points], dtype=float).reshape(len(points), len(objectives)) * signs


def _reference_loss(reference: Sequence[float], objectives: Sequence[str]) -> np.ndarray:
    return _losses([Point("reference", tuple(reference))], objectives)[0]


def front(points: Sequence[Point], objectives: Sequence[str]) -> list[Point]:
    """The points no other point dominates (at least as good everywhere, better somewhere),
    in the given order; equal points are all kept."""
    losses = _losses(points, objectives)
    keep = []
    for i, loss in enumerate(losses):
        dominated = np.any(np.all(losses <= loss, axis=1) & np.any(losses < loss, axis=1))
        if not dominated:
            keep.append(points[i])
    return keep


def hypervolume(points: Sequence[Point], objectives: Sequence[str], reference: Sequence[float]) -> float:
    """The volume the points dominate up to ``reference`` (given in the objectives' own
    directions, e.g. (chance accuracy, the largest energy)); points beyond it add nothing."""
    ref = _reference_loss(reference, objectives)
    losses = _losses(points, objectives)
    inside = losses[np.all(losses < ref, axis=1)] if len(points) else losses
    if not len(inside):
        return 0.0
    return adapter.hypervolume(inside, ref)


def select_by_hypervolume(points: Sequence[Point], objectives: Sequence[str], k: int,
                          reference: Sequence[float]) -> list[Point]:
    """At most ``k`` points of the front of ``points``: all of it when it is small enough, else the
    greedy hypervolume subset (each pick adds the most volume to those already picked). Best first
    in the first objective."""
    if k < 1:
        return []
    pareto = front(points, objectives)
    if len(pareto) > k:
        ref = _reference_loss(reference, objectives)
        losses = np.minimum(_losses(pareto, objectives), ref - 1e-12)  # a point past the reference still counts as a corner
        pareto = [pareto[i] for i in adapter.hypervolume_subset(losses, k, ref)]
    first = DIRECTIONS[objectives[0]] == "maximize"
    return sorted(pareto, key=lambda p: -p.values[0] if first else p.values[0])
