"""What happens to a trial that goes wrong, so the search goes on and the reason is kept.

A search runs for days over thousands of architectures; some diverge, some do not fit in memory,
some hit a bug. None of that may stop the other workers or vanish without a trace. The policy:

- ``snnas.errors.Diverged`` or a NaN/inf objective value → the trial is *pruned* (it is a valid
  outcome for that architecture: it does not train) with ``fail_reason="diverged"``;
- an out-of-memory error (CUDA or CPU) → the trial *fails* with ``fail_reason="oom"`` after the
  memory it held is released, so the same worker can take the next trial;
- any other exception → the trial *fails* with ``fail_reason`` = the exception's one-line message
  (its traceback goes to the log).

The reason is stored in the trial's user attributes before the trial ends, and
:func:`list_failures` reads it back for leaderboards. Failures leave the objective as
:class:`TrialFailed`, which :data:`FAILURE_CATCH` lets ``study.optimize(catch=...)`` or
:func:`snnas.study.workers.run_worker` absorb. Torch is never imported here: when torch was
never imported, no torch error can occur.
"""
from __future__ import annotations

import functools
import gc
import logging
import math
import sys
import traceback
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from snnas.errors import Diverged
from snnas.redact import redact_text
from snnas.study.adapter import RETRY_HISTORY_ATTR
from snnas.study.attrs import DETAIL_ATTR, REASON_ATTR

_logger = logging.getLogger(__name__)

DIVERGED = "diverged"
OOM = "oom"
INTERRUPTED = "interrupted"
_MAX_REASON_CHARS = 300


class TrialFailed(Exception):
    """A trial failed for ``reason``; raised out of a guarded objective so the study can go on."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(reason if not detail or detail == reason else f"{reason}: {detail}")


FAILURE_CATCH: tuple[type[Exception], ...] = (TrialFailed,)


class UnrecordedResult(Exception):
    """A trial trained to ``values`` but its result could not be stored (the weights' upload, an
    attribute write). The worker logs the values, fails the trial and queues it again: its
    checkpoints are kept, so the retry resumes from the last one instead of training anew."""

    def __init__(self, values: Any, cause: str, kept: str = ""):
        self.values, self.cause, self.kept = values, cause, kept
        super().__init__(cause)


class Superseded(Exception):
    """Another worker took this worker's trial over (its heartbeat lapsed and the trial was failed
    and retried): stop, and touch none of the files the retry now owns."""


def format_values(values: Any) -> str:
    """An objective's value(s) for a log line."""
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
        return "[" + ", ".join(format_values(v) for v in values) + "]"
    return f"{values:.4g}" if isinstance(values, Real) else str(values)


def one_line(text: Any, limit: int = _MAX_REASON_CHARS) -> str:
    """Collapse whitespace, hide URL passwords and cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    line = redact_text(line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    message = one_line(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CPU ``MemoryError``, torch/CUDA ``OutOfMemoryError`` and "out of memory" RuntimeErrors,
    also when wrapped as the cause of another exception."""
    torch = sys.modules.get("torch")
    oom_types: tuple[type, ...] = (MemoryError,)
    if torch is not None:
        candidates = (getattr(torch, "OutOfMemoryError", None), getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
        oom_types += tuple(t for t in candidates if isinstance(t, type))
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, oom_types):
            return True
        if isinstance(current, RuntimeError) and "out of memory" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def free_memory() -> None:
    """Return what a failed trial held: Python garbage first, then CUDA's cached blocks."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except RuntimeError:  # a broken CUDA context must not mask the trial's own failure
            _logger.warning("could not empty the CUDA cache after an out-of-memory trial")


def _is_bad_number(value: Any) -> bool:
    return isinstance(value, Real) and not math.isfinite(float(value))


def _has_bad_value(value: Any) -> bool:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return any(_is_bad_number(v) for v in value)
    return _is_bad_number(value)


def _record(trial: optuna.Trial, reason: str, detail: str) -> None:
    try:
        trial.set_user_attr(REASON_ATTR, reason)
        if detail and detail != reason:
            trial.set_user_attr(DETAIL_ATTR, detail)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker took the trial over; the worker says so once it sees its state


def guarded(objective: Callable[[optuna.Trial], Any]) -> Callable[[optuna.Trial], Any]:
    """Wrap ``objective`` with the failure policy (idempotent: wrapping twice changes nothing)."""
    if getattr(objective, "__snnas_guarded__", False):
        return objective

    @functools.wraps(objective)
    def run(trial: optuna.Trial) -> Any:
        failure: tuple[str, str] | None = None
        try:
            value = objective(trial)
        except (optuna.TrialPruned, TrialFailed, UnrecordedResult, Superseded):
            raise
        except Diverged as exc:
            detail = one_line(exc)
            _record(trial, DIVERGED, detail)
            raise optuna.TrialPruned(f"{DIVERGED}: {detail}") from None
        except Exception as exc:  # noqa: BLE001 - the policy: any error fails only this trial
            if is_out_of_memory(exc):
                failure = (OOM, describe_exception(exc))
                # The traceback's frames hold the tensors that filled the memory; drop them.
                traceback.clear_frames(exc.__traceback__)
            else:
                failure = (describe_exception(exc), "")
                _logger.warning("trial %d failed: %s", trial.number, failure[0], exc_info=True)
        else:
            if _has_bad_value(value):
                detail = f"objective value {value!r} is not finite"
                _record(trial, DIVERGED, detail)
                raise optuna.TrialPruned(f"{DIVERGED}: {detail}")
            return value
        # Outside the except block: the exception and its frames are gone now.
        reason, detail = failure
        if reason == OOM:
            free_memory()
            _logger.warning("trial %d ran out of memory (%s); memory released", trial.number, detail)
        _record(trial, reason, detail)
        raise TrialFailed(reason, detail)

    run.__snnas_guarded__ = True  # type: ignore[attr-defined]
    return run


# --------------------------------------------------------------------------------------------
# Reading failures back
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FailureRecord:
    """A failed or pruned trial and why, for leaderboards."""

    number: int
    state: str  # "FAIL" | "PRUNED"
    reason: str
    detail: str = ""
    key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    retried_as: int | None = None


def list_failures(study: optuna.Study, include_pruned: bool = True, key_attr: str | None = None) -> list[FailureRecord]:
    """Every failed (and, by default, pruned) trial with its reason, by trial number; ``key_attr``
    names the user attribute that says what a trial evaluated (the search's architecture key).

    A failed trial without a recorded reason is one whose worker vanished: its heartbeat stopped
    and a live worker failed it (and re-queued it, ``retried_as``).
    """
    trials = study.get_trials(deepcopy=False)
    retried_as: dict[int, int] = {}
    for t in trials:
        history = t.system_attrs.get(RETRY_HISTORY_ATTR) or []
        if history:
            retried_as[int(history[-1])] = t.number
    states = (TrialState.FAIL, TrialState.PRUNED) if include_pruned else (TrialState.FAIL,)
    records = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in states:
            continue
        reason = t.user_attrs.get(REASON_ATTR)
        if reason is None:
            reason = _implicit_reason(t, retried_as.get(t.number))
        records.append(FailureRecord(number=t.number, state=t.state.name, reason=str(reason),
                                     detail=str(t.user_attrs.get(DETAIL_ATTR, "")),
                                     key=t.user_attrs.get(key_attr) if key_attr else None, params=dict(t.params),
                                     retried_as=retried_as.get(t.number)))
    return records


def _implicit_reason(trial: FrozenTrial, retried_as: int | None) -> str:
    if trial.state == TrialState.PRUNED:
        return "pruned" if trial.last_step is None else f"pruned at step {trial.last_step}"
    if retried_as is not None:
        return f"worker lost (no heartbeat); retried as trial {retried_as}"
    return "worker lost (no heartbeat) or failed without a recorded reason"


def failures_markdown(records: Sequence[FailureRecord]) -> str:
    """A Markdown table of failures for ``report.md``."""
    if not records:
        return "No failed or pruned trials.\n"
    lines = ["| trial | state | reason | key |", "|---:|---|---|---|"]
    for r in records:
        reason = r.reason.replace("|", "\\|")
        lines.append(f"| {r.number} | {r.state.lower()} | {reason} | {r.key or ''} |")
    return "\n".join(lines) + "\n"
