"""Trials per hour of the real search on this machine: one process with all threads, or several
single-thread worker processes (``--workers``) on one study.

Each configuration runs ``snnas search`` at the search's default proxy fidelity, phase 1 only, on
a fresh study whose budget is taken by the space's seed networks (enqueued in one order), so every
configuration trains exactly the same networks. Two figures per configuration: trials per hour
over the trials' own span (first start to last finish, from the study) and over the whole command
(start-up, data, workers' imports included). The ratio is against the first configuration,
measured in the same run. Results land in ``--out`` as each configuration finishes; a rerun skips
what is there.

    .venv/bin/python bench/search_workers.py                     # 1x2 threads against 2x1, 8 trials
    .venv/bin/python bench/search_workers.py --configs 1x2 2x1 --trials 8 --repeats 2
    .venv/bin/python bench/search_workers.py -- --train-per-class 64   # after --: more search.py arguments
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from benchlib import SharedResults, split_search_args
from snnas.errors import SnnasError
from snnas.study.storage import open_storage

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results" / "search_workers.json"


def parse_config(text: str) -> tuple[int, int]:
    try:
        workers, threads = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SnnasError(f"--configs {text}: expected WORKERSxTHREADS, e.g. 2x1") from None
    if workers < 1 or threads < 1:
        raise SnnasError(f"--configs {text}: workers and threads must be at least 1")
    return workers, threads


def run_config(workers: int, threads: int, trials: int, data: str, tmp: Path, cache_dir: Path,
               search_args: list[str]) -> dict:
    name = f"w{workers}t{threads}"
    cmd = [sys.executable, str(REPO / "scripts" / "search.py"), "--data", data, "--trials", str(trials),
           "--promote", "0", "--no-report", "--no-progress", "--study", name, "--out", str(tmp),
           "--cache-dir", str(cache_dir), "--workers", str(workers), "--threads", str(threads), *search_args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SnnasError(f"{name}: the search failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    study = optuna.load_study(study_name=name, storage=open_storage(None, tmp / name / "study.db"))
    done = [t for t in study.trials if t.datetime_complete is not None and t.state.is_finished()]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"workers": workers, "threads": threads, "trials": len(done), "span_s": round(span, 1),
            "wall_s": round(wall, 1), "trials_per_hour": round(len(done) * 3600 / span, 1),
            "trials_per_hour_wall": round(len(done) * 3600 / wall, 1),
            "networks": sorted(str(t.user_attrs.get("key")) for t in done)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["1x2", "2x1"], help="WORKERSxTHREADS each")
    parser.add_argument("--trials", type=int, default=8, help="phase-1 budget (the first seed networks)")
    parser.add_argument("--data", default="fashion-10")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache-dir", type=Path, default=REPO / "runs" / ".cache")
    own, search_args = split_search_args(argv)
    args = parser.parse_args(own)
    try:
        configs = [parse_config(c) for c in args.configs]
        results = SharedResults(args.out, "snnas-search-workers/1",
                                {"trials": args.trials, "data": args.data, "cpus": os.cpu_count(),
                                 "search_args": search_args},
                                identity=lambda r: (r["workers"], r["threads"], r["repeat"]))
        done = results.done()
        for repeat in range(args.repeats):
            for workers, threads in configs:
                if (workers, threads, repeat) in done:
                    continue
                with tempfile.TemporaryDirectory(prefix="snnas-bench-workers-") as tmp:
                    run = run_config(workers, threads, args.trials, args.data, Path(tmp), args.cache_dir,
                                     search_args)
                results.add({**run, "repeat": repeat})
                print(f"{workers} x {threads} threads: {run['trials_per_hour']:.0f} trials/h "
                      f"({run['trials']} trials in {run['span_s']:.0f} s; whole command {run['wall_s']:.0f} s)",
                      flush=True)
    except SnnasError as exc:
        print(f"snnas: error: {exc}", file=sys.stderr)
        return 2
    runs = results.runs()
    reference = [r for r in runs if (r["workers"], r["threads"]) == configs[0]]
    if not reference:
        return 0
    ref = sum(r["trials_per_hour"] for r in reference) / len(reference)
    ref_wall = sum(r["trials_per_hour_wall"] for r in reference) / len(reference)
    print(f"\n| config | trials/h (trial span) | vs {configs[0][0]}x{configs[0][1]} | trials/h (whole command) | vs |")
    print("|---|---:|---:|---:|---:|")
    for workers, threads in configs:
        mine = [r for r in runs if (r["workers"], r["threads"]) == (workers, threads)]
        if mine:
            tph = sum(r["trials_per_hour"] for r in mine) / len(mine)
            tpw = sum(r["trials_per_hour_wall"] for r in mine) / len(mine)
            print(f"| {workers} x {threads} | {tph:.0f} | {tph / ref:.2f} | {tpw:.0f} | {tpw / ref_wall:.2f} |")
    networks = {tuple(r["networks"]) for r in runs}
    print(f"\nsame networks in every configuration: {'yes' if len(networks) == 1 else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
