"""The search's objective: trial -> genotype -> canonical key -> (cached result | proxy training).

The trainer knows nothing of Optuna: it reports each epoch to :class:`TrialReporter`, which turns
that into ``trial.report`` and asks the pruner whether to stop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch

from snnas.checkpoint import save_model
from snnas.errors import SnnasError
from snnas.fit import GenotypeFit, built_genotype, fit_history
from snnas.genotype import Genotype
from snnas.search.attrs import TrialAttrs, set_attrs
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity
from snnas.spaces import Space
from snnas.study.adapter import enqueued_params
from snnas.study.artifacts import ArtifactStore
from snnas.study.failures import UnrecordedResult, describe_exception
from snnas.train.trainer import CHECKPOINT_NAME

SCREENED = "screened"
MODEL_FILE = "model.pt"  # the trained weights, in the trial's working directory


class TrialReporter:
    """Trainer callback: report validation accuracy per epoch; stop when the pruner says so.

    A trial that is not ``prunable`` still reports (its curve informs the pruner's rungs) but always
    trains to the end: the seed presets are the references every search is read against, and a
    Hyperband bracket that stops them after one epoch would leave them off the leaderboard.
    """

    def __init__(self, trial: optuna.Trial, enabled: bool = True, last_epoch: int | None = None,
                 prunable: bool = True):
        self.trial, self.enabled, self.last_epoch, self.prunable = trial, enabled, last_epoch, prunable
        self.pruned_at = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        acc = metrics.get("val_acc")
        if not self.enabled or acc is None:
            return False
        self.trial.report(float(acc), epoch)
        # Pruning after the last epoch would throw away a finished training.
        if self.prunable and epoch != self.last_epoch and self.trial.should_prune():
            self.pruned_at = epoch
            return True
        return False


@dataclass
class Screen:
    """Training-free screening: score a candidate at initialisation and prune it before training
    when it falls below the ``1 - keep`` quantile of the scores seen so far in the study."""

    metric: str  # "sahd" | "gradstab"
    keep: float
    min_seen: int = 4

    def score(self, model: torch.nn.Module, x: torch.Tensor) -> float:
        from snnas.metrics import gradient_stability, sahd_score

        if self.metric == "sahd":
            return float(sahd_score(model, x))
        # log10 of the product over layers (the paper's Tables IV/V), finite where the product underflows
        return float(gradient_stability(model, x).log10_product)

    @property
    def attr(self) -> str:
        """The trial attribute that holds the score (a :class:`TrialAttrs` field)."""
        return f"screen_{self.metric}"

    def threshold(self, study: optuna.Study) -> float | None:
        scores = (getattr(TrialAttrs.of(t), self.attr) for t in study.get_trials(deepcopy=False))
        seen = sorted(s for s in scores if s is not None)
        if len(seen) < self.min_seen:
            return None
        return seen[min(len(seen) - 1, int((1.0 - self.keep) * len(seen)))]


class CheckpointUpload:
    """Trainer callback: after each epoch's checkpoint, put it in the study's artifact store, so a
    retry on any machine resumes from it. Slots are the training phases' directory names."""

    def __init__(self, trial: optuna.Trial, store: ArtifactStore, work_dir: Path, phase_names: Sequence[str],
                 lock: Any = None):
        self.trial, self.store, self.work_dir, self.phase_names = trial, store, work_dir, list(phase_names)
        self.lock = lock

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        slot = self.phase_names[int(metrics.get("phase", 1)) - 1]
        path = self.work_dir / slot / CHECKPOINT_NAME
        if path.is_file():  # raises Superseded once another worker has taken the trial over
            self.store.save_checkpoint(self.trial, slot, path, epoch, lock=self.lock)
        return False


@dataclass
class SearchObjective:
    """One phase's objective. ``splits`` is loaded once per process and shared by all trials.

    With an ``artifacts`` store (a study trial), checkpoints and weights go through it, so retries
    and export work from any machine; without one (``FixedTrial``) they stay in ``run_dir``.
    """

    space: Space | None
    fidelity: Fidelity
    splits: Any
    run_dir: Path
    dedupe: Dedupe
    objectives: Sequence[str] = ("acc",)
    max_sops: float | None = None
    screen: Screen | None = None
    device: str | None = None
    progress: bool = False
    allow_large: bool = False
    log: Callable[[str], None] = field(default=lambda msg: None)
    artifacts: ArtifactStore | None = None
    samples: bool = True  # False: enqueued networks only (phase 2), their genes still read from ``space``

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def genotype_for(self, trial: optuna.Trial) -> Genotype:
        given = TrialAttrs.of(trial).genotype
        if given is not None:  # promoted or enqueued by genotype
            if self.space is not None and isinstance(trial, optuna.Trial) and enqueued_params(trial):
                self.space.suggest(trial)  # a promoted network's genes: the phase's plots need them
            return Genotype.from_str(given)
        if self.space is None or not self.samples:
            raise SnnasError("this phase takes only enqueued genotypes")
        return self.space.suggest(trial)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        started = time.monotonic()
        fid = self.fidelity
        genotype = self.genotype_for(trial)
        canonical = built_genotype(genotype, fid.fit, self.splits.resolution)  # the network that trains
        set_attrs(trial, genotype=genotype.to_str(), canonical=canonical.to_str(), phase=fid.phase, data=fid.data)
        earlier = self.dedupe.claim(trial, canonical.key, fid.key)
        if earlier is not None:
            self.log(f"trial {trial.number}: {canonical.key} already evaluated at this fidelity; reusing")
            self._constrain(trial)  # a reused network breaks the energy limit just as its first evaluation did
            return earlier

        fit = GenotypeFit(canonical, self.splits, fid.fit, device=self.device, allow_large=self.allow_large)
        set_attrs(trial, params=fit.params, device=str(fit.device))
        is_seed = TrialAttrs.of(trial).seed_preset is not None
        if self.screen is not None and not is_seed:
            self._screen(trial, fit.model, fit.probe_batch())
        reporter = TrialReporter(trial, enabled=not self.multi_objective, last_epoch=fit.last_epoch,
                                 prunable=not is_seed)
        work_dir = self.work_dir(canonical.key, trial.number)
        callbacks: list = [reporter]
        if self.artifacts is not None:
            names = [phase.name for phase in fit.phases]
            restored = self.artifacts.restore_checkpoints(trial, lambda slot: work_dir / slot / CHECKPOINT_NAME)
            if restored:
                self.log(f"trial {trial.number}: resuming from the stored checkpoint ({restored})")
            callbacks.append(CheckpointUpload(trial, self.artifacts, work_dir, names, self.dedupe.lock))
        results = fit.run(out_dir=work_dir, callbacks=callbacks, resume=True, progress=self.progress)
        history = fit_history(results)
        val_acc = (history[-1] if history else {}).get("val_acc")
        measured = fit.measure()
        run = dict(measured, wall_s=round(time.monotonic() - started, 2), epochs_run=len(history))
        if results and results[0].resumed_from:
            run["resumed_from_epoch"] = results[0].resumed_from
        if reporter.pruned_at is not None:
            set_attrs(trial, **run, fail_reason=f"pruned by the pruner after epoch {reporter.pruned_at}")
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        if val_acc is None:
            raise SnnasError("training ended without a validation accuracy")
        values = {"acc": float(val_acc), "sops": measured["sops"], "energy": measured["energy_mj"]}
        result = [values[o] for o in self.objectives] if self.multi_objective else values[self.objectives[0]]
        # The finish order: the files first (here), the value next (the worker tells it), the
        # checkpoints last (the worker drops them once the value is recorded).
        try:
            set_attrs(trial, **run, val_acc=float(val_acc))
            self._save(trial, fit.model, work_dir, float(val_acc))
            self._constrain(trial)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the training must not be lost
            raise UnrecordedResult(result, describe_exception(exc), str(work_dir)) from exc
        return result

    def work_dir(self, key: str, number: int) -> Path:
        """Where trial ``number`` trains network ``key`` of this phase (checkpoints, metrics, weights):
        one directory per trial, so two runs of one network (a retry beside a worker whose heartbeat
        lapsed) never write each other's files."""
        return self.run_dir / "trials" / f"{key}-{self.fidelity.phase}-trial{number}"

    def _constrain(self, trial: optuna.Trial) -> None:
        """``--max-sops`` as Optuna's constraint (feasible at <= 0), from the trial's measured SOPs."""
        sops = TrialAttrs.of(trial).sops
        if self.max_sops is not None and isinstance(sops, (int, float)):
            trial.set_constraint("sops", float(sops) - self.max_sops)

    def _screen(self, trial: optuna.Trial, model: torch.nn.Module, probe: torch.Tensor) -> None:
        score = self.screen.score(model, probe)
        threshold = self.screen.threshold(self.dedupe.study)
        set_attrs(trial, **{self.screen.attr: score})
        if threshold is not None and score < threshold:
            set_attrs(trial, fail_reason=f"{SCREENED}: {self.screen.metric} {score:.4g} < {threshold:.4g}")
            raise optuna.TrialPruned(SCREENED)

    def _save(self, trial: optuna.Trial, model: torch.nn.Module, work_dir: Path, val_acc: float) -> None:
        path = work_dir / MODEL_FILE
        save_model(path, model, extra={"val_acc": val_acc, "fidelity": self.fidelity.to_dict(),
                                       "resolution": self.splits.resolution, "trial": trial.number,
                                       "study": self.dedupe.study.study_name})
        if self.artifacts is not None:
            set_attrs(trial, model_artifact=self.artifacts.upload(trial, path))
