"""Hand a searched network over: ``DIR/<key>/`` with its genotype, weights, picture and card.

The export is what leaves the search, so it must be self-explaining and never half-written:
everything is written into a temporary directory beside the target and renamed into place, and
the weights are loaded back with :func:`snnas.load_model` (and checked to be the ranked network)
before the directory appears. The weights are those of the run that ranks the network: phase 2
where it was promoted, phase 1 otherwise; the card says which.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial

from snnas.cli.retrain import retrain_command
from snnas.errors import SnnasError, StorageError
from snnas.search.attrs import PHASE2_SUFFIX, StudyAttrs, TrialAttrs
from snnas.search.leaderboard import Leaderboard, Row, build_leaderboard, fmt_acc, fmt_count, fmt_float
from snnas.files import atomic_write_text, shared_mode
from snnas.study.artifacts import (DEFAULT_DIR_NAME, STORE_ATTR, ArtifactStore, ArtifactStoreError,
                                   open_artifact_store, open_recorded_store, parse_artifact_location)

DEFAULT_RUNS = Path("runs")


class ExportError(SnnasError):
    """Nothing (or not that) can be exported: no such rank, a missing or mismatching model file."""


@dataclass
class SearchStudies:
    """A search's studies as stored: phase 1, phase 2 when it ran, and the run directory that
    holds their model files."""

    phase1: optuna.Study
    phase2: optuna.Study | None
    run_dir: Path
    storage_display: str
    artifacts: ArtifactStore

    @property
    def name(self) -> str:
        return self.phase1.study_name


@dataclass(frozen=True)
class ExportResult:
    path: Path
    row: Row
    weights_phase: str


# --------------------------------------------------------------------------------------------
# Opening a finished (or running) search
# --------------------------------------------------------------------------------------------
def _study_dirs(runs: Path) -> list[str]:
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir() if (p / "study.db").is_file())


def open_search(study: str, storage: str | None = None, runs: str | os.PathLike = DEFAULT_RUNS,
                artifacts: str | os.PathLike | None = None) -> SearchStudies:
    """Load study ``study`` (and ``study.phase2``) without creating anything: a wrong name or a
    wrong storage is an error, not a new empty study. Its files are read from ``artifacts``, else
    the store the study records (every search records one), else ``runs/<study>/artifacts``."""
    from snnas.study.storage import describe_storage, open_storage, parse_storage_url

    runs = Path(runs)
    if not study or not study.strip():
        raise StorageError("--study: empty study name")
    if study.endswith(PHASE2_SUFFIX):
        raise StorageError(f"--study {study!r}: name the search's study, {study[: -len(PHASE2_SUFFIX)]!r}; "
                           "its phase 2 is read with it")
    default = runs / study / "study.db"
    if storage is None:
        if not default.is_file():
            known = _study_dirs(runs)
            hint = f"; studies under {runs}/: {', '.join(known)}" if known else ""
            raise StorageError(f"no study {study!r}: {default} does not exist (give --runs DIR where the search "
                               f"wrote DIR/{study}/study.db, or --storage URL){hint}")
    else:
        spec = parse_storage_url(storage)
        if spec.path is not None and not spec.path.is_file():
            raise StorageError(f"storage {spec.display}: {spec.path} does not exist")
    handle = open_storage(storage, default)
    display = describe_storage(handle)
    names = optuna.study.get_all_study_names(storage=handle)
    if study not in names:
        searches = sorted(n for n in names if not n.endswith(PHASE2_SUFFIX))
        listing = ", ".join(searches) if searches else "no studies"
        raise StorageError(f"storage {display} has no study {study!r}; it holds: {listing}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # samplers' experimental-feature warnings: we only read
        phase1 = optuna.load_study(study_name=study, storage=handle)
        phase2 = optuna.load_study(study_name=study + PHASE2_SUFFIX, storage=handle) \
            if study + PHASE2_SUFFIX in names else None
    recorded = phase1.user_attrs.get(STORE_ATTR)
    if artifacts is None and recorded is not None:
        return SearchStudies(phase1, phase2, runs / study, display, open_recorded_store(study, recorded))
    # given, or a study from before stores were recorded: its run directory's
    location = parse_artifact_location(artifacts if artifacts is not None else runs / study / DEFAULT_DIR_NAME)
    if not location.is_s3 and not location.path.is_dir():
        raise ExportError(f"the artifact store {location.text} does not exist (pass --artifacts where the "
                          "workers stored the study's files)")
    return SearchStudies(phase1, phase2, runs / study, display, open_artifact_store(location))


# --------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------
def _trial(study: optuna.Study | None, number: int | None) -> FrozenTrial | None:
    if study is None or number is None:
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            return t
    return None


def _fidelity_of(trial: FrozenTrial | None, known: Mapping[str, Any] | None) -> Mapping[str, Any] | str | None:
    """The fidelity settings of ``trial``: the study's dict when its key matches the trial's, else
    the trial's fidelity key (which spells out every setting)."""
    if trial is None:
        return None
    key = TrialAttrs.of(trial).fidelity
    if known and (key is None or known.get("key") == key):
        return known
    return key


def _describe_fidelity(fid: Mapping[str, Any] | str | None) -> str:
    if fid is None:
        return "-"
    if isinstance(fid, str):
        return f"`{fid}`"
    parts = [str(fid.get("data", "?")), f"{fid.get('epochs', '?')} epochs", f"T={fid.get('timesteps', '?')}"]
    if fid.get("train_per_class") is not None:
        parts.append(f"{fid['train_per_class']} train / class")
    if fid.get("val_per_class") is not None:
        parts.append(f"{fid['val_per_class']} val / class")
    if fid.get("resolution") is not None:
        parts.append(f"{fid['resolution']} px")
    parts.append(f"width x{fid.get('width_mult', '?')}")
    parts.append(f"seed {fid.get('seed', '?')}")
    return ", ".join(parts)


def card_markdown(row: Row, searches: SearchStudies, weights_fidelity: Mapping[str, Any] | None,
                  final_dir: Path) -> str:
    attrs = StudyAttrs.of(searches.phase1, searches.phase2)
    fid1_known, fid2_known = attrs.fidelity_phase1, attrs.fidelity_phase2
    t1 = _trial(searches.phase1, row.phase1_trial)
    t2 = _trial(searches.phase2, row.trial) if row.phase == "phase2" else None
    title = " = ".join(row.names) if row.names else f"network {row.key}"
    lines = [f"# {title}", "",
             f"Rank {row.rank} of study `{searches.name}` (storage {searches.storage_display}).", "",
             f"- key: `{row.key}`",
             f"- genotype: `{row.genotype}`"]
    if row.names:
        lines.append(f"- seed presets that build this network: {', '.join(row.names)}")
    weights = "phase 2 (promoted, more classes and epochs)" if row.phase == "phase2" else \
        "phase 1 (proxy; this network was not promoted to phase 2)"
    lines += [f"- weights in `model.pt`: {weights}, trial {row.trial}"
              + (f" of study `{searches.name}{PHASE2_SUFFIX}`" if row.phase == "phase2" else ""), ""]

    lines += ["## Results", "",
              "| phase | trial | fidelity | val acc % | params | SOPs / image | neuron MACs / image | energy (mJ) | "
              "firing rate |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for phase, trial, acc, known in (("phase 1", t1, row.phase1_acc, fid1_known),
                                     ("phase 2", t2, row.phase2_acc, fid2_known)):
        if trial is None and acc is None:
            continue
        a = TrialAttrs.of(trial) if trial is not None else TrialAttrs()
        fid = weights_fidelity if (phase.replace(" ", "") == row.phase and weights_fidelity) else \
            _fidelity_of(trial, known)
        lines.append(f"| {phase} | {trial.number if trial is not None else '-'} | {_describe_fidelity(fid)} | "
                     f"{fmt_acc(acc)} | {fmt_count(a.params)} | {fmt_count(a.sops)} | {fmt_count(a.neuron_mac_ops)} | "
                     f"{fmt_float(a.energy_mj)} | {fmt_float(a.firing_rate)} |")
    ranking = t2 if t2 is not None else t1
    by_stage = TrialAttrs.of(ranking).firing_by_stage if ranking is not None else None
    if isinstance(by_stage, Mapping) and by_stage:
        lines += ["", "Firing rate by stage (" + row.phase.replace("phase", "phase ") + "): "
                  + ", ".join(f"{k} {fmt_float(v)}" for k, v in by_stage.items())]
    from snnas.metrics.energy import ENERGY_SOURCE

    lines += ["", "SOPs and energy are per image, measured on a validation batch after training "
              f"(SpikingJelly's op counter; energy: {ENERGY_SOURCE}). Neuron MACs are the neurons' own "
              "multiply-accumulates (the gwr neuron's carry; 0 for IF and LIF), counted in the energy.", ""]

    data2 = (fid2_known or {}).get("data") or (fid1_known or {}).get("data") or "fashion-10"
    data_seed = (fid2_known or fid1_known or {}).get("data_seed")
    width = (weights_fidelity or {}).get("width_mult")
    lines += ["## Next: retrain with the full recipe", "",
              "Train at T=1, then fine-tune at T=4 from those weights (the paper's schedule):", "",
              "    " + retrain_command(str(final_dir / "genotype.json"), str(data2), timesteps=(1, 4),
                                      data_seed=int(data_seed or 0), out=f"runs/retrain/{row.key}"), "",
              "Add `--recipe paper-subset` (ImageNet-5/20) or `--recipe paper-imagenet` for the paper's "
              "schedules, `--epochs N` to choose the length, and run it under "
              "`torchrun --nproc-per-node N` to train data-parallel."]
    if width is not None:
        lines.append(f"`model.pt` holds the search's proxy network (width multiplier {width}); retrain builds the "
                     "network at full width unless given `--width-mult`.")
    lines += ["", "## Files", "",
              "- `genotype.json`: the network (canonical JSON; `snnas.Genotype.from_json`)",
              "- `model.pt`: weights and build settings (`snnas.load_model(path)`)",
              "- `architecture.png`: stages left to right, connections coloured by operation"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
def pick(board: Leaderboard, rank: int, study: str) -> Row:
    if not board.rows:
        raise ExportError(f"study {study!r} has no completed trial yet; nothing to export")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(board.rows):
        raise ExportError(f"--rank {rank}: study {study!r} ranks {len(board.rows)} network"
                          f"{'s' if len(board.rows) != 1 else ''}; choose 1..{len(board.rows)}")
    return board.rows[rank - 1]


def _fetch_weights(row: Row, searches: SearchStudies, dest: Path) -> None:
    if not row.model_artifact:
        raise ExportError(f"rank {row.rank} ({row.key}): trial {row.trial} recorded no weights")
    try:
        searches.artifacts.download(row.model_artifact, dest, what=f"rank {row.rank} ({row.key}): the weights")
    except ArtifactStoreError as exc:
        raise ExportError(str(exc)) from None


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an earlier export there is swapped out, then removed."""
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.replace(final, old / final.name)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old / final.name, final)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def nir_card(summary: Mapping[str, Any], resolution: int, timesteps: int, fold_pools: bool = False) -> str:
    """The card's NIR section: how to run the file (time step, readout, threshold convention), the
    node types it uses, and which nodes belong to which block."""
    types = ", ".join(f"{kind} {n}" for kind, n in summary["node_types"].items())
    lines = ["", "## NIR", "", f"`net.nir`: {summary['nodes']} nodes, {summary['edges']} edges, for {resolution} px "
             f"images. Run it {timesteps} step(s) on the same image and average the outputs (the network's readout).",
             "", f"- time step dt = {summary['dt']:g} s, the one to give an importer: IF neurons have r = 1/dt (the "
             "input is added once a step), LIF neurons tau = (tau in steps) x dt",
             "- thresholds are one float32 step below the trained ones: NIR's neurons fire on v > threshold, the "
             "trained network's on v >= threshold",
             f"- node types: {types}" + ("; every pool folded into the linear map next to it" if fold_pools else ""),
             "", "| part | NIR nodes |", "|---|---:|"]
    lines += [f"| {part} | {n} |" for part, n in summary["by_block"].items()]
    return "\n".join(lines) + "\n"


def export_network(searches: SearchStudies, rank: int, out: str | os.PathLike, nir: bool = False,
                   resolution: int | None = None, nir_fold_pools: bool = False) -> ExportResult:
    """Write ``out/<key>/{genotype.json, model.pt, architecture.png, card.md}`` for the network
    at ``rank`` (1 = best) of the search's final ranking."""
    from snnas.checkpoint import load_model, read_model_file
    from snnas.plots.architecture import draw_architecture

    board = build_leaderboard(searches.phase1, searches.phase2)
    row = pick(board, rank, searches.name)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    final = out / row.key
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{row.key}.tmp-"))
    try:
        _fetch_weights(row, searches, tmp / "model.pt")
        model = load_model(tmp / "model.pt")
        genotype = model.genotype
        if genotype.canonical().key != row.key:
            raise ExportError(f"rank {row.rank}: the stored weights hold network {genotype.canonical().key}, "
                              f"not {row.key} (the artifact store does not belong to this study)")
        extra = read_model_file(tmp / "model.pt").get("extra") or {}
        weights_fidelity = extra.get("fidelity") if isinstance(extra.get("fidelity"), Mapping) else None
        atomic_write_text(tmp / "genotype.json", genotype.to_json(indent=2) + "\n")
        name = " = ".join(row.names) if row.names else row.key
        draw_architecture(genotype, tmp / "architecture.png", title=f"{name}\n{genotype.to_str()}")
        card = card_markdown(row, searches, weights_fidelity, final)
        if nir:
            from snnas.nir_export import export_graph, node_summary

            side = resolution or extra.get("resolution")
            if not isinstance(side, int):
                raise ExportError(f"rank {row.rank}: the model file does not say its image size; pass --resolution")
            graph = export_graph(model, side, tmp / "net.nir", fold_pools=nir_fold_pools)
            card += nir_card(node_summary(graph), side, model.timesteps, nir_fold_pools)
        atomic_write_text(tmp / "card.md", card)
        os.chmod(tmp, shared_mode(0o755))
        _replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.getLogger(__name__).info("exported rank %d (%s) to %s", row.rank, row.key, final)
    return ExportResult(path=final, row=row, weights_phase=row.phase)
