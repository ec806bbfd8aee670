"""Every user attribute a search trial carries, as one typed record.

A trial's attributes are the search's shared memory: dedupe claims a network by them, the funnel
promotes by them, the leaderboard, the report and export read them, and another machine reads
them back months later. They are defined here once, as the fields of :class:`TrialAttrs`:
writing goes through :func:`set_attrs` (an unknown name is an error, not a silent new
attribute) and reading through :meth:`TrialAttrs.of`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

_RUN_ONLY = {"run_only": True}  # describes one run of a network, not the network: a reuse does not copy it


@dataclass(frozen=True)
class TrialAttrs:
    """What one search trial evaluated and measured (None: not recorded)."""

    # what the trial is
    genotype: str | None = None  # as sampled, promoted or enqueued
    canonical: str | None = None  # the network that trains (canonical form, stem resolved)
    key: str | None = field(default=None, metadata=_RUN_ONLY)  # canonical key: dedupe's claim
    fidelity: str | None = field(default=None, metadata=_RUN_ONLY)  # the phase's fidelity key
    phase: str | None = None
    data: str | None = None
    seed_preset: str | None = None  # enqueued as this preset of the paper
    promoted_from: int | None = None  # phase 2: the phase-1 trial it retrains
    promoted_key: str | None = None
    phase1_acc: float | None = None
    dedupe_of: int | None = field(default=None, metadata=_RUN_ONLY)  # reused the result of this trial
    # what it measured
    params: int | None = None
    val_acc: float | None = None
    sops: float | None = None
    macs: float | None = None
    neuron_mac_ops: float | None = None  # the neurons' own multiply-accumulates (gwr), in energy_mj
    energy_mj: float | None = None
    latency_ms: float | None = None  # inference per image, batch 1, on the trial's device (snnas.metrics.latency)
    latency_threads: int | None = None
    firing_rate: float | None = None
    firing_by_stage: dict | None = None
    firing_rates: dict | None = None
    screen_sahd: float | None = None
    screen_gradstab: float | None = None
    # how this run went
    epochs_run: int | None = None
    wall_s: float | None = field(default=None, metadata=_RUN_ONLY)
    resumed_from_epoch: int | None = field(default=None, metadata=_RUN_ONLY)
    device: str | None = field(default=None, metadata=_RUN_ONLY)  # where this run trained (cpu, cuda:N)
    model_artifact: str | None = None  # artifact id of the trained weights (snnas.search.artifacts)
    fail_reason: str | None = field(default=None, metadata=_RUN_ONLY)  # snnas.study.attrs.REASON_ATTR
    fail_detail: str | None = field(default=None, metadata=_RUN_ONLY)  # snnas.study.attrs.DETAIL_ATTR

    @classmethod
    def of(cls, trial: Any) -> TrialAttrs:
        """The record of a trial (``FrozenTrial`` or live ``Trial``); attributes it does not
        define (written by other tools) are left out."""
        attrs = trial.user_attrs
        return cls(**{name: attrs[name] for name in NAMES if name in attrs})


NAMES: frozenset[str] = frozenset(f.name for f in fields(TrialAttrs))
RUN_ONLY: frozenset[str] = frozenset(f.name for f in fields(TrialAttrs) if f.metadata.get("run_only"))


def attr_name(name: str) -> str:
    """``name``, checked to be a :class:`TrialAttrs` field (for APIs that take an attribute's name)."""
    if name not in NAMES:
        raise KeyError(f"not a search trial attribute: {name}")
    return name


def attrs_dict(**values: Any) -> dict[str, Any]:
    """User attributes for ``enqueue_trial``: names checked against :class:`TrialAttrs`."""
    unknown = sorted(set(values) - NAMES)
    if unknown:
        raise KeyError(f"not a search trial attribute: {', '.join(unknown)}")
    return dict(values)


def set_attrs(trial: Any, **values: Any) -> None:
    """Write attributes of a live trial; names are checked against :class:`TrialAttrs`."""
    for name, value in attrs_dict(**values).items():
        trial.set_user_attr(name, value)


def copy_attrs(trial: Any, source: Mapping[str, Any]) -> None:
    """Copy a finished trial's record onto ``trial`` (a reuse), without the run-only attributes."""
    set_attrs(trial, **{name: value for name, value in source.items() if name in NAMES and name not in RUN_ONLY})


PHASE2_SUFFIX = ".phase2"  # a search's phase 2 is the study <name>.phase2 in the same storage
OBJECTIVE_DIRECTIONS = {"acc": "maximize", "sops": "minimize", "energy": "minimize"}
METRIC_NAMES = {"acc": "val_acc", "sops": "sops", "energy": "energy_mj"}  # each objective's name in the study


def phase2_name(study: str) -> str:
    return study + PHASE2_SUFFIX


@dataclass(frozen=True)
class StudyAttrs:
    """What a search's studies record about the search (user attributes of the phase-1 study; the
    phase-2 study records its own fidelity, which wins when both have one)."""

    space: str | None = None
    space_source: str | None = None
    objectives: list | None = None
    sampler: str | None = None  # the sampler that really runs (snnas.search.samplers.sampler_name)
    fidelity_phase1: dict | None = None
    fidelity_phase2: dict | None = None

    @classmethod
    def of(cls, phase1: Any, phase2: Any = None) -> StudyAttrs:
        names = [f.name for f in fields(cls)]
        values = {name: phase1.user_attrs[name] for name in names if name in phase1.user_attrs}
        if phase2 is not None and phase2.user_attrs.get("fidelity_phase2"):
            values["fidelity_phase2"] = phase2.user_attrs["fidelity_phase2"]
        return cls(**values)

    def write(self, study: Any) -> None:
        """Record the fields that are set on ``study``."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                study.set_user_attr(f.name, value)
