"""A fidelity: everything that decides what a proxy score means (data, epochs, T, size, seed).

Two trials share a result only when their canonical keys *and* fidelity keys are equal, so the
key spells out every setting that changes the number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from snnas.fit import FitSettings


@dataclass(frozen=True)
class Fidelity:
    """The data a phase trains on and how (:class:`~snnas.fit.FitSettings`, recipe included)."""

    phase: str
    data: str
    fit: FitSettings = FitSettings(recipe="proxy")
    resolution: int | None = None
    train_per_class: int | None = None
    val_per_class: int | None = None
    data_seed: int = 0

    @property
    def key(self) -> str:
        return (f"{self.phase}|{self.data}|r{self.resolution}|n{self.train_per_class}/{self.val_per_class}|"
                f"d{self.data_seed}|{self.fit.key}")

    def replace(self, **changes: Any) -> "Fidelity":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the training settings flattened beside the data's (the report's table)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fit"}
        return {**data, **self.fit.to_dict(), "key": self.key}


_K_SPEC = re.compile(r"^(fashion|imagenet|folder)-(\d+)(:.*)?$")
PROMOTED_CLASSES = {"fashion": 10, "imagenet": 20, "folder": 20}


def promoted_data(spec: str) -> str:
    """Phase 2's data for phase 1's: fashion-5 -> fashion-10, imagenet-5:R -> imagenet-20:R
    (the paper's ImageNet-5 -> ImageNet-20); any other spec is kept."""
    m = _K_SPEC.match(spec)
    if not m:
        return spec
    family, k, rest = m.group(1), int(m.group(2)), m.group(3) or ""
    return f"{family}-{max(k, PROMOTED_CLASSES[family])}{rest}"
