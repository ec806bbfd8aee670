"""Figures of a search (matplotlib, Agg backend): how the search went and what it found.

The functions take plain data (numbers, labels, dicts), not studies, so they can draw anything a
study, a JSON dump or a test produces. Every PNG is written atomically.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnas.plots.files import save_png  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: E402

SEED_COLOUR = "#d62728"
SAMPLED_COLOUR = "#1f77b4"
PRUNED_COLOUR = "#9a9a9a"
BEST_COLOUR = "#2ca02c"
DPI = 130


@dataclass(frozen=True)
class TrialPoint:
    """One trial of a phase as the plots see it. ``acc`` is None unless the trial completed."""

    number: int
    acc: float | None
    state: str  # "COMPLETE" | "PRUNED" | "FAIL" | ...
    seed: bool = False
    curve: Mapping[int, float] = field(default_factory=dict)  # epoch -> val acc


@dataclass(frozen=True)
class ParetoPoint:
    acc: float
    cost: float  # SOPs or energy per image: lower is better
    label: str
    seed: bool = False


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#555555",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------------------------
# Optimization history
# --------------------------------------------------------------------------------------------
def plot_history(points: Sequence[TrialPoint], path: str | os.PathLike, title: str = "phase 1") -> Path:
    """Accuracy of every completed trial by trial number, seeds apart from sampled trials, with
    the best so far as a step line: whether the sampler beat the published networks shows at a
    glance. Pruned trials appear at the last accuracy they reported."""
    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    done = [p for p in points if p.acc is not None]
    pruned = [p for p in points if p.acc is None and p.state == "PRUNED" and p.curve]
    if not done and not pruned:
        _empty(ax, "no completed trials yet")
    else:
        for seed, colour, marker, label in ((True, SEED_COLOUR, "s", "seed (enqueued preset)"),
                                            (False, SAMPLED_COLOUR, "o", "sampled")):
            chosen = [p for p in done if p.seed == seed]
            if chosen:
                ax.scatter([p.number for p in chosen], [100 * p.acc for p in chosen], c=colour, marker=marker,
                           s=30, label=f"{label} ({len(chosen)})", zorder=3)
        if pruned:
            last = [p.curve[max(p.curve)] for p in pruned]
            ax.scatter([p.number for p in pruned], [100 * v for v in last], c=PRUNED_COLOUR, marker="x", s=24,
                       label=f"pruned, last reported ({len(pruned)})", zorder=2)
        if done:
            ordered = sorted(done, key=lambda p: p.number)
            best, xs, ys = -math.inf, [], []
            for p in ordered:
                best = max(best, p.acc)
                xs.append(p.number)
                ys.append(100 * best)
            xs.append(max(p.number for p in points))
            ys.append(ys[-1])
            ax.step(xs, ys, where="post", color=BEST_COLOUR, linewidth=1.6, label="best so far", zorder=4)
        ax.set_xlabel("trial number")
        ax.set_ylabel("validation accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
    ax.set_title(f"Optimization history ({title})")
    fig.tight_layout()
    return save_png(fig, path, DPI)


# --------------------------------------------------------------------------------------------
# Intermediate values (learning curves)
# --------------------------------------------------------------------------------------------
def plot_intermediate(panels: Sequence[tuple[str, Sequence[TrialPoint]]], path: str | os.PathLike) -> Path:
    """Validation accuracy per epoch of every trial, one panel per phase: completed trials in
    colour, pruned ones grey and dashed, so where Hyperband stopped trials is visible."""
    panels = list(panels) or [("phase 1", [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels):
        curves = [p for p in points if p.curve]
        if not curves:
            _empty(ax, "no per-epoch values reported\n(multi-objective studies report none)")
            ax.set_title(f"Learning curves ({title})")
            continue
        for p in curves:
            epochs = sorted(p.curve)
            values = [100 * p.curve[e] for e in epochs]
            if p.state == "PRUNED":
                ax.plot(epochs, values, color=PRUNED_COLOUR, linestyle="--", linewidth=0.9, alpha=0.8,
                        marker="x", markersize=3)
            else:
                ax.plot(epochs, values, color=SEED_COLOUR if p.seed else SAMPLED_COLOUR, linewidth=1.1,
                        alpha=0.75, marker="o", markersize=3)
        handles = [Line2D([0], [0], color=SAMPLED_COLOUR, marker="o", markersize=3, label="completed (sampled)"),
                   Line2D([0], [0], color=SEED_COLOUR, marker="o", markersize=3, label="completed (seed)"),
                   Line2D([0], [0], color=PRUNED_COLOUR, linestyle="--", marker="x", markersize=3, label="pruned")]
        present = {"completed (sampled)": any(p.state != "PRUNED" and not p.seed for p in curves),
                   "completed (seed)": any(p.state != "PRUNED" and p.seed for p in curves),
                   "pruned": any(p.state == "PRUNED" for p in curves)}
        ax.legend(handles=[h for h in handles if present[h.get_label()]], loc="lower right", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_title(f"Learning curves ({title}, {len(curves)} trials)")
    fig.tight_layout()
    return save_png(fig, path, DPI)


# --------------------------------------------------------------------------------------------
# Pareto front: accuracy vs SOPs
# --------------------------------------------------------------------------------------------
COST_LABELS = {"SOPs": "SOPs per image (synaptic operations)", "energy": "energy per image (mJ, estimate)"}


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The non-dominated points (higher accuracy, lower cost), by increasing cost."""
    front: list[ParetoPoint] = []
    best_acc = -math.inf
    for p in sorted(points, key=lambda p: (p.cost, -p.acc)):
        if p.acc > best_acc:
            front.append(p)
            best_acc = p.acc
    return front


def plot_pareto(points: Sequence[ParetoPoint], path: str | os.PathLike, title: str = "phase 1",
                cost: str = "SOPs") -> Path:
    """Accuracy against a cost per image (``cost``: SOPs or energy) for every evaluated network;
    the non-dominated ones are joined, highlighted and named. The cost goes on a log axis when it
    spans more than a decade."""
    fig, ax = plt.subplots(figsize=(9.0, 5.2))
    points = [p for p in points if math.isfinite(p.acc) and math.isfinite(p.cost) and p.cost >= 0]
    if not points:
        _empty(ax, f"no completed trial with {cost} yet")
    else:
        front = pareto_front(points)
        on_front = {id(p) for p in front}
        rest = [p for p in points if id(p) not in on_front]
        if rest:
            ax.scatter([p.cost for p in rest], [100 * p.acc for p in rest], c=PRUNED_COLOUR, s=22,
                       label=f"dominated ({len(rest)})", zorder=2)
        ax.step([p.cost for p in front], [100 * p.acc for p in front], where="post", color=SEED_COLOUR,
                linewidth=1.2, alpha=0.7, zorder=3)
        ax.scatter([p.cost for p in front], [100 * p.acc for p in front], c=SEED_COLOUR, s=46, edgecolors="black",
                   linewidths=0.6, label=f"Pareto front ({len(front)})", zorder=4)
        for i, p in enumerate(front):
            ax.annotate(p.label, (p.cost, 100 * p.acc), xytext=(6, 8 if i % 2 == 0 else -12),
                        textcoords="offset points", fontsize=7.5,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
        positive = [p.cost for p in points if p.cost > 0]
        if positive and max(positive) / min(positive) > 10:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel(COST_LABELS.get(cost, cost))
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="lower right", fontsize=8, framealpha=0.85,
                  title="front: preset name or key prefix", title_fontsize=7)
        ax.margins(x=0.12, y=0.1)
    ax.set_title(f"Accuracy vs {cost} ({title})")
    fig.tight_layout()
    return save_png(fig, path, DPI)


# --------------------------------------------------------------------------------------------
# Firing rates per layer of the top networks
# --------------------------------------------------------------------------------------------
_STAGE_RE = re.compile(r"^(stages\.\d+)\.")


def _stage_of(layer: str) -> str:
    m = _STAGE_RE.match(layer)
    return m.group(1) if m else layer.split(".")[0]


def _stage_starts(layout: Sequence[str]) -> list[int]:
    """1-based layer indices where a new ``stages.N`` begins."""
    starts, previous = [], None
    for index, stage in enumerate(layout, start=1):
        if stage != previous and stage.startswith("stages."):
            starts.append(index)
        previous = stage
    return starts


def _mark_shared_stages(ax, layout: Sequence[str]) -> None:
    for index in _stage_starts(layout):
        if index > 1:
            ax.axvline(index - 0.5, color="#999999", linestyle=":", linewidth=0.8)
        ax.text(index - 0.4, 1.0, layout[index - 1].replace("stages.", "stage "), transform=ax.get_xaxis_transform(),
                fontsize=7, color="#555555", va="bottom", ha="left")


def plot_firing_rates(series: Sequence[tuple[str, Mapping[str, float]]], path: str | os.PathLike,
                      title: str = "Firing rate per spiking layer of the top networks") -> Path:
    """One line per network (layer index in execution order on x), overlaid as in the paper's
    Fig. 3; stage boundaries are marked when every network has the same layer layout."""
    fig, ax = plt.subplots(figsize=(10.0, 5.2))
    series = [(label, rates) for label, rates in series if rates]
    if not series:
        _empty(ax, "no firing rates recorded")
    else:
        cmap = plt.get_cmap("tab10")
        for i, (label, rates) in enumerate(series):
            xs = list(range(1, len(rates) + 1))
            ax.plot(xs, list(rates.values()), marker="o", markersize=3, linewidth=1.3, color=cmap(i % 10),
                    label=label)
        layouts = [tuple(_stage_of(name) for name in rates) for _, rates in series]
        if all(layout == layouts[0] for layout in layouts):
            _mark_shared_stages(ax, layouts[0])
        else:  # each network's own stage starts, as ticks in its colour along the top
            for i, layout in enumerate(layouts):
                starts = _stage_starts(layout)
                ax.scatter(starts, [0.98 - 0.035 * i] * len(starts), marker="v", s=28, color=cmap(i % 10),
                           transform=ax.get_xaxis_transform(), clip_on=False, zorder=5)
            ax.text(0.0, 1.01, "\u25bc stage starts", transform=ax.transAxes, fontsize=7, color="#555555",
                    va="bottom", ha="left")
        ax.set_xlabel("spiking layer (execution order)")
        ax.set_ylabel("firing rate (spikes per neuron per step)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        top = max(max(rates.values()) for _, rates in series)
        ax.set_ylim(bottom=0, top=max(top * 1.3, 1e-3))  # headroom for the legend
        ax.grid(alpha=0.3)
        # below the axes: the layer curves and stage ticks use the whole plot area
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(3, len(series)), fontsize=8,
                  frameon=False)
    ax.set_title(title, pad=14)
    fig.tight_layout()
    return save_png(fig, path, DPI)
