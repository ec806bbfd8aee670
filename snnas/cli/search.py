"""``snnas search`` (and ``scripts/search.py``): run the funnel, then print the leaderboard."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from snnas.search import defaults
from snnas.search.samplers import SAMPLERS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="dense_additive",
                   help="name of a packaged space (snnas/spaces/catalog/NAME.toml) or a .toml path")
    p.add_argument("--data", default=defaults.DATA, help=f"phase-1 data spec (default {defaults.DATA})")
    p.add_argument("--data2", default=None, help="phase-2 data spec (default: fashion-10 / imagenet-20 / ...)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the class choice and the val split")
    p.add_argument("--study", default=None, help="study name (default: the space's name)")
    p.add_argument("--storage", default=None, help="sqlite:///F, postgresql://..., journal:///F (default runs/<study>/study.db)")
    p.add_argument("--artifacts", default=None, metavar="DIR|s3://BUCKET/PREFIX",
                   help="where trial weights and checkpoints go, shared by every worker of the study "
                        "(default: the study's recorded store, else runs/<study>/artifacts); s3:// needs boto3")
    p.add_argument("--trials", type=int, default=20, help="phase-1 trials to finish (seeds included)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after S seconds (per phase)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="output root (runs/<study>/...)")
    p.add_argument("--promote", type=int, default=3, help="top K of phase 1 retrained in phase 2 (0: none)")
    p.add_argument("--seed", type=int, default=0,
                   help="the samplers' seed (local worker i uses seed + i); give each machine of a study its own")
    p.add_argument("--train-seed", type=int, default=0,
                   help="seed of the networks' initial weights and batch order (fixed when the study is created)")
    p.add_argument("--objectives", default=None,
                   help="acc, or acc,energy or acc,sops (multi-objective TPE, no pruning; phase 2 takes the Pareto set "
                        "by hypervolume); default: the space's (acc; acc,energy for efficient)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="phase-1 sampler: tpe (multi-objective TPE with several objectives) or random, the baseline to beat")
    p.add_argument("--max-sops", type=float, default=None, help="constraint: SOPs per image at most this")
    p.add_argument("--screen", choices=("sahd", "gradstab"), default=None, help="training-free screening")
    p.add_argument("--screen-keep", type=float, default=0.5, help="fraction kept by screening")
    p.add_argument("--epochs", type=int, default=defaults.EPOCHS, help="phase-1 epochs (Hyperband's max resource)")
    p.add_argument("--epochs2", type=int, default=defaults.EPOCHS2, help="phase-2 epochs")
    p.add_argument("--timesteps", type=int, default=1)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--train-per-class", type=int, default=defaults.TRAIN_PER_CLASS)
    p.add_argument("--train-per-class2", type=int, default=defaults.TRAIN_PER_CLASS2)
    p.add_argument("--val-per-class", type=int, default=defaults.VAL_PER_CLASS)
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--recipe", default=defaults.RECIPE,
                   help=f"phase-1 training recipe (default {defaults.RECIPE}, chosen against full training; see `retrain --help`)")
    p.add_argument("--recipe2", default=None, help="phase-2 training recipe (default: the phase-1 recipe)")
    p.add_argument("--device", default=None, help="one device for every worker: cpu, cuda:N")
    p.add_argument("--devices", default=None, metavar="LIST",
                   help="devices the --workers spread over, round robin (several per GPU allowed), e.g. cuda:0,cuda:1 "
                        "or 0,1 (default: every visible GPU, else the CPU); each trial records its device")
    p.add_argument("--allow-large", action="store_true", help="build and train even when the memory estimate says the network or batch would not fit")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes per phase, sharing the study (measured: bench/search_workers.py)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: this machine's cores shared out among the workers)")
    p.add_argument("--heartbeat-interval", type=int, default=30, help="seconds between a worker's heartbeats")
    p.add_argument("--grace-period", type=int, default=120,
                   help="seconds without a heartbeat before a trial is failed and retried by a live worker")
    p.add_argument("--create-only", action="store_true",
                   help="create the studies and enqueue the seeds, then exit (run once before starting many workers)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-report", action="store_true", help="skip report.md and plots")
    p.add_argument("--groundtruth", metavar="JSON", default=None,
                   help="ground-truth table (bench/groundtruth.py) to show full-training accuracy beside the proxy's "
                   "(default: the one in bench/results/ trained on this search's data, when there is one)")


def options_from(args: argparse.Namespace):
    from snnas.search.funnel import SearchOptions

    return SearchOptions(
        space=args.space, data=args.data, data2=args.data2, study=args.study, storage=args.storage, artifacts=args.artifacts, out=args.out,
        trials=args.trials, timeout_s=args.timeout, promote=args.promote, seed=args.seed, train_seed=args.train_seed, data_seed=args.data_seed,
        objectives=None if args.objectives is None else tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
        sampler=args.sampler,
        max_sops=args.max_sops,
        screen=args.screen, screen_keep=args.screen_keep, epochs=args.epochs, epochs2=args.epochs2,
        timesteps=args.timesteps, resolution=args.resolution, train_per_class=args.train_per_class,
        train_per_class2=args.train_per_class2, val_per_class=args.val_per_class, width_mult=args.width_mult,
        batch_size=args.batch_size, recipe=args.recipe, recipe2=args.recipe2, allow_large=args.allow_large, device=args.device, devices=args.devices, progress=not args.no_progress, cache_dir=args.cache_dir,
        workers=args.workers, threads=args.threads, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period, create_only=args.create_only)


def run(args: argparse.Namespace) -> int:
    import time

    import optuna

    from snnas.groundtruth import Table, no_table_reason
    from snnas.search.funnel import run_search
    from snnas.search.report import study_groundtruth, write_report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = options_from(args)
    given = Table.read(args.groundtruth) if args.groundtruth else None  # a bad file fails before any trial
    started = time.monotonic()
    result = run_search(options)
    if options.create_only:
        return 0
    if not args.no_report:
        truth = given or study_groundtruth(result.phase1)
        if truth is None:
            print(no_table_reason(options.phase2.data, options.data_seed))
        report = write_report(result.phase1, result.phase2, options.run_dir, print_leaderboard=True, truth=truth)
        print(f"report: {report}")
    print(f"search wall time: {time.monotonic() - started:.0f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a space (the funnel), then print the leaderboard")
    add_arguments(p)
    p.set_defaults(func=run)
