"""Which gene matters: Optuna's own figures of a phase (importances, slices, timeline), drawn with
``optuna.visualization.matplotlib`` and written through the package's atomic PNG writer.

The DANet paper asked which connection, in which stage, makes a residual SNN accurate. A space's
parameter names already carry the stage (``s2.block``, ``s3.connect``, ``s1.e0>2``), so Optuna's
parameter importances answer that question per gene and stage; the slice plot shows the accuracy
each choice of each gene reached; the timeline shows where the search spent its time and which
trials failed or were pruned.

Importances are PED-ANOVA's (how much a gene's choices differ between the best networks and all
of them): unlike fANOVA, Optuna's default, it needs no scikit-learn, and it handles genes that only
some networks have (the wiring space's edges). A figure that cannot be drawn is a :class:`Skipped`
with its one-line reason, never an exception: the report notes it and goes on.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.importance import PedAnovaImportanceEvaluator  # noqa: E402
from optuna.trial import FrozenTrial, TrialState, create_trial  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from snnas.errors import one_line  # noqa: E402
from snnas.plots.files import save_png  # noqa: E402
from snnas.study.adapter import quiet_experimental  # noqa: E402

DPI = 130
TARGET = "validation accuracy (%)"
MIN_TRIALS = 2  # importances and slices compare networks: one network compares with nothing
TOP_NETWORKS = 5  # importance for reaching the best 5 networks (PED-ANOVA's advice), kept to 10-50 % of them
SLICE_COLUMNS = 4
TIMELINE_TRIALS = 400  # the most recent trials a timeline shows; more bars are no longer readable


@dataclass(frozen=True)
class Skipped:
    """A figure that was not drawn, and why (one line for the report)."""

    reason: str


def accuracy_study(trials: Sequence[FrozenTrial], leave_out: Collection[int] = ()) -> optuna.Study:
    """An in-memory single-objective study of a phase's accuracy (``values[0]``, in %).

    ``trials`` are all of a phase's trials; completed ones keep their value and genes unless their
    number is in ``leave_out`` (the report leaves out reuses, which would count one network
    twice). Every other trial becomes a failed placeholder, so trial numbers stay those of the
    report. One objective, maximised, also gives Optuna's figures the right direction for
    accuracy in a multi-objective search."""
    study = optuna.create_study(direction="maximize")
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.values and t.number not in leave_out:
            study.add_trial(create_trial(value=100.0 * float(t.values[0]), params=t.params,
                                         distributions=t.distributions))
        else:
            study.add_trial(create_trial(state=TrialState.FAIL))
    return study


def _varying_genes(study: optuna.Study) -> tuple[list[str], str | None]:
    """The genes whose choice differs between ``study``'s completed networks (a gene every network
    chose alike says nothing about accuracy), and why nothing can be drawn (None when it can)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS:
        return [], f"needs at least {MIN_TRIALS} completed networks, the phase has {len(done)}"
    choices: dict[str, set] = {}
    for t in done:
        for name, value in t.params.items():
            choices.setdefault(name, set()).add(value)
    varying = sorted(name for name, values in choices.items() if len(values) > 1)
    if not varying:
        return [], "every completed network made the same choices: no gene varies"
    if len({t.value for t in done}) < 2:
        return [], "every completed network reached the same accuracy"
    return varying, None


def _draw(path: str | os.PathLike, draw) -> Path | Skipped:
    """Run ``draw()`` (which returns the figure to save) with Optuna's experimental warnings off
    and its style changes undone afterwards; an error becomes a Skipped and leaks no figure."""
    before = set(plt.get_fignums())
    try:
        with quiet_experimental(), matplotlib.rc_context(), warnings.catch_warnings():  # Optuna switches to ggplot
            # trials that took no time (reuses, a study made by hand) give a timeline of zero width
            warnings.filterwarnings("ignore", "Attempting to set identical low and high xlims", UserWarning)
            return save_png(draw(), path, DPI)
    except Exception as exc:  # an Optuna figure failing must not take the report with it
        return Skipped(f"Optuna could not draw it ({type(exc).__name__}: {one_line(exc)})")
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def plot_importances(study: optuna.Study, path: str | os.PathLike, title: str = "phase 1") -> Path | Skipped:
    """Horizontal bars, one per gene and stage that varies (``s2.block``), most important first:
    how much the best networks' choices of that gene differ from all networks' choices."""
    genes, reason = _varying_genes(study)
    if reason:
        return Skipped(reason)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    quantile = min(0.5, max(0.1, TOP_NETWORKS / done))
    top = max(1, math.ceil(quantile * done))

    def draw():
        evaluator = PedAnovaImportanceEvaluator(target_quantile=quantile)
        ax = optuna_plots.plot_param_importances(study, evaluator=evaluator, params=genes, target_name=TARGET)
        fig = ax.figure
        fig.set_size_inches(8.5, max(3.6, 1.6 + 0.32 * len(genes)))
        if ax.get_legend() is not None:
            ax.get_legend().remove()  # one objective: the legend would only repeat the label
        ax.set_title("", loc="left")  # Optuna's own title, replaced by one that says what is measured
        ax.set_title(f"Which gene matters ({title}): importance for reaching the best {top} of {done} networks",
                     fontsize=10)
        ax.set_xlabel("importance (PED-ANOVA, normalised to sum 1)")
        ax.set_ylabel("gene (sN. = stage N, from 0)")
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        return fig

    return _draw(path, draw)


def _plain_choices(ax) -> bool:
    """Choice labels without Optuna's quotes; when they would not fit side by side (the wiring
    space's factored blocks), upright. Returns whether they were turned."""
    ticks = ax.get_xticks()
    labels = [t.get_text().strip("'") for t in ax.get_xticklabels()]
    upright = sum(len(label) + 2 for label in labels) > 40
    ax.set_xticks(ticks, labels=labels, fontsize=6.5 if upright else 7.5, rotation=90 if upright else 0)
    return upright


def _reflow(fig, axes: Sequence, columns: int) -> None:
    """Lay Optuna's one row of slice panels out as a grid (its colour bar, sized for one row, goes)."""
    rows = math.ceil(len(axes) / columns)
    upright = [_plain_choices(ax) for ax in axes]
    for extra in [a for a in fig.axes if a not in axes]:
        extra.remove()
    tall_rows = sum(any(upright[r * columns:(r + 1) * columns]) for r in range(rows))
    fig.set_size_inches(3.4 * columns + 1.2, 2.9 * rows + 1.4 * tall_rows + 0.9)
    grid = fig.add_gridspec(rows, columns)
    for i, ax in enumerate(axes):
        ax.set_subplotspec(grid[i // columns, i % columns])
        first = i % columns == 0
        ax.tick_params(axis="y", labelleft=first, labelsize=8)
        ax.set_ylabel(TARGET if first else "", fontsize=8)
        ax.xaxis.label.set_fontsize(9)


def plot_slices(study: optuna.Study, path: str | os.PathLike, title: str = "phase 1") -> Path | Skipped:
    """One panel per gene and stage that varies: the accuracy of every completed network against
    its choice of that gene, coloured by trial number (late trials darker)."""
    genes, reason = _varying_genes(study)
    if reason:
        return Skipped(reason)

    def draw():
        axes = optuna_plots.plot_slice(study, params=genes, target_name=TARGET)
        axes = list(axes.ravel()) if hasattr(axes, "ravel") else [axes]
        fig = axes[0].figure
        points = next(c for c in axes[0].collections if c.get_array() is not None)
        columns = min(SLICE_COLUMNS, len(axes))
        _reflow(fig, axes, columns)
        if len(axes) == 1:
            axes[0].set_title("")  # Optuna's "Slice Plot"; the figure's title says more
        fig.suptitle(f"Accuracy by gene and stage ({title})", fontsize=11)
        width, height = fig.get_size_inches()
        right = 1 - 1.0 / width  # an inch on the right for the colour bar and its labels
        fig.tight_layout(rect=(0, 0, right, 1 - 0.35 / height))
        bar = fig.colorbar(points, cax=fig.add_axes((right + 0.1 / width, 0.15, 0.12 / width, 0.7)))
        bar.set_label("trial number", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        return fig

    return _draw(path, draw)


def plot_timeline(study: optuna.Study, path: str | os.PathLike, title: str = "phase 1") -> Path | Skipped:
    """Each trial as a bar from its start to its end, coloured by state: workers' parallelism,
    slow networks, and when pruning and failures happened."""
    trials = study.get_trials(deepcopy=False)
    if not any(t.datetime_start for t in trials):
        return Skipped("no trial has started yet")
    recent = TIMELINE_TRIALS if len(trials) > TIMELINE_TRIALS else None

    def draw():
        ax = optuna_plots.plot_timeline(study, n_recent_trials=recent)
        fig = ax.figure
        shown = f", last {recent} of {len(trials)} trials" if recent else ""
        ax.set_title(f"Timeline ({title}{shown})", fontsize=11)
        ax.set_xlabel("time of day (H:M:S)")
        ax.set_ylabel("trial number")
        fig.set_size_inches(9.0, min(10.0, max(4.2, 2.0 + 0.05 * len(trials))))
        fig.tight_layout()
        return fig

    return _draw(path, draw)


__all__ = ["Skipped", "accuracy_study", "plot_importances", "plot_slices", "plot_timeline"]
