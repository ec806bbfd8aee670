"""Fitting a genotype on data splits: the one training path.

A search trial, ``retrain`` and every benchmark come through :class:`GenotypeFit`, so a proxy
score, a retrained accuracy and a ground-truth row differ only in the :class:`FitSettings` they
name, never in the code that resolves the stem, seeds and builds the network, makes the loaders
and plans the phases. Given the same genotype, data, settings and seed, they train the same
weights.

```python
fit = GenotypeFit(get_preset("danet_a_resnet18"), splits, FitSettings(recipe="short", epochs=(5,)))
results = fit.run(out_dir="runs/x")
fit.evaluate(splits.test)["acc"], fit.measure()["sops"]
```
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Sequence

import torch

from snnas.compiler import build_model, count_parameters, resolve_genotype
from snnas.compiler.size import SizeEstimate, check_fits, estimate
from snnas.data import AUGMENTS, BatchLoader, Splits, TensorSet
from snnas.errors import DataError, excerpt
from snnas.genotype import Genotype
from snnas.genotype.vocabulary import AUTO_STEM, STEMS, resolve_stem
from snnas.metrics import count_ops, firing_rates, inference_latency
from snnas.train import distributed as dist_utils
from snnas.train.callbacks import EpochCallback
from snnas.train.config import TrainConfigError
from snnas.train.phases import Phase, plan_phases, run_phases
from snnas.train.recipes import get_recipe
from snnas.train.trainer import FitResult, evaluate_model

EVAL_BATCH = 256  # evaluation batches: at least this, or the training batch when larger
PROBE_IMAGES = 32  # SOPs and firing rates are measured on the first validation images


def _bad(name: str, value: Any, allowed: str) -> TrainConfigError:
    flag = "--" + name.replace("_", "-")
    return TrainConfigError(f"setting {name} ({flag}): {excerpt(value)} is not allowed; expected {allowed}")


def _positive_ints(name: str, value: Any) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise _bad(name, value, "one or more integers >= 1")
    return values


@dataclass(frozen=True)
class FitSettings:
    """Everything besides the genotype and the data that decides a fitted network.

    ``recipe`` names a registered :class:`~snnas.train.TrainConfig`; the other optional fields
    override it (None keeps the recipe's value). ``epochs`` gives the first phase's length (later
    phases scale with it) or one length per phase; ``timesteps`` one T per phase, e.g. ``(1, 4)``
    for the paper's T=1 training and T=4 fine-tuning. ``stem`` goes through the one stem policy
    (:func:`~snnas.genotype.vocabulary.resolve_stem`).
    """

    recipe: str = "short"
    epochs: tuple[int, ...] | None = None
    timesteps: tuple[int, ...] | None = None
    width_mult: float = 0.25
    stem: str = AUTO_STEM
    seed: int = 0
    batch_size: int | None = None
    lr_per_256: float | None = None
    warmup_epochs: float | None = None
    augment: str | None = None
    aux_heads: bool = False
    compile: bool = False
    eval_every: int | None = None

    def __post_init__(self) -> None:
        get_recipe(self.recipe)  # an unknown name fails here, naming the known ones
        if self.epochs is not None:
            object.__setattr__(self, "epochs", _positive_ints("epochs", self.epochs))
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", _positive_ints("timesteps", self.timesteps))
        if isinstance(self.width_mult, bool) or not isinstance(self.width_mult, (int, float)) \
                or not math.isfinite(self.width_mult) or not 0 < self.width_mult <= 16:
            raise _bad("width_mult", self.width_mult, "a number in (0, 16]")
        if self.stem not in (AUTO_STEM, *STEMS):
            raise _bad("stem", self.stem, "one of " + ", ".join((AUTO_STEM, *STEMS)))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise _bad("seed", self.seed, "an integer >= 0")
        if self.augment is not None and self.augment not in AUGMENTS:
            raise _bad("augment", self.augment, "one of " + ", ".join(AUGMENTS))
        self.phases()  # every other override is checked by the recipe's own validation

    def replace(self, **changes: Any) -> FitSettings:
        return replace(self, **changes)

    def phases(self) -> list[Phase]:
        """The training phases these settings describe (validated)."""
        overrides = {"seed": self.seed}
        for name in ("batch_size", "lr_per_256", "augment", "eval_every"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        if self.aux_heads:
            overrides["aux_heads"] = True
        if self.compile:
            overrides["compile"] = True
        recipe = get_recipe(self.recipe)
        phases = plan_phases(recipe, self.timesteps or (recipe.timesteps or 1,), self.epochs, **overrides)
        if self.warmup_epochs is not None:  # the first phase's warm-up; later phases keep the recipe's
            phases[0] = Phase(0, phases[0].timesteps, phases[0].config.replace(warmup_epochs=self.warmup_epochs))
        return phases

    @property
    def key(self) -> str:
        """Every setting that changes the numbers, as text (part of a search's fidelity key)."""
        phases = self.phases()
        epochs = ",".join(str(p.config.epochs) for p in phases)
        parts = [self.recipe, f"e{epochs}", "T" + ",".join(str(p.timesteps) for p in phases), f"w{self.width_mult:g}",
                 f"stem-{self.stem}", f"s{self.seed}"]
        for name, tag in (("batch_size", "b"), ("lr_per_256", "lr"), ("warmup_epochs", "wu"), ("augment", "aug-")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{tag}{value:g}" if isinstance(value, float) else f"{tag}{value}")
        if self.aux_heads:
            parts.append("aux")
        return "|".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["epochs"] = list(self.epochs) if self.epochs is not None else None
        data["timesteps"] = list(self.timesteps) if self.timesteps is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitSettings:
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TrainConfigError(f"unknown fit setting(s): {', '.join(unknown)}")
        for name in ("epochs", "timesteps"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        return cls(**data)


def built_genotype(genotype: Genotype | str, settings: FitSettings, resolution: int) -> Genotype:
    """The network that is actually trained: the canonical form (equivalent genotypes train once)
    with its stem resolved for the data's resolution."""
    g = resolve_genotype(genotype)
    return g.replace(stem=resolve_stem(settings.stem, g.stem, resolution)).canonical()


def check_batches(splits: Splits, settings: FitSettings) -> None:
    """A training split smaller than one batch trains nothing (every batch is dropped as partial)."""
    for phase in settings.phases():
        if len(splits.train) < phase.config.batch_size:
            raise DataError(f"the training split has {len(splits.train)} images, fewer than one batch of "
                            f"{phase.config.batch_size}; lower the batch size")


class GenotypeFit:
    """One genotype fitted on one data subset with one set of :class:`FitSettings`.

    Constructing it builds the network (initial weights from ``settings.seed`` alone, never from
    the global random stream); :meth:`run` trains it; :meth:`evaluate` and :meth:`measure` read it.
    Under ``torchrun`` each process takes its share of every global batch.
    """

    def __init__(self, genotype: Genotype | str, splits: Splits, settings: FitSettings, *,
                 device: str | torch.device | None = None, num_workers: int = 0, allow_large: bool = False):
        self.settings = settings
        self.splits = splits
        self.phases = settings.phases()
        self.ctx = dist_utils.current()
        self.device = torch.device(device) if device is not None else dist_utils.default_device(self.ctx)
        self.num_workers = num_workers
        self.genotype = built_genotype(genotype, settings, splits.resolution)
        if not allow_large:
            check_fits(self.size_estimate(), f"training {excerpt(self.genotype.to_str())}",
                       _device_memory(self.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            self.model = build_model(self.genotype, num_classes=splits.num_classes, in_channels=splits.in_channels,
                                     timesteps=self.phases[0].timesteps, width_mult=float(settings.width_mult),
                                     allow_large=allow_large)
        self.params = count_parameters(self.model)
        check_batches(splits, settings)

    def size_estimate(self) -> SizeEstimate:
        """Memory of this training: the network's parameters and one batch's activations per process."""
        batch = -(-max(p.config.batch_size for p in self.phases) // self.ctx.world_size)
        return estimate(self.genotype, in_channels=self.splits.in_channels, num_classes=self.splits.num_classes,
                        width_mult=float(self.settings.width_mult), resolution=self.splits.resolution,
                        timesteps=max(p.timesteps for p in self.phases), batch_size=batch)

    @property
    def last_epoch(self) -> int:
        """The first phase's last epoch (where a pruner must no longer stop a run)."""
        return self.phases[0].config.epochs

    def loader(self, data: TensorSet, *, train: bool = False, batch_size: int | None = None,
               augment: str = "none") -> BatchLoader:
        """Training batches (shuffled by the seed, short last batch dropped) or evaluation batches."""
        batch = batch_size or max(self.phases[-1].config.batch_size, EVAL_BATCH)
        return BatchLoader(data, batch_size=batch, shuffle=train, augment=augment, drop_last=train,
                           generator=torch.Generator().manual_seed(self.settings.seed), rank=self.ctx.rank,
                           world_size=self.ctx.world_size, device=self.device, num_workers=self.num_workers)

    def _loaders(self, phase: Phase) -> tuple[BatchLoader, BatchLoader | None]:
        cfg = phase.config
        val = self.loader(self.splits.val, batch_size=max(cfg.batch_size, EVAL_BATCH)) if len(self.splits.val) else None
        return self.loader(self.splits.train, train=True, batch_size=cfg.batch_size, augment=cfg.augment), val

    def run(self, *, out_dir: str | os.PathLike | None = None, callbacks: Sequence[EpochCallback] = (),
            resume: bool = False, progress: bool = False, tensorboard: bool = False) -> list[FitResult]:
        """Train every phase; with ``out_dir`` each phase checkpoints every epoch and ``resume=True``
        continues from those checkpoints."""
        return run_phases(self.model, self.phases, loaders=self._loaders, out_dir=out_dir, callbacks=callbacks,
                          resume=resume, device=self.device, progress=progress, tensorboard=tensorboard)

    def evaluate(self, data: TensorSet | Iterable) -> dict[str, float]:
        """``{"acc", "loss", "images"}`` on a split (or any loader)."""
        loader = self.loader(data) if isinstance(data, TensorSet) else data
        return evaluate_model(self.model, loader, device=self.device, amp=self.phases[-1].config.amp)

    def probe_batch(self) -> torch.Tensor:
        source = self.splits.val if len(self.splits.val) else self.splits.train
        return next(iter(BatchLoader(source, batch_size=PROBE_IMAGES, shuffle=False, augment="none")))[0]

    def measure(self) -> dict[str, Any]:
        """SOPs, the neurons' own MACs (gwr), energy and firing rates per image of the network as
        it is now (inference BN), on the first validation images, and its inference latency per
        image on this device."""
        probe = self.probe_batch()
        latency = inference_latency(self.model, probe.to(self.device))
        model = self.model.cpu()
        try:
            ops = count_ops(model, probe, bn_stats="running")
            firing = firing_rates(model, probe, bn_stats="running")
        finally:
            self.model.to(self.device)
        return {"sops": float(ops.sops), "macs": float(ops.macs), "neuron_mac_ops": float(ops.neuron_mac_ops),
                "energy_mj": float(ops.energy_mj),
                "latency_ms": round(latency.ms_per_image, 4), "latency_threads": latency.threads,
                "firing_rate": float(firing.overall),
                "firing_by_stage": {k: round(v, 5) for k, v in firing.by_stage.items()},
                "firing_rates": {k: round(v, 5) for k, v in firing.rates.items()}}


def _device_memory(device: torch.device) -> int | None:
    """The memory a training on ``device`` may use (None: this machine's)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(device).total_memory
    return None


def fit_history(results: Sequence[FitResult]) -> list[dict[str, Any]]:
    """Every epoch's metrics of every phase, in order."""
    return [r.metrics for res in results for r in res.history]


def val_curve(results: Sequence[FitResult]) -> list[float]:
    return [m["val_acc"] for m in fit_history(results) if m.get("val_acc") is not None]


__all__ = ["EVAL_BATCH", "FitSettings", "GenotypeFit", "PROBE_IMAGES", "built_genotype", "fit_history", "val_curve"]
