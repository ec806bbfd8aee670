"""Trials per minute with 1, 2 and 3 local workers on one study, SQLite and PostgreSQL.

Each worker process runs the synthetic objective (``python -m snnas.search.synthetic``): every trial
sleeps ``--epochs`` x ``--epoch-s`` seconds and reports each epoch, with no network and no dedupe,
so what is left of a trial's time is the storage and Optuna. The figures are ratios against one
worker on the same storage in the same run; "efficiency" compares with the sleep-only ideal
(workers x 60 / trial seconds), and "lock wait" is the share of the workers' time spent waiting
for the study lock (held while a trial is started): a busy database would show there first.

    .venv/bin/python bench/workers_throughput.py                       # SQLite + throw-away PostgreSQL
    .venv/bin/python bench/workers_throughput.py --postgres URL        # an existing PostgreSQL database
    .venv/bin/python bench/workers_throughput.py --storages sqlite --workers 1 2 3 4
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_config(url: str, workers: int, trials: int, epochs: int, epoch_s: float, tmp: Path) -> dict:
    """Start ``workers`` processes on a fresh study, release them together, time the budget."""
    from snnas.study.storage import create_study_once, open_storage

    study = f"bench-{workers}w"
    create_study_once(open_storage(url), study, ["maximize"])
    go = tmp / f"go-{study}"
    cmd = [sys.executable, "-m", "snnas.search.synthetic", "--storage", url, "--study", study,
           "--budget", str(trials), "--epochs", str(epochs), "--epoch-s", str(epoch_s),
           "--no-dedupe", "--pruner", "none", "--wait-for", str(go), "--poll-s", "0.05"]
    procs = [subprocess.Popen(cmd + ["--seed", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(workers)]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            _, err = proc.communicate()
            raise SystemExit(f"worker failed to start: {err[-2000:]}")
    start = time.monotonic()
    go.touch()
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed: {err[-2000:]}")
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(s["wall_s"] for s in summaries)
    ran = sum(s["ran"] for s in summaries)
    return {"workers": workers, "trials": ran, "wall_s": wall, "elapsed_s": time.monotonic() - start,
            "lock_wait_share": sum(s["lock_wait_s"] for s in summaries) / sum(s["wall_s"] for s in summaries),
            "per_worker": [s["ran"] for s in summaries], "trials_per_min": 60.0 * ran / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--trials-per-worker", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-s", type=float, default=0.05)
    parser.add_argument("--postgres", metavar="URL", help="use this PostgreSQL database instead of a throw-away server")
    parser.add_argument("--pg-fsync", choices=["on", "off"], default="on",
                        help="fsync of the throw-away server (on: a durable server, as in production)")
    args = parser.parse_args(argv)

    import optuna

    from snnas.redact import redact_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    trial_s = args.epochs * args.epoch_s
    print(f"synthetic trial: {args.epochs} epochs x {args.epoch_s * 1000:.0f} ms = {trial_s:.2f} s of sleep; "
          f"ideal {60 / trial_s:.0f} trials/min per worker")
    server = None
    with tempfile.TemporaryDirectory(prefix="snnas-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            for kind in args.storages:
                rows = []
                for workers in args.workers:
                    if kind == "sqlite":
                        url = f"sqlite:///{tmp}/bench-{workers}.db"
                    elif args.postgres:
                        url = args.postgres
                    else:
                        if server is None:
                            sys.path.insert(0, str(REPO / "tests"))
                            from pg import PostgresServer

                            server = PostgresServer(fsync=args.pg_fsync == "on").start()
                        url = server.create_database(f"bench_{workers}")
                    rows.append(run_config(url, workers, args.trials_per_worker * workers, args.epochs,
                                           args.epoch_s, tmp))
                shown = "sqlite (WAL)" if kind == "sqlite" else (
                    redact_url(args.postgres) if args.postgres else f"postgresql 15, throw-away, fsync={args.pg_fsync}")
                print(f"\n{shown}")
                print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'trials/min':>10} {'vs 1 worker':>11} "
                      f"{'efficiency':>10} {'overhead/trial':>14} {'lock wait':>9}  per worker")
                base = rows[0]["trials_per_min"]
                for r in rows:
                    ideal = r["workers"] * 60.0 / trial_s
                    overhead = r["wall_s"] * r["workers"] / r["trials"] - trial_s
                    print(f"{r['workers']:>7} {r['trials']:>6} {r['wall_s']:>7.2f} {r['trials_per_min']:>10.0f} "
                          f"{r['trials_per_min'] / base:>10.2f}x {r['trials_per_min'] / ideal:>10.0%} "
                          f"{overhead * 1000:>11.0f} ms {r['lock_wait_share']:>9.1%}  {r['per_worker']}")
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
