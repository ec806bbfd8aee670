"""Ground truth: full-training results of a space's networks, and how a ranking is held against them.

A proxy is only as good as its agreement with full training, and full training itself scatters
from seed to seed; so every comparison here comes with the table's own seed-to-seed agreement
beside it (the noise floor no proxy can beat). A table is the JSON that ``bench/groundtruth.py``
writes: ``settings`` (what every run shares) and ``runs`` (one per network and seed, each with
its canonical ``key`` and ``test_acc``).
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scipy.stats import kendalltau

from snnas.errors import SnnasError

RESULTS_DIR = Path(__file__).resolve().parents[1] / "bench" / "results"  # a checkout's measurements
PACKAGED_DIR = Path(__file__).resolve().parent / "tables"  # the copies a wheel ships
TABLE_FORMAT = "snnas-groundtruth/1"
MIN_TAU_NETWORKS = 4  # fewer networks than this give a Kendall tau of -1, 0 or 1 by chance alone: not printed


class GroundTruthError(SnnasError):
    """A ground-truth table that cannot be read or does not fit what it is compared with."""


def kendall_tau(scores: Mapping[str, float], truth: Mapping[str, float]) -> float:
    """Kendall's tau-b between two scorings over the keys they share (NaN with fewer than 2)."""
    keys = sorted(set(scores) & set(truth))
    if len(keys) < 2:
        return math.nan
    return float(kendalltau([scores[k] for k in keys], [truth[k] for k in keys]).statistic)


def top_k(scores: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` best keys, best first (ties broken by key, so the answer is stable)."""
    return [key for key, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def top_k_recall(scores: Mapping[str, float], truth: Mapping[str, float], k: int = 3) -> float:
    """The share of the truth's top ``k`` that ``scores`` also puts in its top ``k`` (over shared keys)."""
    keys = set(scores) & set(truth)
    if not keys or k < 1:
        return math.nan
    k = min(k, len(keys))
    best = set(top_k({key: truth[key] for key in keys}, k))
    return len(best & set(top_k({key: scores[key] for key in keys}, k))) / k


def pairwise_taus(per_seed: Mapping[int, Mapping[str, float]]) -> dict[tuple[int, int], float]:
    """Tau between every two seeds' scorings: how well a run ranks the networks as a rerun does."""
    return {(a, b): kendall_tau(per_seed[a], per_seed[b]) for a, b in itertools.combinations(sorted(per_seed), 2)}


@dataclass(frozen=True)
class NetworkTruth:
    """One network of a table: its runs' test accuracies and what describes it."""

    key: str
    genotype: str
    preset: str | None
    accs: dict[int, float]  # seed -> test accuracy
    params: int | None = None
    sops: float | None = None
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs.values())

    @property
    def spread(self) -> float:
        """Max minus min over seeds (0 with one seed)."""
        return max(self.accs.values()) - min(self.accs.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs.values()) if len(self.accs) > 1 else 0.0


@dataclass(frozen=True)
class Table:
    settings: dict[str, Any]
    runs: tuple[dict[str, Any], ...]
    path: Path | None = None

    @classmethod
    def read(cls, path: str | Path) -> Table:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GroundTruthError(f"ground-truth table {path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise GroundTruthError(f"ground-truth table {path}: cannot read it ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict) or not isinstance(doc.get("runs"), list):
            raise GroundTruthError(f"ground-truth table {path}: expected an object with 'settings' and a 'runs' list")
        for i, run in enumerate(doc["runs"]):
            if not isinstance(run, dict) or not isinstance(run.get("key"), str) \
                    or not isinstance(run.get("seed"), int) or not isinstance(run.get("test_acc"), (int, float)):
                raise GroundTruthError(f"ground-truth table {path}: run {i} lacks a key, seed or test_acc")
        return cls(doc["settings"], tuple(doc["runs"]), path)

    def networks(self) -> list[NetworkTruth]:
        """One entry per canonical key, best mean test accuracy first."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for run in self.runs:
            grouped.setdefault(run["key"], []).append(run)
        out = []
        for key, runs in grouped.items():
            first = runs[0]
            sops = [r["sops"] for r in runs if isinstance(r.get("sops"), (int, float))]
            walls = [r["wall_s"] for r in runs if isinstance(r.get("wall_s"), (int, float))]
            out.append(NetworkTruth(key=key, genotype=first.get("genotype", ""), preset=first.get("preset"),
                                    accs={r["seed"]: float(r["test_acc"]) for r in runs}, params=first.get("params"),
                                    sops=statistics.fmean(sops) if sops else None,
                                    wall_s=statistics.fmean(walls) if walls else None,
                                    extra={k: first[k] for k in ("depth", "block", "connect", "name") if k in first}))
        out.sort(key=lambda n: (-n.mean, n.key))
        return out

    def mean_acc(self, complete_only: bool = False) -> dict[str, float]:
        """Key -> mean test accuracy over seeds (with ``complete_only``, only networks with every seed)."""
        seeds = self.seeds()
        return {n.key: n.mean for n in self.networks() if not complete_only or set(n.accs) >= set(seeds)}

    def seeds(self) -> list[int]:
        return sorted({run["seed"] for run in self.runs})

    def per_seed(self) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for run in self.runs:
            out.setdefault(run["seed"], {})[run["key"]] = float(run["test_acc"])
        return out

    def seed_taus(self) -> dict[tuple[int, int], float]:
        """The table's own seed-to-seed taus, over the networks both seeds have."""
        return pairwise_taus(self.per_seed())

    def seed_tau(self) -> float:
        """Mean of :meth:`seed_taus`: the noise floor of any ranking held against this table."""
        taus = [t for t in self.seed_taus().values() if not math.isnan(t)]
        return statistics.fmean(taus) if taus else math.nan

    def matches(self, data: str, data_seed: int = 0) -> bool:
        """Whether this table was trained on ``data`` (the same spec and class choice)."""
        return self.settings.get("data") == data and int(self.settings.get("data_seed", 0)) == int(data_seed)


def table_dirs() -> list[Path]:
    """Where tables are looked for: a checkout's ``bench/results`` (the newest measurements) first,
    then the copies the package ships (an installed wheel has only these)."""
    return [d for d in (RESULTS_DIR, PACKAGED_DIR) if d.is_dir()]


def find_table(data: str, data_seed: int = 0, directory: str | Path | None = None) -> Table | None:
    """The ground-truth table trained on ``data`` in ``directory`` (default: :func:`table_dirs`), if
    there is one (unreadable or foreign files are skipped: a search never fails for want of a table)."""
    for folder in [Path(directory)] if directory is not None else table_dirs():
        for path in sorted(folder.glob("groundtruth_*.json")) if folder.is_dir() else []:
            try:
                table = Table.read(path)
            except GroundTruthError:
                continue
            if table.matches(data, data_seed) and table.runs:
                return table
    return None


def no_table_reason(data: str, data_seed: int = 0) -> str:
    """Why a search's leaderboard has no full-training column (one line for the user)."""
    looked = ", ".join(str(d) for d in table_dirs()) or "no table folder"
    return (f"full training: no ground-truth table trained on {data} (data seed {data_seed}) in {looked}; "
            f"bench/groundtruth.py makes one, --groundtruth JSON names one")


@dataclass(frozen=True)
class Agreement:
    """How a scoring of networks agrees with a table's mean test accuracy."""

    networks: int
    tau: float
    top3_recall: float
    table_seed_tau: float

    def describe(self) -> str:
        if self.networks < MIN_TAU_NETWORKS:
            return (f"{self.networks} networks in the table, too few for a Kendall tau (at least {MIN_TAU_NETWORKS}); "
                    f"the table's own seed-to-seed tau {self.table_seed_tau:.2f}")
        return (f"Kendall tau {self.tau:.2f} against full training over {self.networks} networks "
                f"(top-3 recall {self.top3_recall:.2f}; the table's own seed-to-seed tau {self.table_seed_tau:.2f})")


def agreement(scores: Mapping[str, float], table: Table) -> Agreement:
    truth = table.mean_acc()
    shared = set(scores) & set(truth)
    return Agreement(networks=len(shared), tau=kendall_tau(scores, truth), top3_recall=top_k_recall(scores, truth, 3),
                     table_seed_tau=table.seed_tau())


def slug(data: str) -> str:
    """``fashion-10`` -> ``fashion10``; ``imagenet-20:/data/in`` -> ``imagenet20`` (a file-name part)."""
    return "".join(c for c in data.split(":", 1)[0] if c.isalnum())


def default_table_path(data: str) -> Path:
    return RESULTS_DIR / f"groundtruth_{slug(data)}.json"


__all__ = ["Agreement", "GroundTruthError", "MIN_TAU_NETWORKS", "NetworkTruth", "PACKAGED_DIR", "RESULTS_DIR", "Table",
           "agreement", "default_table_path", "find_table", "kendall_tau", "no_table_reason", "pairwise_taus",
           "table_dirs", "top_k", "top_k_recall"]

