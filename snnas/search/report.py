"""``report.md`` of a search: the leaderboard, the settings behind its numbers, what failed and
why, and the figures that show how the search went.

A ranking is only as good as the fidelity it was measured at, so the report puts the two phases'
settings beside the table; and a search that silently lost half its trials is not a search, so
every failed or pruned trial is listed with its reason.
"""
from __future__ import annotations

import datetime as _dt
import os
import shlex
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from snnas.files import atomic_write_text
from snnas.groundtruth import Table, find_table
from snnas.plots.genes import Skipped, accuracy_study, plot_importances, plot_slices, plot_timeline
from snnas.search.attrs import OBJECTIVE_DIRECTIONS, StudyAttrs, TrialAttrs, attr_name
from snnas.search.leaderboard import (Leaderboard, best_per_key, build_leaderboard, is_reuse, format_markdown,
                                      format_terminal)
from snnas.study.failures import FailureRecord, failures_markdown, list_failures

REPORT_NAME = "report.md"
PLOTS_DIR = "plots"
TOP_FIRING = 3
MAX_FAILURE_ROWS = 200  # a long search can fail thousands of times for one reason; the counts say it all

FIDELITY_FIELDS = (("data", "data"), ("epochs", "epochs"), ("timesteps", "time steps T"),
                   ("resolution", "resolution (px)"), ("train_per_class", "train images / class"),
                   ("val_per_class", "val images / class"), ("width_mult", "width multiplier"),
                   ("batch_size", "batch size"), ("recipe", "recipe"), ("seed", "seed"),
                   ("data_seed", "data seed"), ("key", "fidelity key"))


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def _points(trials: Sequence[FrozenTrial]):
    from snnas.plots.search import TrialPoint

    points = []
    for t in sorted(trials, key=lambda t: t.number):
        if is_reuse(t) or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue  # a reuse repeats an earlier result; failures have no accuracy
        acc = t.values[0] if t.state == TrialState.COMPLETE and t.values else None
        points.append(TrialPoint(number=t.number, acc=acc, state=t.state.name,
                                 seed=bool(TrialAttrs.of(t).seed_preset),
                                 curve=dict(sorted(t.intermediate_values.items()))))
    return points


def _pareto_points(trials: Sequence[FrozenTrial], names: Mapping[str, str], cost: str = "sops"):
    """One point per network: its best accuracy against ``cost`` (a :class:`TrialAttrs` field)."""
    from snnas.plots.search import ParetoPoint

    out = []
    for key, t in best_per_key(trials).items():
        value = getattr(TrialAttrs.of(t), cost)
        if isinstance(value, (int, float)):
            out.append(ParetoPoint(acc=float(t.values[0]), cost=float(value), label=names.get(key) or key[:8],
                                   seed=bool(TrialAttrs.of(t).seed_preset)))
    return out


def write_plots(phase1: optuna.Study, phase2: optuna.Study | None, board: Leaderboard,
                plots_dir: Path) -> dict[str, Path | Skipped]:
    """The report's figures; returns {caption: path, or why it was not drawn}."""
    from snnas.plots.search import plot_firing_rates, plot_history, plot_intermediate, plot_pareto

    trials1 = phase1.get_trials(deepcopy=False)
    trials2 = phase2.get_trials(deepcopy=False) if phase2 is not None else []
    names = {r.key: r.name for r in board.rows if r.name}
    attrs = StudyAttrs.of(phase1)
    data1 = (attrs.fidelity_phase1 or {}).get("data", "")
    data2 = (attrs.fidelity_phase2 or {}).get("data", "")
    title1 = f"phase 1, {data1}" if data1 else "phase 1"
    title2 = f"phase 2, {data2}" if data2 else "phase 2"
    plots: dict[str, Path] = {}
    plots["Optimization history"] = plot_history(_points(trials1), plots_dir / "history.png", title1)
    panels = [(title1, _points(trials1))]
    if trials2:
        panels.append((title2, _points(trials2)))
    plots["Learning curves (intermediate values)"] = plot_intermediate(panels, plots_dir / "intermediate.png")
    plots["Accuracy vs SOPs (Pareto front)"] = plot_pareto(_pareto_points(trials1, names), plots_dir / "pareto.png",
                                                           title1)
    plots["Accuracy vs energy, phase 1 (Pareto front)"] = plot_pareto(
        _pareto_points(trials1, names, "energy_mj"), plots_dir / "pareto_energy.png", title1, cost="energy")
    if trials2:  # the promoted networks again, by their phase-2 accuracy
        plots["Accuracy vs energy, phase 2 (Pareto front)"] = plot_pareto(
            _pareto_points(trials2, names, "energy_mj"), plots_dir / "pareto_energy_phase2.png", title2, cost="energy")
    top = [r for r in board.rows if r.firing_rates][:TOP_FIRING]
    series = [(f"#{r.rank} {r.label} ({r.phase.replace('phase', 'phase ')})", r.firing_rates) for r in top]
    plots[f"Firing rates per layer, top {TOP_FIRING}"] = plot_firing_rates(series, plots_dir / "firing_top.png")
    plots.update(gene_plots(phase1, plots_dir, title1))
    return plots


def gene_plots(phase1: optuna.Study, plots_dir: Path, title: str = "phase 1") -> dict[str, Path | Skipped]:
    """Which gene, in which stage, the accuracy depends on (Optuna's importances and slice plot
    over phase 1's networks, reuses left out: one network counts once), and the phase's timeline."""
    trials = phase1.get_trials(deepcopy=False)
    accuracy = accuracy_study(trials, leave_out={t.number for t in trials if is_reuse(t)})
    return {"Gene importances (which gene, in which stage)": plot_importances(accuracy, plots_dir / "importances.png",
                                                                              title),
            "Accuracy by gene and stage (slice plot)": plot_slices(accuracy, plots_dir / "slices.png", title),
            "Timeline of the trials": plot_timeline(phase1, plots_dir / "timeline.png", title)}


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    return "-" if value is None else str(value).replace("|", "\\|")


def fidelity_markdown(fid1: Mapping[str, Any] | None, fid2: Mapping[str, Any] | None) -> str:
    if not fid1 and not fid2:
        return "No fidelity recorded in the study.\n"
    columns = [("phase 1 (proxy)", fid1 or {})] + ([("phase 2 (promoted)", fid2)] if fid2 else [])
    lines = ["| setting | " + " | ".join(c for c, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for field, label in FIDELITY_FIELDS:
        values = [_cell(f.get(field)) for _, f in columns]
        if field == "key":
            values = [f"`{v}`" if v != "-" else v for v in values]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _failures_section(title: str, records: Sequence[FailureRecord]) -> list[str]:
    lines = [f"### {title}", ""]
    if records:
        reasons = Counter((r.state.lower(), r.reason) for r in records)
        lines += ["| count | state | reason |", "|---:|---|---|"]
        for (state, reason), n in reasons.most_common():
            lines.append(f"| {n} | {state} | {reason.replace('|', chr(92) + '|')} |")
        lines.append("")
        shown = records[:MAX_FAILURE_ROWS]
        lines.append(failures_markdown(shown).rstrip("\n"))
        if len(records) > len(shown):
            lines.append(f"\n... and {len(records) - len(shown)} more (trials after #{shown[-1].number}).")
    else:
        lines.append(failures_markdown(records).rstrip("\n"))
    return lines + [""]


def export_command(study_name: str, run_dir: Path, rank: int = 1) -> str:
    parts = ["python", "scripts/export.py", "--study", study_name]
    if run_dir.parent != Path("runs"):
        parts += ["--runs", str(run_dir.parent)]
    parts += ["--rank", str(rank), "--out", "exports/"]
    return " ".join(shlex.quote(p) for p in parts)


def report_markdown(phase1: optuna.Study, phase2: optuna.Study | None, board: Leaderboard, run_dir: Path,
                    plots: Mapping[str, Path | Skipped], truth: Table | None = None) -> str:
    attrs = StudyAttrs.of(phase1, phase2)
    fid1, fid2 = attrs.fidelity_phase1, attrs.fidelity_phase2
    objectives = board.objectives
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Search report: {phase1.study_name}", ""]
    space = attrs.space
    if space:
        source = attrs.space_source
        lines.append(f"- space: `{space}`" + (f" (`{source}`)" if source else ""))
    lines.append("- objectives: " + ", ".join(f"{o} ({OBJECTIVE_DIRECTIONS.get(o, '?')})" for o in objectives))
    if attrs.sampler:
        lines.append(f"- sampler: {attrs.sampler}")
    lines.append(f"- written: {now}")
    lines += ["", "## Leaderboard", ""]
    d1 = (fid1 or {}).get("data", "phase-1 data")
    if board.phase2 is not None and board.phase2.networks:
        d2 = (fid2 or {}).get("data", "phase-2 data")
        lines.append(f"Networks promoted to phase 2 come first, ranked by their phase-2 accuracy ({d2}); the "
                     f"others follow by phase-1 accuracy ({d1}).")
    else:
        lines.append(f"Ranked by phase-1 validation accuracy ({d1}).")
    lines.append("One row per network (canonical key); params, SOPs (per image), energy and firing rate are "
                 "those of the run that ranks the row, measured on a validation batch after training.")
    if board.phase1_fidelities > 1:
        lines.append(f"\n**Warning:** phase-1 results come from {board.phase1_fidelities} different fidelities "
                     "(the study was continued with other settings); their accuracies are not comparable.")
    lines += ["", format_markdown(board, truth).rstrip("\n"), ""]
    if board.rows:
        lines += ["Export the best network (genotype, weights, picture, card):", "",
                  f"    {export_command(phase1.study_name, run_dir)}", "",
                  "(add `--storage URL` when the study is not in the default SQLite file).", ""]
    lines += ["## Fidelities", "", fidelity_markdown(fid1, fid2).rstrip("\n"), ""]
    lines += ["## Plots", ""]
    for caption, path in plots.items():
        if isinstance(path, Skipped):
            lines += [f"### {caption}", "", f"Not drawn: {path.reason}.", ""]
            continue
        rel = path.relative_to(run_dir) if path.is_relative_to(run_dir) else path
        lines += [f"### {caption}", "", f"![{caption}]({rel.as_posix()})", ""]
    lines += ["## Failed and pruned trials", ""]
    lines += _failures_section("Phase 1", list_failures(phase1, key_attr=attr_name("key")))
    if phase2 is not None:
        lines += _failures_section("Phase 2", list_failures(phase2, key_attr=attr_name("key")))
    return "\n".join(lines).rstrip("\n") + "\n"


def study_groundtruth(phase1: optuna.Study, directory: str | os.PathLike | None = None) -> Table | None:
    """The ground-truth table trained on a phase's data (phase 2's first, then phase 1's), if any."""
    attrs = StudyAttrs.of(phase1)
    for fid in (attrs.fidelity_phase2 or {}, attrs.fidelity_phase1 or {}):
        if fid.get("data"):
            table = find_table(fid["data"], int(fid.get("data_seed") or 0), directory)
            if table is not None:
                return table
    return None


def write_report(phase1_study: optuna.Study, phase2_study: optuna.Study | None, run_dir: str | os.PathLike,
                 print_leaderboard: bool = True, truth: Table | None = None) -> Path:
    """Write ``run_dir/report.md`` and its plots under ``run_dir/plots/``; print the terminal
    leaderboard when asked. ``truth`` (a ground-truth table) puts full-training accuracy beside
    the proxy's. Returns the report's path."""
    run_dir = Path(run_dir)
    board = build_leaderboard(phase1_study, phase2_study)
    if print_leaderboard:
        print(format_terminal(board, truth=truth))
    plots = write_plots(phase1_study, phase2_study, board, run_dir / PLOTS_DIR)
    text = report_markdown(phase1_study, phase2_study, board, run_dir, plots, truth)
    return atomic_write_text(run_dir / REPORT_NAME, text)


__all__ = ["write_report", "write_plots", "gene_plots", "report_markdown", "fidelity_markdown", "export_command",
           "study_groundtruth"]
