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

from snnas.errors import SnnasError
from snnas.fit import GenotypeFit, built_genotype, fit_history
from snnas.genotype import Genotype
from snnas.search.dedupe import Dedupe
from snnas.search.failures import REASON_ATTR
from snnas.search.fidelity import Fidelity
from snnas.spaces import Space

GENOTYPE_ATTR = "genotype"
SCREENED = "screened"


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

    def threshold(self, study: optuna.Study, attr: str) -> float | None:
        seen = sorted(t.user_attrs[attr] for t in study.get_trials(deepcopy=False) if attr in t.user_attrs)
        if len(seen) < self.min_seen:
            return None
        return seen[min(len(seen) - 1, int((1.0 - self.keep) * len(seen)))]


@dataclass
class SearchObjective:
    """One phase's objective. ``splits`` is loaded once per process and shared by all trials."""

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

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def genotype_for(self, trial: optuna.Trial) -> Genotype:
        given = trial.user_attrs.get(GENOTYPE_ATTR)
        if given is not None:  # promoted or enqueued by genotype
            return Genotype.from_str(given)
        if self.space is None:
            raise SnnasError("this phase takes only enqueued genotypes")
        return self.space.suggest(trial)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        started = time.monotonic()
        fid = self.fidelity
        genotype = self.genotype_for(trial)
        canonical = built_genotype(genotype, fid.fit, self.splits.resolution)  # the network that trains
        trial.set_user_attr(GENOTYPE_ATTR, genotype.to_str())
        trial.set_user_attr("canonical", canonical.to_str())
        trial.set_user_attr("phase", fid.phase)
        trial.set_user_attr("data", fid.data)
        earlier = self.dedupe.claim(trial, canonical.key, fid.key)
        if earlier is not None:
            self.log(f"trial {trial.number}: {canonical.key} already evaluated at this fidelity; reusing")
            self._constrain(trial)  # a reused network breaks the energy limit just as its first evaluation did
            return earlier

        fit = GenotypeFit(canonical, self.splits, fid.fit, device=self.device, allow_large=self.allow_large)
        trial.set_user_attr("params", fit.params)
        is_seed = trial.user_attrs.get("seed_preset") is not None
        if self.screen is not None and not is_seed:
            self._screen(trial, fit.model, fit.probe_batch())
        reporter = TrialReporter(trial, enabled=not self.multi_objective, last_epoch=fit.last_epoch,
                                 prunable=not is_seed)
        work_dir = self.run_dir / "trials" / f"{canonical.key}-{fid.phase}"
        results = fit.run(out_dir=work_dir, callbacks=[reporter], resume=True, progress=self.progress)
        history = fit_history(results)
        if results and results[0].resumed_from:
            trial.set_user_attr("resumed_from_epoch", results[0].resumed_from)
        last = history[-1] if history else {}
        val_acc = last.get("val_acc")
        for name, value in fit.measure().items():
            trial.set_user_attr(name, value)
        trial.set_user_attr("wall_s", round(time.monotonic() - started, 2))
        trial.set_user_attr("epochs_run", len(history))
        if reporter.pruned_at is not None:
            trial.set_user_attr(REASON_ATTR, f"pruned by the pruner after epoch {reporter.pruned_at}")
            raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_at}")
        if val_acc is None:
            raise SnnasError("training ended without a validation accuracy")
        trial.set_user_attr("val_acc", float(val_acc))
        self._save(trial, fit.model, canonical, float(val_acc))
        sops = trial.user_attrs["sops"]
        self._constrain(trial)
        values = {"acc": float(val_acc), "sops": float(sops), "energy": float(trial.user_attrs["energy_mj"])}
        return [values[o] for o in self.objectives] if self.multi_objective else values[self.objectives[0]]

    def _constrain(self, trial: optuna.Trial) -> None:
        """``--max-sops`` as Optuna's constraint (feasible at <= 0), from the trial's measured SOPs."""
        if self.max_sops is not None and isinstance(trial.user_attrs.get("sops"), (int, float)):
            trial.set_constraint("sops", float(trial.user_attrs["sops"]) - self.max_sops)

    def _screen(self, trial: optuna.Trial, model: torch.nn.Module, probe: torch.Tensor) -> None:
        attr = f"screen_{self.screen.metric}"
        score = self.screen.score(model, probe)
        threshold = self.screen.threshold(self.dedupe.study, attr)
        trial.set_user_attr(attr, score)
        if threshold is not None and score < threshold:
            trial.set_user_attr(REASON_ATTR, f"{SCREENED}: {self.screen.metric} {score:.4g} < {threshold:.4g}")
            raise optuna.TrialPruned(SCREENED)

    def _save(self, trial: optuna.Trial, model: torch.nn.Module, canonical: Genotype, val_acc: float) -> None:
        from snnas.checkpoint import save_model

        rel = Path("models") / f"{canonical.key}-{self.fidelity.phase}.pt"
        save_model(self.run_dir / rel, model, extra={"val_acc": val_acc, "fidelity": self.fidelity.to_dict(),
                                                     "resolution": self.splits.resolution,
                                                     "trial": trial.number, "study": self.dedupe.study.study_name})
        trial.set_user_attr("model_path", str(rel))
