"""A progress display for a search phase: trials n/N, best so far, ETA (tqdm)."""
from __future__ import annotations

import sys

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


class ProgressDisplay:
    def __init__(self, phase: str, total: int, study: optuna.Study, enabled: bool = True):
        self.phase, self.total, self.study, self.enabled = phase, total, study, enabled
        self.bar = None

    def __enter__(self) -> "ProgressDisplay":
        done = len(self.study.get_trials(deepcopy=False, states=_COUNTED))
        self.bar = tqdm(total=self.total, initial=min(done, self.total), desc=self.phase, unit="trial",
                        disable=not self.enabled, file=sys.stderr, dynamic_ncols=True)
        self._postfix()
        return self

    def _postfix(self) -> None:
        done = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
        best = max((t.values[0] for t in done), default=None)
        pruned = len(self.study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
        failed = len(self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        self.bar.set_postfix_str(f"best {best:.4f}" if best is not None else "best -", refresh=False)
        self.bar.set_description_str(f"{self.phase} (pruned {pruned}, failed {failed})", refresh=True)

    def update(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in _COUNTED:
            self.bar.update(1)
        self._postfix()

    def refresh(self) -> None:
        """Catch up with the study (trials finished by other processes); redraws only on a change."""
        done = min(self.total, len(self.study.get_trials(deepcopy=False, states=_COUNTED)))
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)
            self._postfix()

    def __exit__(self, *exc) -> None:
        self.bar.close()
