"""The final ranking of a search: one row per network, ranked by the most trustworthy number.

Phase 2 trained the promoted networks on more classes and for longer, so its accuracy outranks
any phase-1 proxy score: the networks with a phase-2 result come first (by that result), then
every other network by its phase-1 accuracy. Networks are identified by their canonical key, so
a genotype that the sampler proposed twice (or its ``dense_add``/``chain`` twin) is one row, and
trials that only reused an earlier result (``dedupe_of``) add nothing.

The metrics shown beside a row (params, SOPs, energy, firing rate; the neurons' own MACs where a
network has a neuron that multiplies, ``gwr``) are those of the run whose accuracy ranks it, which
is also the run whose weights ``export`` hands out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from snnas.errors import SnnasError
from snnas.genotype import Genotype
from snnas.groundtruth import Table, agreement
from snnas.presets import RESNET_WIDTHS
from snnas.search.attrs import StudyAttrs, TrialAttrs
from snnas.search.pareto import Point, front

TERMINAL_WIDTH = 100
ENERGY_REFERENCE_PRESET = "danet_b_resnet18"  # energies are shown as multiples of this network's

# How the terminal names a stage's wiring after its block: chain is the default and says nothing.
_CONNECT_MARKS = {"chain": "", "dense_add": "+da", "dense_concat": "+dc", "edges": "+e"}
_INTERBLOCK_MARKS = {"none": "-", "sn": "sn", "bn_sn": "bs"}


@dataclass(frozen=True)
class PhaseCounts:
    """What happened to a phase's trials. ``reused`` trials took an earlier result of the same network."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    reused: int = 0
    networks: int = 0  # distinct canonical keys with a completed evaluation

    @property
    def total(self) -> int:
        return self.complete + self.pruned + self.failed + self.running


@dataclass(frozen=True)
class Row:
    rank: int
    genotype: str  # the canonical genotype string: the network that was trained
    key: str
    names: tuple[str, ...]  # preset names of the seeds that are this network
    phase1_acc: float | None
    phase2_acc: float | None
    params: int | None
    sops: float | None
    energy_mj: float | None
    firing_rate: float | None
    phase: str  # "phase2" or "phase1": the run that ranks this row and whose weights are exported
    trial: int  # that run's trial number (in the phase-2 study for "phase2")
    phase1_trial: int | None
    model_artifact: str | None  # artifact id of the weights in the study's artifact store
    fidelity: str | None  # the ranking run's fidelity key (data spec, epochs, T, ...)
    firing_rates: Mapping[str, float] = field(default_factory=dict)  # layer -> rate, execution order
    neuron_mac_ops: float | None = None  # the neurons' own MACs (gwr), part of energy_mj

    @property
    def name(self) -> str | None:
        return self.names[0] if self.names else None

    @property
    def label(self) -> str:
        """Short name for plots: the preset name, else the compact genotype summary."""
        return self.name or summarize(self.genotype)


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[Row, ...]
    phase1: PhaseCounts
    phase2: PhaseCounts | None
    objectives: tuple[str, ...] = ("acc",)
    phase1_fidelities: int = 1  # distinct phase-1 fidelity keys among completed trials
    energy_reference: float | None = None  # DANet-B-18's energy when the search evaluated it

    def energy_ratio(self, row: Row) -> float | None:
        """A row's energy per image as a multiple of DANet-B-18's (the paper's best ResNet-18)."""
        if row.energy_mj is None or not self.energy_reference:
            return None
        return row.energy_mj / self.energy_reference

    def on_front(self) -> set[str]:
        """Keys of the rows no other row dominates in (accuracy, energy): each row by the accuracy
        that ranks it, so the phase-2 networks are compared by their phase-2 results among themselves
        and the rest by phase 1."""
        out: set[str] = set()
        for phase in ("phase2", "phase1"):
            rows = [r for r in self.rows if r.phase == phase and r.energy_mj is not None]
            acc = [(r.phase2_acc if phase == "phase2" else r.phase1_acc) for r in rows]
            points = [Point(r.key, (a, r.energy_mj)) for r, a in zip(rows, acc) if a is not None]
            out |= {p.key for p in front(points, ("acc", "energy"))}
        return out

    def top(self, n: int) -> tuple[Row, ...]:
        return self.rows[:n]


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def is_reuse(trial: FrozenTrial) -> bool:
    """Whether the trial reused an earlier evaluation of its network instead of training it."""
    return TrialAttrs.of(trial).dedupe_of is not None


def _acc(trial: FrozenTrial) -> float | None:
    """Validation accuracy of a completed trial: its first objective (acc is always first)."""
    values = trial.values or []
    if values and values[0] is not None and math.isfinite(values[0]):
        return float(values[0])
    acc = TrialAttrs.of(trial).val_acc
    return float(acc) if isinstance(acc, (int, float)) else None


def _key(trial: FrozenTrial) -> str | None:
    attrs = TrialAttrs.of(trial)
    key = attrs.key or attrs.promoted_key
    return str(key) if key else None


def _counts(trials: Sequence[FrozenTrial]) -> PhaseCounts:
    by_state = {s: 0 for s in TrialState}
    for t in trials:
        by_state[t.state] += 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return PhaseCounts(complete=by_state[TrialState.COMPLETE], pruned=by_state[TrialState.PRUNED],
                       failed=by_state[TrialState.FAIL], running=by_state[TrialState.RUNNING],
                       reused=sum(1 for t in complete if is_reuse(t)),
                       networks=len({_key(t) for t in complete if _key(t) and _acc(t) is not None}))


def best_per_key(trials: Iterable[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The best original (not reused) completed evaluation of every canonical key, best first;
    ties go to the earlier trial."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and not is_reuse(t)
            and _key(t) and _acc(t) is not None]
    done.sort(key=lambda t: (-_acc(t), t.number))
    best: dict[str, FrozenTrial] = {}
    for t in done:
        best.setdefault(_key(t), t)
    return best


def _names_by_key(trials: Iterable[FrozenTrial]) -> dict[str, tuple[str, ...]]:
    """Seed preset names per key, in enqueue order (two presets can be one network: DANet-A is the
    pa_a chain)."""
    names: dict[str, list[str]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        preset, key = TrialAttrs.of(t).seed_preset, _key(t)
        if preset and key and preset not in names.setdefault(key, []):
            names[key].append(str(preset))
    return {k: tuple(v) for k, v in names.items()}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _row(rank: int, ranking: FrozenTrial, phase: str, phase1: FrozenTrial | None,
         names: Mapping[str, tuple[str, ...]]) -> Row:
    attrs = TrialAttrs.of(ranking)
    key = _key(ranking)
    genotype = attrs.canonical or attrs.genotype or ""
    if phase == "phase2":
        p1 = _acc(phase1) if phase1 is not None else _float(attrs.phase1_acc)
        p1_trial = phase1.number if phase1 is not None else _int(attrs.promoted_from)
        p2 = _acc(ranking)
    else:
        p1, p1_trial, p2 = _acc(ranking), ranking.number, None
    rates = attrs.firing_rates
    return Row(rank=rank, genotype=str(genotype), key=str(key), names=names.get(key, ()), phase1_acc=p1,
               phase2_acc=p2, params=_int(attrs.params), sops=_float(attrs.sops),
               energy_mj=_float(attrs.energy_mj), firing_rate=_float(attrs.firing_rate),
               phase=phase, trial=ranking.number, phase1_trial=p1_trial, model_artifact=attrs.model_artifact,
               fidelity=str(attrs.fidelity) if attrs.fidelity is not None else None,
               firing_rates=dict(rates) if isinstance(rates, Mapping) else {},
               neuron_mac_ops=_float(attrs.neuron_mac_ops))


def build_leaderboard(phase1: optuna.Study, phase2: optuna.Study | None = None) -> Leaderboard:
    """Rank every network of ``phase1`` (and the promoted ones of ``phase2``)."""
    trials1 = phase1.get_trials(deepcopy=False)
    trials2 = phase2.get_trials(deepcopy=False) if phase2 is not None else []
    best1 = best_per_key(trials1)
    best2 = best_per_key(trials2)
    names = _names_by_key(trials1)
    rows: list[Row] = []
    for key, trial in best2.items():
        rows.append(_row(len(rows) + 1, trial, "phase2", best1.get(key), names))
    for key, trial in best1.items():
        if key not in best2:
            rows.append(_row(len(rows) + 1, trial, "phase1", trial, names))
    fidelities = {str(TrialAttrs.of(t).fidelity) for t in best1.values()}
    objectives = tuple(StudyAttrs.of(phase1).objectives or ("acc",))
    reference = next((r.energy_mj for r in rows if ENERGY_REFERENCE_PRESET in r.names), None)
    return Leaderboard(rows=tuple(rows), phase1=_counts(trials1), phase2=_counts(trials2) if phase2 else None,
                       objectives=objectives, phase1_fidelities=max(1, len(fidelities)), energy_reference=reference)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def _stage_summary(stage) -> str:
    if stage.name:
        block = stage.name
    else:
        branch = "".join(part[0] for part in stage.branch.split("_"))
        block = f"{branch}/{_INTERBLOCK_MARKS.get(stage.interblock, stage.interblock)}/{stage.norm}"
    kind = "" if stage.kind in ("basic", "dense") else stage.kind[:2] + "."
    return kind + block + _CONNECT_MARKS.get(stage.connect, "+" + stage.connect)


def summarize(genotype: str | Genotype) -> str:
    """A compact per-stage summary for narrow tables: ``2-2-2-2 origin+da,tdbn,sew+da,pa_b``
    (depths, then each stage's block and its wiring when not a chain; ``+da`` dense addition,
    ``+dc`` dense concatenation, ``+e`` explicit edges). One stage layout repeated is written once
    with a count (``2-2-2-2 pa_a x4``); a string that does not parse is returned as it is."""
    try:
        g = genotype if isinstance(genotype, Genotype) else Genotype.from_str(genotype)
    except SnnasError:  # a row of an older format still deserves a line
        return str(genotype)
    stages = [_stage_summary(s) for s in g.stages]
    body = f"{stages[0]} x{len(stages)}" if len(set(stages)) == 1 and len(stages) > 1 else ",".join(stages)
    field = g.to_str().split("|", 1)[0]  # the neuron and its non-default settings: gwr(dil=on)
    neuron = "" if field == "if" else field + " "
    widths = tuple(s.width for s in g.stages)
    # a ResNet's own widths say nothing; others are written first (w32-64-128-256)
    standard = widths == RESNET_WIDTHS[:len(widths)] and g.stem_width == 64
    shown = "" if standard or any(s.kind == "dense" for s in g.stages) else "w" + "-".join(map(str, widths)) + " "
    return f"{neuron}{shown}{'-'.join(str(s.depth) for s in g.stages)} {body}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "~"


def fmt_acc(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}"


def fmt_count(value: float | None) -> str:
    """1234567 -> 1.23M: params and SOPs in a few characters."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def fmt_float(value: float | None, digits: int = 3) -> str:
    """Significant digits in few characters: 0.0146, 2.93e-4 (energies in mJ are tiny)."""
    if value is None:
        return "-"
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def counts_lines(board: Leaderboard) -> list[str]:
    """One line per phase: networks, completed (reused), pruned, failed."""
    def one(name: str, c: PhaseCounts) -> str:
        extra = f", {c.running} running" if c.running else ""
        return (f"{name}: {c.networks} networks from {c.complete} completed trials ({c.reused} reused), "
                f"{c.pruned} pruned, {c.failed} failed{extra}")

    lines = [one("phase 1", board.phase1)]
    if board.phase2 is not None:
        lines.append(one("phase 2", board.phase2))
    return lines


_TERMINAL_COLUMNS = (  # header, width, right-aligned, gap before
    ("#", 3, True, 0), ("network", 0, False, 2), ("key", 16, False, 2), ("acc1%", 5, True, 2),
    ("acc2%", 5, True, 1), ("params", 6, True, 1), ("SOPs", 6, True, 1), ("mJ", 7, True, 1), ("xB18", 4, True, 1),
    ("fire", 6, True, 1))


_TRUTH_COLUMN = ("full%", 5, True, 1)
_NEURON_MACS_COLUMN = ("nMACs", 6, True, 1)


def has_neuron_macs(board: Leaderboard) -> bool:
    """Whether any network's neurons multiply (gwr): only then do the tables show their MACs."""
    return any(r.neuron_mac_ops for r in board.rows)


def truth_lines(board: Leaderboard, truth: Table | None) -> list[str]:
    """How each phase's ranking agrees with the ground-truth table's full-training accuracy."""
    if truth is None:
        return []
    fit = truth.settings.get("fit") or {}
    lines = [f"full%: mean test accuracy of full training ({truth.settings.get('data')}, recipe {fit.get('recipe')}, "
             f"{','.join(map(str, fit.get('epochs') or []))} epochs, seeds {truth.seeds()}) from {truth.path}"]
    for phase, attr in (("phase 1", "phase1_acc"), ("phase 2", "phase2_acc")):
        scores = {r.key: getattr(r, attr) for r in board.rows if getattr(r, attr) is not None}
        if sum(1 for k in scores if k in truth.mean_acc()) >= 1:  # describe() says when too few for a tau
            lines.append(f"{phase} vs full training: {agreement(scores, truth).describe()}")
    return lines


def format_terminal(board: Leaderboard, width: int = TERMINAL_WIDTH, limit: int | None = 20,
                    truth: Table | None = None) -> str:
    """A fixed-width table for the terminal: preset name or compact genotype summary per row; with
    a ground-truth ``truth`` table, its full-training accuracy beside the proxy's."""
    neuron_macs = has_neuron_macs(board)
    columns = _TERMINAL_COLUMNS[:5] + ((_TRUTH_COLUMN,) if truth is not None else ()) + _TERMINAL_COLUMNS[5:7] \
        + ((_NEURON_MACS_COLUMN,) if neuron_macs else ()) + _TERMINAL_COLUMNS[7:]
    full = truth.mean_acc() if truth is not None else {}
    fixed = sum(w + gap for _, w, _, gap in columns)
    widths = [w or max(20, width - fixed) for _, w, _, _ in columns]

    def line(cells: Sequence[str]) -> str:
        out = []
        for (_, _, right, gap), w, cell in zip(columns, widths, cells):
            cell = _shorten(cell, w)
            out.append(" " * gap + (cell.rjust(w) if right else cell.ljust(w)))
        return "".join(out).rstrip()

    lines = [line([h for h, _, _, _ in columns]),
             "-" * (sum(widths) + sum(gap for *_, gap in columns))]
    shown = board.rows if limit is None else board.rows[:limit]
    for r in shown:
        network = r.name or summarize(r.genotype)
        if len(r.names) > 1:
            network += f" (+{len(r.names) - 1})"
        cells = [str(r.rank), network, r.key, fmt_acc(r.phase1_acc), fmt_acc(r.phase2_acc)]
        if truth is not None:
            cells.append(fmt_acc(full.get(r.key)))
        cells += [fmt_count(r.params), fmt_count(r.sops)] + ([fmt_count(r.neuron_mac_ops)] if neuron_macs else [])
        lines.append(line(cells + [fmt_float(r.energy_mj, 3), fmt_ratio(board.energy_ratio(r)),
                                   fmt_float(r.firing_rate, 2)]))
    if not board.rows:
        lines.append("(no completed trials yet)")
    elif len(shown) < len(board.rows):
        lines.append(f"... {len(board.rows) - len(shown)} more networks in report.md")
    lines.extend(counts_lines(board))
    if board.energy_reference:
        lines.append(f"xB18: energy per image as a multiple of DANet-B-18's ({fmt_float(board.energy_reference)} mJ)")
    lines.extend(truth_lines(board, truth) if board.rows else [])
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(board: Leaderboard, truth: Table | None = None) -> str:
    """The leaderboard as a Markdown table (full genotype strings); with a ground-truth ``truth``
    table, its full-training accuracy (mean and spread over seeds) beside the proxy's."""
    if not board.rows:
        return "No completed trials yet.\n\n" + "; ".join(counts_lines(board)) + ".\n"
    nets = {n.key: n for n in truth.networks()} if truth is not None else {}
    extra = " full-training test acc % (spread) |" if truth is not None else ""
    neuron_macs = has_neuron_macs(board)
    lines = ["| rank | network | key | phase-1 acc % | phase-2 acc % |" + extra
             + " params | SOPs |" + (" neuron MACs |" if neuron_macs else "")
             + " energy (mJ) | x DANet-B-18 | on the acc-energy front | firing rate |",
             "|---:|---|---|---:|---:|" + ("---:|" if truth is not None else "") + "---:|---:|"
             + ("---:|" if neuron_macs else "") + "---:|---:|:---:|---:|"]
    pareto = board.on_front()
    for r in board.rows:
        network = f"`{_md(r.genotype)}`"
        if r.names:
            network = f"**{' = '.join(r.names)}**<br>{network}"
        full = ""
        if truth is not None:
            n = nets.get(r.key)
            full = f" {fmt_acc(n.mean)} ({100 * n.spread:.1f}) |" if n is not None else " - |"
        nmacs = f" {fmt_count(r.neuron_mac_ops)} |" if neuron_macs else ""
        lines.append(f"| {r.rank} | {network} | `{r.key}` | {fmt_acc(r.phase1_acc)} | {fmt_acc(r.phase2_acc)} |{full} "
                     f"{fmt_count(r.params)} | {fmt_count(r.sops)} |{nmacs} {fmt_float(r.energy_mj)} | "
                     f"{fmt_ratio(board.energy_ratio(r))} | {'yes' if r.key in pareto else ''} | "
                     f"{fmt_float(r.firing_rate)} |")
    notes = "".join(f"\n- {line}" for line in truth_lines(board, truth))
    return "\n".join(lines) + "\n\n" + "; ".join(counts_lines(board)) + "." + ("\n" + notes if notes else "") + "\n"
