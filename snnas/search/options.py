"""What a search is asked to do, built and checked once, before any work starts.

:class:`SearchOptions` holds the values a user gives (the command line's, or a script's); making
one validates them all and derives what the rest of the search reads: each phase's
:class:`~snnas.search.fidelity.Fidelity` and the local worker processes' settings
(:class:`~snnas.study.processes.ProcessSettings`, their devices included). A bad value fails
here, in one line, and nothing downstream checks it again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from snnas.errors import SnnasError
from snnas.fit import FitSettings
from snnas.search import defaults, samplers
from snnas.search.attrs import OBJECTIVE_DIRECTIONS, StudyAttrs
from snnas.search.fidelity import Fidelity, promoted_data
from snnas.spaces import load_space
from snnas.study.artifacts import parse_artifact_location
from snnas.study.processes import ProcessSettings
from snnas.study.storage import parse_storage_url

@dataclass(frozen=True)
class SearchOptions:
    space: str = "dense_additive"
    data: str = defaults.DATA
    data2: str | None = None  # default: promoted_data(data)
    study: str | None = None  # default: the space's name
    storage: str | None = None  # default: SQLite at runs/<study>/study.db
    artifacts: str | None = None  # trial files: the study's recorded store, else this, else runs/<study>/artifacts
    out: Path = Path("runs")
    trials: int = 20
    timeout_s: float | None = None
    promote: int = 3
    seed: int = 0  # the samplers' (worker i: seed + i); give each machine its own
    train_seed: int = 0  # the networks' initial weights and batch order: part of the fidelity
    data_seed: int = 0
    objectives: tuple[str, ...] | None = None  # default: the space's (its file's `objectives`, else acc)
    sampler: str = "tpe"  # phase 1's, see snnas.search.samplers ("tpe" is NSGA-II with several objectives)
    max_sops: float | None = None
    screen: str | None = None
    screen_keep: float = 0.5
    # phase 1 (proxy) and phase 2 (promotion) fidelities
    epochs: int = defaults.EPOCHS
    epochs2: int = defaults.EPOCHS2
    timesteps: int = 1
    resolution: int | None = None
    train_per_class: int | None = defaults.TRAIN_PER_CLASS
    train_per_class2: int | None = defaults.TRAIN_PER_CLASS2
    val_per_class: int | None = defaults.VAL_PER_CLASS
    width_mult: float = 0.25
    batch_size: int = 64
    recipe: str = defaults.RECIPE
    recipe2: str | None = None  # default: the phase-1 recipe
    allow_large: bool = False  # skip the memory check of the space's networks
    device: str | None = None  # one device for every worker
    devices: str | None = None  # the workers spread over these, round robin (default: every visible GPU, else cpu)
    progress: bool = True
    cache_dir: str | None = None
    create_only: bool = False  # create the studies and enqueue the seeds, then stop
    workers: int = 1  # local worker processes per phase
    threads: int | None = None  # torch threads per worker (default: the cores shared out among the workers)
    heartbeat_interval: int = 30  # a worker that stops beating for grace_period is failed and its trial retried
    grace_period: int = 120
    # derived, once, by __post_init__
    phase1: Fidelity = field(init=False, repr=False, compare=False)
    phase2: Fidelity = field(init=False, repr=False, compare=False)
    process: ProcessSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.objectives is None:
            object.__setattr__(self, "objectives", load_space(self.space).objectives)
        self._check()
        fit = FitSettings(recipe=self.recipe, epochs=(self.epochs,), timesteps=(self.timesteps,),
                          width_mult=self.width_mult, batch_size=self.batch_size, seed=self.train_seed)
        one = Fidelity(phase="phase1", data=self.data, fit=fit, resolution=self.resolution,
                       train_per_class=self.train_per_class, val_per_class=self.val_per_class,
                       data_seed=self.data_seed)
        two = one.replace(phase="phase2", data=self.data2 or promoted_data(self.data),
                          fit=fit.replace(recipe=self.recipe2 or self.recipe, epochs=(self.epochs2,)),
                          train_per_class=self.train_per_class2)
        process = ProcessSettings(workers=self.workers, threads=self.threads,
                                  devices=visible_devices(self.devices, self.device),
                                  heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period,
                                  timeout_s=self.timeout_s, cpus=os.cpu_count() or 1)
        object.__setattr__(self, "phase1", one)
        object.__setattr__(self, "phase2", two)
        object.__setattr__(self, "process", process)

    def _check(self) -> None:
        for o in self.objectives:
            if o not in OBJECTIVE_DIRECTIONS:
                raise SnnasError(f"--objectives: {o!r} is unknown; choose from {', '.join(OBJECTIVE_DIRECTIONS)}")
        if self.objectives[0] != "acc":
            raise SnnasError("--objectives: the first objective must be acc")
        samplers.check_sampler(self.sampler)
        if self.trials < 1 or self.promote < 0 or self.epochs < 1 or self.epochs2 < 1:
            raise SnnasError("--trials, --epochs and --epochs2 must be at least 1 and --promote at least 0")
        if self.workers < 1 or (self.threads is not None and self.threads < 1):
            raise SnnasError("--workers and --threads must be at least 1")
        in_memory = self.storage is not None and parse_storage_url(self.storage).url == "sqlite:///:memory:"
        if self.workers > 1 and in_memory:
            raise SnnasError(f"--workers {self.workers}: an in-memory SQLite study lives in one process; give a "
                             "file or a database the worker processes can share")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise SnnasError("--heartbeat-interval must be at least 1 s and below --grace-period")
        if not 0 < self.screen_keep <= 1:
            raise SnnasError(f"--screen-keep: {self.screen_keep} is not in (0, 1]")
        if self.screen not in (None, "sahd", "gradstab"):
            raise SnnasError(f"--screen: {self.screen!r} is unknown; choose sahd or gradstab")
        if self.artifacts is not None:
            parse_artifact_location(self.artifacts)
        for path in (Path(self.out), self.run_dir):
            if path.exists() and not path.is_dir():
                raise SnnasError(f"--out {self.out}: {path} is a file, not a directory")

    @property
    def study_name(self) -> str:
        return self.study or self.space_name

    @property
    def space_name(self) -> str:
        return Path(self.space).stem

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.study_name

    def study_attrs(self, space_name: str, space_source: str) -> StudyAttrs:
        """What the phase-1 study records about this search when it is created."""
        return StudyAttrs(space=space_name, space_source=space_source, objectives=list(self.objectives),
                          sampler=samplers.sampler_name(self.sampler, len(self.objectives)),
                          fidelity_phase1=self.phase1.to_dict(), fidelity_phase2=self.phase2.to_dict())


def visible_devices(devices: str | None, device: str | None) -> tuple[str, ...]:
    """The devices the search's workers spread over: ``--devices`` (a list), ``--device`` (one),
    else every GPU torch sees, else the CPU. A GPU this machine does not have is one line."""
    if devices is not None and device is not None:
        raise SnnasError("--device and --devices: give one (--devices cuda:0,cuda:1 spreads the workers)")
    if devices is None and device is None:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return tuple(f"cuda:{i}" for i in range(count)) or ("cpu",)
    flag, text = ("--devices", devices) if devices is not None else ("--device", device)
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise SnnasError(f"{flag}: empty; give cpu, cuda:N or N (a GPU index), comma-separated")
    return tuple(_device_name(flag, name) for name in names)


def _device_name(flag: str, name: str) -> str:
    if name == "cpu":
        return name
    index = name[len("cuda:"):] if name.startswith("cuda:") else ("0" if name == "cuda" else name)
    if not index.isdigit():
        raise SnnasError(f"{flag} {_cut(name)}: not a device; give cpu, cuda:N or N (a GPU index)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index) >= count:
        seen = f"GPUs cuda:0..cuda:{count - 1}" if count > 1 else ("only cuda:0" if count == 1 else "no GPU")
        raise SnnasError(f"{flag} {_cut(name)}: this machine has {seen}")
    return f"cuda:{int(index)}"


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# The command-line flag of each recorded setting, per phase (phase 2 shares phase 1's where it has none).
_PHASE1_FLAGS = {"data": "--data", "resolution": "--resolution", "train_per_class": "--train-per-class",
                 "val_per_class": "--val-per-class", "data_seed": "--data-seed", "recipe": "--recipe",
                 "epochs": "--epochs", "timesteps": "--timesteps", "width_mult": "--width-mult",
                 "batch_size": "--batch-size", "seed": "--train-seed"}
_PHASE2_FLAGS = {**_PHASE1_FLAGS, "data": "--data2", "train_per_class": "--train-per-class2", "recipe": "--recipe2",
                 "epochs": "--epochs2"}


def _shown(value) -> str:
    return _cut(",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))


def settings_difference(study_name: str, recorded: StudyAttrs, wanted: StudyAttrs) -> str | None:
    """One line naming the first setting in which ``wanted`` differs from what the study recorded
    at its creation, or None when they agree."""
    pairs = [("--space", recorded.space, wanted.space), ("--objectives", recorded.objectives, wanted.objectives)]
    for flags, old, new in ((_PHASE1_FLAGS, recorded.fidelity_phase1, wanted.fidelity_phase1),
                            (_PHASE2_FLAGS, recorded.fidelity_phase2, wanted.fidelity_phase2)):
        old, new = _settings(old), _settings(new)
        pairs += [(flags.get(name, f"the setting {name}"), old.get(name), new.get(name))
                  for name in sorted(set(old) | set(new))]
    for flag, old, new in pairs:
        if old is not None and old != new:
            given = f"{flag} {_shown(new)}" if new is not None else f"{flag} left out"
            return (f"{given}: study {_cut(study_name)!r} was created with {flag} {_shown(old)}, and a study's "
                    f"settings are fixed at its creation; run with {flag} {_shown(old)}, or give --study a new name")
    return None


def _settings(fidelity: Mapping | None) -> dict:
    return {k: v for k, v in (fidelity or {}).items() if k not in ("key", "phase")}
