"""``snnas retrain`` / ``scripts/retrain.py``: train a genotype with a full recipe, test it, export it.

Writes ``OUT/model.pt`` (loadable with ``snnas.load_model``), ``OUT/metrics.jsonl`` (one line per
epoch, tagged with its phase), ``OUT/summary.json`` and one checkpoint directory per phase
(``--resume`` continues from them). Under ``torchrun --nproc-per-node N`` the run is data-parallel
with the same global batch, so N processes train the same recipe; only rank 0 writes.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from snnas.errors import SnnasError
from snnas.files import atomic_write_json, check_output_dir
from snnas.fit import FitSettings
from snnas.genotype.vocabulary import AUTO_STEM, SMALL_IMAGE_MAX_PX, STEMS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--genotype", required=True, metavar="SPEC",
                   help="preset name, genotype string or genotype JSON file")
    p.add_argument("--data", required=True, metavar="SPEC", help="data spec, e.g. fashion-10 or imagenet-20:ROOT")
    p.add_argument("--recipe", default="short", help="training recipe: short (a few epochs on small images), "
                   "sprint (the search's proxy: short at twice the lr), proxy (the search's earlier proxy), paper-imagenet, "
                   "paper-ablation, paper-subset (default short)")
    p.add_argument("--epochs", metavar="N[,M]", help="epochs of the first phase (later phases scale with it), "
                   "or one number per phase (default: the recipe's)")
    p.add_argument("--timesteps", metavar="T[,T2]", help="time steps of each phase, e.g. 1,4 trains at T=1 then "
                   "fine-tunes at T=4 from those weights (default: the recipe's, else 1)")
    p.add_argument("--width-mult", type=float, default=1.0, help="channel width multiplier (default 1.0; the "
                   "search and the ground-truth table train at 0.25)")
    p.add_argument("--batch-size", type=int, help="global batch size; the lr scales with it (default: the recipe's)")
    p.add_argument("--lr-per-256", type=float, help="peak learning rate per 256 images (default: the recipe's)")
    p.add_argument("--resolution", type=int, help="image side in pixels (default: the data's own)")
    p.add_argument("--augment", help="training augmentation: none, crop_flip, rrc_flip, autoaugment "
                   "(default: the recipe's)")
    p.add_argument("--stem", choices=(AUTO_STEM, *STEMS), default=AUTO_STEM,
                   help="the stem to build: 'auto' (default) keeps the genotype's, except that the ImageNet stem "
                   f"becomes 'half' (3x3/2 conv) on images up to {SMALL_IMAGE_MAX_PX} px, where its 4x reduction "
                   "would leave stage 1 with 7-16 px maps; 'small' (3x3/1) keeps the whole image (about 3x slower "
                   "than 'half')")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/retrain/<key>-<data>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the class choice and val split (default 0)")
    p.add_argument("--train-per-class", type=int, help="at most this many training images per class")
    p.add_argument("--val-per-class", type=int, help="validation images per class (default: a fraction)")
    p.add_argument("--test-per-class", type=int, help="test on only the first N test images of each class "
                   "(a quick check; default: the whole test split)")
    p.add_argument("--cache-dir", help="decoded-data cache directory")
    p.add_argument("--aux-heads", action="store_true", help="shortcut back-propagation: auxiliary heads on "
                   "intermediate stages during training (never exported)")
    p.add_argument("--eval-every", type=int, help="validate every N epochs (default 1)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice; 1 is much faster "
                   "on a machine busy with other work)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--allow-large", action="store_true", help="build and train even when the memory estimate says the network or batch would not fit")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars under OUT/<phase>/tb")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("retrain", help="train a genotype with a full recipe, test it and export model.pt",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=run)


def retrain_command(genotype: str, data: str, fit: FitSettings | None = None, *,
                    timesteps: Sequence[int] | None = None, resolution: int | None = None,
                    train_per_class: int | None = None, val_per_class: int | None = None, data_seed: int = 0,
                    out: str | os.PathLike | None = None) -> str:
    """The ``scripts/retrain.py`` command that trains ``genotype`` on ``data`` with ``fit`` (every
    setting that changes the numbers, so it reproduces a result) and the data settings given.
    ``timesteps`` overrides the settings' time steps."""
    parts = ["python", "scripts/retrain.py", "--genotype", str(genotype), "--data", data]
    steps = timesteps or (fit.timesteps if fit is not None else None)
    if fit is not None:
        parts += ["--recipe", fit.recipe]
        if fit.epochs:
            parts += ["--epochs", ",".join(map(str, fit.epochs))]
        if steps:
            parts += ["--timesteps", ",".join(map(str, steps))]
        parts += ["--width-mult", f"{fit.width_mult:g}", "--seed", str(fit.seed)]
        for flag, value in (("--batch-size", fit.batch_size), ("--lr-per-256", fit.lr_per_256),
                            ("--augment", fit.augment), ("--stem", None if fit.stem == AUTO_STEM else fit.stem)):
            if value is not None:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if fit.aux_heads:
            parts.append("--aux-heads")
    elif steps:
        parts += ["--timesteps", ",".join(map(str, steps))]
    for flag, value in (("--data-seed", data_seed or None), ("--train-per-class", train_per_class),
                        ("--val-per-class", val_per_class), ("--resolution", resolution), ("--out", out)):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _int_list(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise SnnasError(f"--{name} {text!r}: expected positive integers separated by commas, e.g. 1,4")
    return values


def _first_per_class(data, per_class: int):
    """The first ``per_class`` images of every class, in file order (a stratified, seed-free cut)."""
    import torch

    from snnas.data import TensorSet

    keep = torch.cat([torch.nonzero(data.labels == c).flatten()[:per_class] for c in data.labels.unique()])
    keep = keep.sort().values
    return TensorSet(data.images[keep], data.labels[keep], data.name, data.mean, data.std)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _epoch_line(epoch: int, m: dict[str, Any]) -> str:
    parts = [f"phase {m.get('phase', 1)} (T={m.get('timesteps')}) epoch {epoch}/{m.get('epochs')}",
             f"train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}"]
    if "val_acc" in m:
        parts.append(f"val loss {m['val_loss']:.4f} acc {m['val_acc']:.4f}")
    parts.append(f"lr {m['lr']:.4g}  {m['images_per_s']:.0f} img/s")
    return " | ".join(parts)


def fit_settings(args: argparse.Namespace) -> FitSettings:
    """The training settings the arguments ask for, every argument checked before any work starts."""
    for name, low in (("workers", 0), ("threads", 1), ("test_per_class", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise SnnasError(f"--{name.replace('_', '-')} {value}: expected an integer >= {low}")
    if args.out:
        check_output_dir(args.out, "--out", SnnasError)
    epochs = _int_list(args.epochs, "epochs")
    timesteps = _int_list(args.timesteps, "timesteps")
    return FitSettings(recipe=args.recipe, epochs=tuple(epochs) if epochs else None,
                       timesteps=tuple(timesteps) if timesteps else None, width_mult=args.width_mult,
                       stem=args.stem, seed=args.seed, batch_size=args.batch_size, lr_per_256=args.lr_per_256,
                       augment=args.augment, aux_heads=args.aux_heads, compile=args.compile,
                       eval_every=args.eval_every)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    import torch

    from snnas.checkpoint import save_model
    from snnas.compiler import resolve_genotype
    from snnas.data import load_splits
    from snnas.fit import GenotypeFit, fit_history
    from snnas.train import Callback
    from snnas.train import distributed as dist_utils

    settings = fit_settings(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    genotype = resolve_genotype(args.genotype)

    ctx = dist_utils.init_from_env()
    try:
        device = torch.device(args.device) if args.device else dist_utils.default_device(ctx)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SnnasError(f"--device {args.device}: CUDA is not available on this machine")
        if device.type == "cuda" and ctx.active and device.index is None:
            device = torch.device("cuda", ctx.local_rank)
        # rank 0 decodes and caches the data first; the others then read its cache
        if not ctx.is_main:
            dist_utils.barrier()
        try:
            splits = load_splits(args.data, resolution=args.resolution, data_seed=args.data_seed,
                                 cache_dir=args.cache_dir, train_per_class=args.train_per_class,
                                 val_per_class=args.val_per_class)
        finally:
            if ctx.is_main:
                dist_utils.barrier()
        fit = GenotypeFit(genotype, splits, settings, device=device, num_workers=args.workers,
                          allow_large=args.allow_large)
        genotype, phases, params = fit.genotype, fit.phases, fit.params
        out = Path(args.out) if args.out else Path("runs", "retrain", f"{genotype.key}-{_slug(splits.spec)}")

        class PrintEpoch(Callback):
            def on_epoch_end(self, epoch, metrics):
                if ctx.is_main:
                    print(_epoch_line(epoch, metrics), flush=True)
                return False

        if ctx.is_main:
            print(f"retrain {genotype.to_str()} ({genotype.key}) on {splits!r}, {params:,} params, "
                  f"{len(phases)} phase(s) T={[p.timesteps for p in phases]}, world size {ctx.world_size}, "
                  f"{device} -> {out}", flush=True)
        if args.resume and ctx.is_main and not any(out.glob("phase*/checkpoint.pt")):
            print(f"--resume: no checkpoint in {out}; training from the start", flush=True)
        results = fit.run(out_dir=out, callbacks=[PrintEpoch()], resume=args.resume, progress=not args.no_progress,
                          tensorboard=args.tensorboard)
        test_set = splits.test if args.test_per_class is None else _first_per_class(splits.test, args.test_per_class)
        test = fit.evaluate(test_set)
        history = fit_history(results)
        train_s = sum(m["train_s"] for m in history)
        train_images = sum(m["train_images"] for m in history)
        last_val = next((m for m in reversed(history) if "val_acc" in m), {})
        summary = {
            "test_acc": test["acc"], "test_loss": test["loss"], "test_images": test["images"],
            "val_acc": last_val.get("val_acc"), "params": params,
            "epochs": [len(res.history) for res in results], "timesteps": [p.timesteps for p in phases[:len(results)]],
            "wall_s": time.perf_counter() - started, "train_s": train_s,
            "images_per_s": train_images / train_s if train_s > 0 else None,
            "data": splits.spec, "classes": list(splits.class_names), "resolution": splits.resolution,
            "genotype": genotype.to_str(), "key": genotype.key, "recipe": args.recipe,
            "fit": settings.to_dict(), "fit_key": settings.key,
            "phases": [{"timesteps": p.timesteps, "epochs": p.config.epochs, "epochs_run": len(res.history),
                        "stopped_early": res.stopped_early, "config": p.config.to_dict(),
                        "last_val_acc": res.last.get("val_acc") if res.last else None,
                        "best_val_acc": res.best["val_acc"] if res.best else None}
                       for p, res in zip(phases, results)],
            "width_mult": args.width_mult, "seed": args.seed, "data_seed": args.data_seed,
            "world_size": ctx.world_size, "device": str(device), "model": "model.pt",
        }
        if ctx.is_main:
            extra = {k: summary[k] for k in ("test_acc", "params", "epochs", "timesteps", "data", "recipe", "seed",
                                             "resolution")}
            save_model(out / "model.pt", fit.model, extra=extra)
            atomic_write_json(out / "summary.json", summary)
            print(f"test acc {test['acc']:.4f} on {test['images']} images | {params:,} params | "
                  f"epochs {summary['epochs']} at T={summary['timesteps']} | {summary['wall_s']:.0f} s | "
                  f"{summary['images_per_s'] or 0:.0f} train img/s | {out}", flush=True)
        dist_utils.barrier()
    finally:
        dist_utils.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``scripts/retrain.py``: the ``snnas retrain`` sub-command, with its error handling."""
    from snnas.cli import main as snnas_main

    return snnas_main(["retrain", *(sys.argv[1:] if argv is None else argv)])
