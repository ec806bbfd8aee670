"""How well does the phase-1 proxy rank networks? Kendall tau against a longer training.

For >= 12 genotypes (the paper's presets at depth 18 and 34, small stem) this trains:
- the proxy (phase-1 fidelity: fashion-5, few epochs, T=1) with two seeds -> seed-to-seed tau,
  which bounds what any proxy can show;
- a longer run (fashion-10, several times the epochs and images) -> proxy-to-long tau;
- and scores SAHD and gradient stability at initialisation -> their tau against the long run.
Results are cached per (genotype, fidelity) in a JSON file, so the script resumes and a changed
proxy reuses the long runs.

    python bench/proxy_fidelity.py [--out bench/results/proxy_fidelity.json] [--proxy-epochs 4] ...
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau

from snnas import build_model, get_preset
from snnas.data import BatchLoader, load_splits
from snnas.metrics import gradient_stability, sahd_score
from snnas.train import Trainer, get_recipe

GENOTYPES = ["origin_resnet18", "tdbn_resnet18", "baa_resnet18", "sew_resnet18", "pa_a_resnet18", "pa_b_resnet18",
             "danet_c_resnet18", "danet_d_resnet18", "origin_resnet34", "sew_resnet34", "pa_a_resnet34",
             "danet_c_resnet34"]


def train_once(name: str, splits, recipe, epochs: int, seed: int, width: float, batch: int) -> dict:
    g = get_preset(name).replace(stem="small")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(g, num_classes=splits.num_classes, in_channels=splits.in_channels, timesteps=1,
                            width_mult=width)
    cfg = recipe.replace(epochs=epochs, batch_size=batch, seed=seed, timesteps=1,
                         warmup_epochs=min(recipe.warmup_epochs, epochs / 4))
    train = BatchLoader(splits.train, batch_size=batch, shuffle=True, augment=cfg.augment,
                        generator=torch.Generator().manual_seed(seed))
    val = BatchLoader(splits.val, batch_size=256, shuffle=False, augment="none")
    started = time.monotonic()
    result = Trainer(model, cfg, progress=False).fit(train, val)
    return {"val_acc": result.history[-1]["val_acc"], "wall_s": round(time.monotonic() - started, 1)}


def zero_cost(name: str, splits, width: float, seed: int) -> dict:
    g = get_preset(name).replace(stem="small")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(g, num_classes=splits.num_classes, in_channels=splits.in_channels, timesteps=1,
                            width_mult=width)
    x = next(iter(BatchLoader(splits.val, batch_size=32, shuffle=True, augment="none",
                              generator=torch.Generator().manual_seed(seed))))[0]
    return {"sahd": sahd_score(model, x), "gradstab_log10": gradient_stability(model, x).log10_product}


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def tau(a: dict, b: dict, names) -> float:
    return float(kendalltau([a[n] for n in names], [b[n] for n in names]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/proxy_fidelity.json"))
    ap.add_argument("--genotypes", default=",".join(GENOTYPES))
    ap.add_argument("--proxy-data", default="fashion-5")
    ap.add_argument("--proxy-epochs", type=int, default=4)
    ap.add_argument("--proxy-train-per-class", type=int, default=500)
    ap.add_argument("--long-data", default="fashion-10")
    ap.add_argument("--long-epochs", type=int, default=8)
    ap.add_argument("--long-train-per-class", type=int, default=500)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--width-mult", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--only", choices=("all", "proxy", "long"), default="all",
                    help="run only one kind of training (two copies can then share the cache file)")
    args = ap.parse_args()
    names = args.genotypes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = get_recipe("proxy")
    cache = _read(args.out)

    def save(key: str, value: dict) -> None:
        """Merge one result into the file under a lock, so several copies of this script can share it."""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cache.update(_read(args.out))
            cache[key] = value
            tmp = args.out.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
            os.replace(tmp, args.out)
        print(key, value, flush=True)

    proxy_splits = load_splits(args.proxy_data, train_per_class=args.proxy_train_per_class,
                               val_per_class=args.val_per_class)
    long_splits = load_splits(args.long_data, train_per_class=args.long_train_per_class,
                              val_per_class=args.val_per_class)
    # the recipe's augmentation and lr are part of the key: a changed proxy recipe never reuses old runs
    train_fid = f"{recipe.augment}|lr{recipe.lr_per_256}|w{args.width_mult}"
    proxy_fid = f"{args.proxy_data}|e{args.proxy_epochs}|n{args.proxy_train_per_class}|{train_fid}"
    long_fid = f"{args.long_data}|e{args.long_epochs}|n{args.long_train_per_class}|{train_fid}"
    only = {"proxy", "long"} if args.only == "all" else {args.only}
    for name in names if "proxy" in only else []:
        for seed in seeds:
            key = f"proxy|{proxy_fid}|s{seed}|{name}"
            if key not in cache:
                save(key, train_once(name, proxy_splits, recipe, args.proxy_epochs, seed, args.width_mult,
                                     args.batch_size))
        key = f"zero|{args.proxy_data}|w{args.width_mult}|s0|{name}"
        if key not in cache:
            save(key, zero_cost(name, proxy_splits, args.width_mult, 0))
    for name in names if "long" in only else []:
        key = f"long|{long_fid}|s0|{name}"
        if key not in cache:
            save(key, train_once(name, long_splits, recipe, args.long_epochs, 0, args.width_mult, args.batch_size))
    cache.update(_read(args.out))
    missing = [n for n in names if f"long|{long_fid}|s0|{n}" not in cache
               or any(f"proxy|{proxy_fid}|s{s}|{n}" not in cache for s in seeds)]
    if missing:
        print(f"not yet measured: {', '.join(missing)}; run again (without --only) for the taus")
        return

    proxy = {s: {n: cache[f"proxy|{proxy_fid}|s{s}|{n}"]["val_acc"] for n in names} for s in seeds}
    mean_proxy = {n: sum(proxy[s][n] for s in seeds) / len(seeds) for n in names}
    long = {n: cache[f"long|{long_fid}|s0|{n}"]["val_acc"] for n in names}
    zero = {n: cache[f"zero|{args.proxy_data}|w{args.width_mult}|s0|{n}"] for n in names}
    print(f"\n{'genotype':<20} " + " ".join(f"proxy s{s:<3}" for s in seeds) + "    long   SAHD  log10 gradstab")
    for n in names:
        print(f"{n:<20} " + " ".join(f"{proxy[s][n]:>9.4f}" for s in seeds)
              + f" {long[n]:>7.4f} {zero[n]['sahd']:>6.1f} {zero[n]['gradstab_log10']:>8.2f}")
    print(f"\nproxy: {proxy_fid}; long: {long_fid}; {len(names)} genotypes")
    if len(seeds) > 1:
        print(f"seed-to-seed tau (proxy s{seeds[0]} vs s{seeds[1]}): {tau(proxy[seeds[0]], proxy[seeds[1]], names):.3f}")
    for s in seeds:
        print(f"proxy (seed {s}) vs long tau: {tau(proxy[s], long, names):.3f}")
    print(f"proxy (mean of seeds) vs long tau: {tau(mean_proxy, long, names):.3f}")
    print(f"SAHD vs long tau: {tau({n: zero[n]['sahd'] for n in names}, long, names):.3f}")
    print(f"gradient stability vs long tau: {tau({n: zero[n]['gradstab_log10'] for n in names}, long, names):.3f}")


if __name__ == "__main__":
    main()
