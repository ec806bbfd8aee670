"""What the long benchmarks share: a results file several processes fill at once, and run claims.

A long measurement is a list of independent runs. Each run is claimed with a lock of its own while
it trains (the kernel drops it when the holder dies, so a killed process never blocks a run) and
lands in one JSON file when it ends, merged under a file lock and written atomically: any number
of processes can work through the same list, and a kill loses only the runs in flight.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from snnas.cli.search import add_arguments, options_from
from snnas.errors import SnnasError
from snnas.files import atomic_write_json


class SharedResults:
    """``{"format", "settings", "runs": [...]}`` on disk; a run is identified by ``identity(run)``.

    The file's ``settings`` must equal the ones given: results measured under other settings are
    never mixed in (the error names the settings that differ).
    """

    def __init__(self, path: Path, fmt: str, settings: dict[str, Any], identity: Callable[[dict], tuple]):
        self.path, self.format, self.settings, self.identity = Path(path), fmt, settings, identity
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        with self._locked():
            doc = self._read()
            if doc is None:
                self._write([])
            elif doc.get("settings") != settings:
                old = doc.get("settings") or {}
                changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise SnnasError(f"{self.path} holds results measured with other settings ({', '.join(changed)}); "
                                 "pass another --out or the original settings")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SnnasError(f"{self.path}: cannot read it ({type(exc).__name__}); move it away to start afresh") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
            raise SnnasError(f"{self.path}: not a results file (no 'runs' list)")
        return doc

    def _write(self, runs: list[dict[str, Any]]) -> None:
        atomic_write_json(self.path, {"format": self.format, "settings": self.settings, "runs": runs}, indent=1)

    def runs(self) -> list[dict[str, Any]]:
        with self._locked():
            return list((self._read() or {"runs": []})["runs"])

    def done(self) -> set[tuple]:
        return {self.identity(r) for r in self.runs()}

    def add(self, run: dict[str, Any]) -> None:
        with self._locked():
            runs = [r for r in (self._read() or {"runs": []})["runs"] if self.identity(r) != self.identity(run)]
            self._write(runs + [run])


@contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Hold ``path``'s lock for the ``with`` block; False when another live process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def work_through(items: list, done: Callable[[], set], identity: Callable[[Any], tuple],
                 lock_path: Callable[[Any], Path], run: Callable[[Any], None]) -> int:
    """Run every item not yet done and not claimed by another process; returns how many ran here."""
    ran = 0
    for item in items:
        if identity(item) in done():
            continue
        with claim(lock_path(item)) as mine:
            if not mine or identity(item) in done():  # another process has it, or just finished it
                continue
            run(item)
            ran += 1
    return ran


def over_seeds(runs: list[dict[str, Any]], fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """A network's trainings at several seeds as one row: its seeds, mean test accuracy and spread
    (max - min, the noise floor every ranking is read against), and the mean of each of ``fields``
    (None when a run lacks it: a mean over some seeds would pass for all of them)."""
    accs = [r["test_acc"] for r in runs]
    out = {"seeds": sorted(r["seed"] for r in runs), "test_acc_mean": statistics.fmean(accs),
           "test_acc_spread": max(accs) - min(accs)}
    for field in fields:
        values = [r.get(field) for r in runs]
        out[field] = statistics.fmean(values) if all(v is not None for v in values) else None
    return out


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads for this process (one each when two processes share two cores)."""
    if threads is None:
        return
    if threads < 1:
        raise SnnasError(f"--threads {threads}: expected an integer >= 1")
    torch.set_num_threads(threads)


def time_train(model, x, y, opt) -> float:
    """Seconds of one training step (forward, cross-entropy, backward, optimiser step)."""
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t


@torch.no_grad()
def time_infer(model, x) -> float:
    """Seconds of one forward pass without gradients."""
    t = time.perf_counter()
    model(x)
    return time.perf_counter() - t


def split_search_args(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """A bench's own arguments and, after ``--``, the ones it hands to the search (``scripts/search.py``'s flags)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def search_command(args: list[str]):
    """``(SearchOptions, namespace)`` of a search command line, parsed by the search's own parser
    (so a bench runs exactly what ``scripts/search.py`` with these flags would)."""
    parser = argparse.ArgumentParser(prog="search")
    add_arguments(parser)
    ns = parser.parse_args(args)
    return options_from(ns), ns
