"""Training settings as one frozen value, so a run is described by data, not by code paths.

A :class:`TrainConfig` is what a checkpoint records and what ``--resume`` compares against: a
run resumed under different settings would silently train a different recipe.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from snnas.errors import SnnasError, excerpt

SCHEDULES = ("cosine", "step")
# Mixed precision on CUDA: ``amp=True`` is float16 (with loss scaling); a name picks the type.
AMP_DTYPES = ("float16", "bfloat16")


class TrainConfigError(SnnasError, ValueError):
    """Training settings that cannot be used (the message names the setting and what is allowed)."""


def _bad(name: str, value: Any, allowed: str) -> TrainConfigError:
    return TrainConfigError(f"training setting {name}: {excerpt(value)} is not allowed; expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a network is fitted.

    Learning rate follows the linear scaling rule: ``lr = lr_per_256 * batch_size / 256`` with
    ``batch_size`` the *global* batch, so a data-parallel run keeps the recipe. ``milestones`` are
    epochs counted from the start of the phase (warm-up included), as the paper states them.
    ``finetune`` holds the settings of the later, longer-T phases of a multi-phase run (the
    paper's T=4 fine-tuning); ``None`` reuses these settings. ``amp`` is False, True (float16) or
    one of :data:`AMP_DTYPES` (``"bfloat16"`` needs no loss scaling); it acts on CUDA only. True
    stays the float16 spelling so that checkpoints and results recorded before bfloat16 compare equal.
    """

    epochs: int = 10
    batch_size: int = 64
    lr_per_256: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    warmup_start_factor: float = 0.01
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    label_smoothing: float = 0.1
    grad_clip: float | None = None
    augment: str = "crop_flip"
    timesteps: int | None = None
    amp: bool | str = True
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = True
    eval_every: int = 1
    precise_bn_images: int = 2048  # recompute BN statistics on this many clean training images per epoch
    aux_heads: bool = False
    aux_weight: float = 0.5
    seed: int = 0
    finetune: TrainConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if not _is_int(self.epochs) or self.epochs < 1:
            raise _bad("epochs", self.epochs, "an integer >= 1")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise _bad("batch_size", self.batch_size, "an integer >= 1")
        for name in ("lr_per_256", "lr_gamma"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise _bad(name, value, "a finite number > 0")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise _bad("momentum", self.momentum, "a number in [0, 1)")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise _bad("weight_decay", self.weight_decay, "a finite number >= 0")
        if not _is_number(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            raise _bad("warmup_epochs", self.warmup_epochs, f"a number in [0, epochs={self.epochs})")
        if not _is_number(self.warmup_start_factor) or not 0 < self.warmup_start_factor <= 1:
            raise _bad("warmup_start_factor", self.warmup_start_factor, "a number in (0, 1]")
        if self.schedule not in SCHEDULES:
            raise _bad("schedule", self.schedule, "one of " + ", ".join(SCHEDULES))
        if any(not _is_int(m) for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)) \
                or any(not self.warmup_epochs <= m < self.epochs for m in self.milestones):
            raise _bad("milestones", self.milestones,
                       f"increasing whole epochs from warmup_epochs={self.warmup_epochs} up to epochs-1={self.epochs - 1}")
        if self.schedule == "step" and not self.milestones:
            raise _bad("milestones", self.milestones, "at least one epoch for schedule 'step'")
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise _bad("label_smoothing", self.label_smoothing, "a number in [0, 1)")
        if self.grad_clip is not None and (not _is_number(self.grad_clip) or self.grad_clip <= 0):
            raise _bad("grad_clip", self.grad_clip, "null or a finite number > 0")
        if not isinstance(self.augment, str) or not self.augment:
            raise _bad("augment", self.augment, "an augmentation name such as 'crop_flip'")
        if self.timesteps is not None and (not _is_int(self.timesteps) or self.timesteps < 1):
            raise _bad("timesteps", self.timesteps, "null or an integer >= 1")
        if not isinstance(self.amp, bool) and self.amp not in AMP_DTYPES:
            raise _bad("amp", self.amp, "true, false or one of " + ", ".join(AMP_DTYPES))
        if self.amp == AMP_DTYPES[0]:  # one spelling of the default, so that settings compare equal
            object.__setattr__(self, "amp", True)
        for name in ("channels_last", "compile", "sync_bn", "aux_heads"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "true or false")
        if not _is_int(self.eval_every) or self.eval_every < 1:
            raise _bad("eval_every", self.eval_every, "an integer >= 1")
        if not _is_int(self.precise_bn_images) or self.precise_bn_images < 0:
            raise _bad("precise_bn_images", self.precise_bn_images, "an integer >= 0 (0: keep the running averages)")
        if not _is_number(self.aux_weight) or not 0 <= self.aux_weight <= 1:
            raise _bad("aux_weight", self.aux_weight, "a number in [0, 1]")
        if not _is_int(self.seed):
            raise _bad("seed", self.seed, "an integer")
        if self.finetune is not None and not isinstance(self.finetune, TrainConfig):
            raise _bad("finetune", self.finetune, "null or a TrainConfig")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TrainConfigError(f"unknown training setting(s): {', '.join(unknown)}; known: "
                                   + ", ".join(f.name for f in fields(self)))
        return replace(self, **changes)

    @property
    def amp_dtype(self) -> str | None:
        """The autocast type name on CUDA, None without mixed precision."""
        if self.amp is False:
            return None
        return AMP_DTYPES[0] if self.amp is True else self.amp

    @property
    def lr(self) -> float:
        """Peak learning rate for the global batch (linear scaling rule)."""
        return self.lr_per_256 * self.batch_size / 256

    def with_epochs(self, epochs: int) -> TrainConfig:
        """The same recipe stretched or squeezed to ``epochs``: warm-up and milestones keep their
        place as fractions of the run, so a shortened paper recipe keeps its shape."""
        if not _is_int(epochs) or epochs < 1:
            raise _bad("epochs", epochs, "an integer >= 1")
        if epochs == self.epochs:
            return self
        ratio = epochs / self.epochs
        warmup = min(self.warmup_epochs * ratio, epochs - 1) if self.warmup_epochs else 0.0
        milestones = sorted({min(max(round(m * ratio), math.ceil(warmup)), epochs - 1) for m in self.milestones})
        milestones = [m for m in milestones if warmup <= m < epochs]
        schedule = self.schedule if milestones or self.schedule != "step" else "cosine"
        return replace(self, epochs=epochs, warmup_epochs=warmup, milestones=tuple(milestones), schedule=schedule)

    def phase_config(self, phase: int, timesteps: int) -> TrainConfig:
        """Settings of phase ``phase`` (0 first) of a multi-phase run at ``timesteps``."""
        base = self if phase == 0 or self.finetune is None else self.finetune
        return replace(base, timesteps=timesteps, finetune=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings, None) for checkpoints and summaries."""
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        if self.finetune is not None:
            data["finetune"] = self.finetune.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        if data.get("finetune") is not None:
            data["finetune"] = cls.from_dict(data["finetune"])
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TrainConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)
