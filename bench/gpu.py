"""The prepared GPU check: snnas's CUDA path against SpikingJelly and the ANN twin, in one command.

    python bench/gpu.py                          # cuda:0, about 8 minutes on one H100 (--budget-s 450)
    python bench/gpu.py --fashion-dir DIR        # Fashion-MNIST's IDX files where Debian's package is missing
    python bench/gpu.py --device cpu --smoke     # every section at tiny sizes, in seconds (the test suite runs it)

Each figure is read against a reference measured in the same run:

1. throughput: training and inference images/s of DANet-B-18 and SEW-18 at the search's fidelity
   (28 px, width 1/4, the `half` stem the search builds there) and at ImageNet scale (224 px, width 1),
   T=1 and T=4, against SpikingJelly's own ``sew_resnet18`` with the same weights
   (``snnas.compiler.references``) and against the ReLU twin of the same network at T=1. The zoo
   model has no width multiplier and a 3-channel ImageNet stem, so at 28 px it is compared at width 1
   with that stem (the same network on both sides). Every network trains through snnas's Trainer
   with the same settings on one device-resident batch (the step alone; the trainer, not a loop of
   its own, because SpikingJelly's model is no genotype). Batches are the largest power of two whose
   estimated training memory (``snnas.compiler.size``, float32 activations) fits in 30% of the GPU:
   chosen before anything is allocated, so no out-of-memory probe poisons the run, with room for the
   estimate's error; a step that runs out of memory halves its batch and says so.
2. switches: the trainer's AMP (float16, bfloat16, off), ``channels_last`` and ``torch.compile``,
   each flipped alone against its defaults (float16, channels_last, eager), DANet-B-18 at T=1.
3. data: an ImageNet-style JPEG folder written here (ROOT/train/<wnid>/*.JPEG, ROOT/val/<wnid>/*.JPEG)
   read as ``imagenet-5:ROOT`` at 224 px through snnas's decode, cache and loader, feeding the
   search's phase-1 step: the share of each step spent waiting for the next batch.
4. proxy: one default phase-1 trial (the search's own phase-1 fidelity, ``snnas.search.defaults``),
   run twice (the first pays CUDA's start-up), with its peak GPU memory, against the README's CPU time.
5. groundtruth: one ground-truth-table training (``bench/groundtruth.py``'s row) against the README's.
6. workers: trials per hour of the real search with 1, 2 and 4 worker processes sharing the device
   (``bench/search_workers.py``).

Resumable: each measurement lands in ``bench/results/gpu_<device>.json`` as it finishes and a re-run
skips what is there; one that would end past ``--budget-s`` is recorded as skipped and left for the
next run, one that fails is recorded with its reason. Sections 4-6 need Fashion-MNIST: without it
they say so and are skipped (``--fashion-dir`` points at the IDX files carried along).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import torch
from benchlib import SharedResults, set_threads
from data_pipeline import write_image_folder
from gpu_report import print_report, summarize
from groundtruth import train_row
from search_workers import run_config

from snnas import build_model
from snnas.cli import run_guarded
from snnas.compiler.references import ZooNet, load_by_position, relu_twin
from snnas.compiler.size import estimate
from snnas.data import load_splits
from snnas.errors import DataError, SnnasError
from snnas.fit import FitSettings, GenotypeFit, built_genotype
from snnas.search.funnel import SearchOptions
from snnas.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent
FORMAT = "snnas-gpu-check/1"

# The 2-core CPU figures the GPU is held against, as the README states them.
# README, "Which proxy predicts the table": "a width-1/4 ResNet-18 trial takes about 10, 19 and 38 s
# here on two cores" for 9k, 18k and 36k training images; the default proxy trains 18k (600 x 10 x 3).
CPU_PROXY_TRIAL_S = 19.0
# README, "Benchmark figures (2-core CPU, no GPU)": DANet-A ResNet-18, width 1/4, `half` stem, recipe
# `short`, 5 epochs at T=1 on all of Fashion-MNIST: 451 s.
CPU_GROUNDTRUTH_S = 451.0
GROUNDTRUTH_NET = "danet_a_resnet18"  # the network of that figure
PROXY_NET = "danet_b_resnet18"
NETS = ("danet_b_resnet18", "sew_resnet18")
ZOO_NET = "sew_resnet18"

BATCH_MEMORY_SHARE = 0.3
DEFAULTS = {"amp": True, "channels_last": True, "compile": False}  # the trainer's, as the recipes ship them
SWITCHES = {"float32": {"amp": False}, "bfloat16": {"amp": "bfloat16"}, "no-channels-last": {"channels_last": False},
            "compile": {"compile": True}}
# Seconds a measurement is expected to take on the GPU, for the budget (scaled down by --smoke).
ESTIMATE_S = {"train": 6, "infer": 4, "compile": 120, "data": 12, "data-build": 20, "proxy": 30, "groundtruth": 150,
              "workers": 60}


@dataclass(frozen=True)
class Scale:
    """Images and network size of a throughput measurement."""

    name: str
    resolution: int
    width: float
    in_channels: int
    classes: int
    stem: str = "auto"  # the search's stem policy; "imagenet" where SpikingJelly's zoo model is compared


@dataclass(frozen=True)
class Sizes:
    search: Scale  # the search's fidelity
    imagenet: Scale  # ImageNet scale, where the zoo model is compared too
    zoo_search: Scale  # the zoo model's counterpart at the search's resolution
    timesteps: tuple[int, int]
    seconds: tuple[float, float]  # warm-up and timed window of a throughput measurement
    min_steps: int  # in each window
    max_batch: int
    data_resolution: int
    data_images: int  # JPEG files per class (a tenth go to val/)
    data_variants: tuple[tuple[str, int], ...]  # (augmentation, loader worker processes)
    search_overrides: dict = field(default_factory=dict)  # of the phase-1 fidelity (SearchOptions fields)
    groundtruth_overrides: dict = field(default_factory=dict)  # of the ground-truth training (FitSettings)
    groundtruth_splits: dict = field(default_factory=dict)  # load_splits arguments (default: every image)
    workers: tuple[int, ...] = (1, 2, 4)
    worker_trials: int = 4  # the first seed networks, the same in every configuration
    compile: bool = True
    estimate_scale: float = 1.0


FULL = Sizes(search=Scale("28px-w0.25", 28, 0.25, 1, 10), imagenet=Scale("224px-w1", 224, 1.0, 3, 1000, "imagenet"),
             zoo_search=Scale("28px-w1-imagenet-stem", 28, 1.0, 3, 10, "imagenet"), timesteps=(1, 4),
             seconds=(1.0, 2.0), min_steps=2, max_batch=1024, data_resolution=224, data_images=220,
             data_variants=(("none", 0), ("rrc_flip", 0), ("autoaugment", 0), ("autoaugment", 8)))
SMOKE = Sizes(search=Scale("16px-w0.0625", 16, 0.0625, 1, 10), imagenet=Scale("16px-w1", 16, 1.0, 3, 10, "imagenet"),
              zoo_search=Scale("8px-w1-imagenet-stem", 8, 1.0, 3, 10, "imagenet"), timesteps=(1, 2),
              seconds=(0.0, 0.0), min_steps=1, max_batch=2, data_resolution=32, data_images=10,
              data_variants=(("none", 0), ("autoaugment", 0)),
              search_overrides={"resolution": 16, "width_mult": 0.0625, "epochs": 1, "train_per_class": 4,
                                "val_per_class": 2, "batch_size": 8},
              groundtruth_overrides={"epochs": (1,), "width_mult": 0.0625, "batch_size": 16},
              groundtruth_splits={"resolution": 16, "train_per_class": 8, "val_per_class": 2}, workers=(1,),
              worker_trials=2, compile=False, estimate_scale=0.02)


# ---------------------------------------------------------------- the run
class Check:
    """Where results go, the time budget, and one measurement at a time."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, device: torch.device, results: SharedResults):
        self.args, self.sizes, self.device, self.results = args, sizes, device, results
        self.cuda = device.type == "cuda"
        self.cache = args.work / "cache"
        self.started = time.monotonic()
        self.done = {r["id"] for r in results.runs() if r.get("status") == "ok"}

    def fits(self, expected_s: float) -> bool:
        return time.monotonic() - self.started + expected_s <= self.args.budget_s

    def measure(self, rid: str, kind: str, fn: Callable[[], dict], estimate_s: float | None = None,
                **fields: Any) -> dict | None:
        """Run ``fn`` unless it is done or would end past the budget, and record what happened: a
        failed measurement is recorded with its reason and the run goes on to the next one."""
        if rid in self.done:
            return None
        expected = estimate_s if estimate_s is not None else ESTIMATE_S[kind] * self.sizes.estimate_scale
        if not self.fits(expected):
            return self.skip(rid, "time budget", **fields)
        started = time.monotonic()
        try:
            record = {"id": rid, **fields, "status": "ok", **fn()}
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not cost the run the others
            traceback.print_exc()
            record = {"id": rid, **fields, "status": f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
        record["s"] = round(time.monotonic() - started, 2)
        self.results.add(record)
        if record["status"] == "ok":
            self.done.add(rid)
        shown = {k: v for k, v in record.items() if k in ("images_per_s", "batch", "wait_share", "wall_s",
                                                          "trials_per_hour", "peak_gib", "s")}
        print(f"{rid}: {record['status']} " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in shown.items()), flush=True)
        return record

    def skip(self, rid: str, reason: str, **fields: Any) -> None:
        if rid not in self.done:
            self.results.add({"id": rid, **fields, "status": f"skipped: {reason}"})
            print(f"{rid}: skipped: {reason}", flush=True)

    def peak_reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if self.cuda else None


# ---------------------------------------------------------------- 1-2. throughput and switches
class Batches:
    """One device-resident batch served again and again: the step alone, no data cost. An epoch ends
    after ``max_steps`` steps or once its window (``seconds[epoch]``) has passed, after ``min_steps``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seconds: tuple[float, float], min_steps: int,
                 max_steps: int = 100):
        self.x, self.y, self.seconds, self.min_steps, self.max_steps = x, y, seconds, min_steps, max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.max_steps

    def __iter__(self):
        window = self.seconds[min(self.epoch, len(self.seconds) - 1)]
        start = time.perf_counter()
        for step in range(self.max_steps):
            if step >= self.min_steps and time.perf_counter() - start > window:
                return
            yield self.x, self.y


def step_config(batch: int, timesteps: int, **switches: Any) -> TrainConfig:
    """Two epochs (warm-up, timed), no BN recalibration, a small lr (random labels must not diverge)."""
    return TrainConfig(epochs=2, batch_size=batch, lr_per_256=0.01, warmup_epochs=0, augment="none",
                       precise_bn_images=0, timesteps=timesteps, **{**DEFAULTS, **switches})


def genotype_for(net: str, scale: Scale):
    return built_genotype(net, FitSettings(width_mult=scale.width, stem=scale.stem), scale.resolution)


def fill_batch(check: Check, net: str, scale: Scale, timesteps: int) -> int:
    """The largest power of two up to ``max_batch`` whose estimated training memory fits in
    ``BATCH_MEMORY_SHARE`` of the GPU (on the CPU: ``max_batch``)."""
    if not check.cuda:
        return check.sizes.max_batch
    limit = BATCH_MEMORY_SHARE * torch.cuda.get_device_properties(check.device).total_memory
    g = genotype_for(net, scale)
    batch = 1
    while batch * 2 <= check.sizes.max_batch and estimate(
            g, in_channels=scale.in_channels, num_classes=scale.classes, width_mult=scale.width,
            resolution=scale.resolution, timesteps=timesteps, batch_size=batch * 2).total_bytes <= limit:
        batch *= 2
    return batch


def build_snnas(net: str, scale: Scale, built: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(genotype_for(net, scale), num_classes=scale.classes, in_channels=scale.in_channels,
                       timesteps=1, width_mult=scale.width)


def build_zoo(net: str, scale: Scale, built: dict) -> torch.nn.Module:
    zoo = ZooNet(net, num_classes=scale.classes)
    load_by_position(zoo, built["snnas"])
    return zoo


def build_twin(net: str, scale: Scale, built: dict) -> torch.nn.Module:
    return relu_twin(built["snnas"])


# the networks of one (network, scale) compared; the zoo model and the twin take snnas's weights
IMPLS = {"snnas": build_snnas, "spikingjelly": build_zoo, "ann": build_twin}


def network(built: dict, impl: str, net: str, scale: Scale) -> torch.nn.Module:
    """``built[impl]``, building it (and snnas's network first) on first use."""
    for name in ("snnas", impl):
        if name not in built:
            built[name] = IMPLS[name](net, scale, built)
    return built[impl]


def images_per_s(check: Check, model: torch.nn.Module, scale: Scale, batch: int, phase: str,
                 cfg: TrainConfig) -> dict:
    """A training (``fit``) or inference (``evaluate``) step of ``model`` through the trainer, timed
    over the second window; a step that runs out of memory halves the batch (recorded)."""
    planned = batch
    while True:
        check.peak_reset()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, scale.in_channels, scale.resolution, scale.resolution, generator=g).to(check.device)
        y = torch.randint(0, scale.classes, (batch,), generator=g).to(check.device)
        loader = Batches(x, y, check.sizes.seconds, check.sizes.min_steps)
        try:
            trainer = Trainer(model, cfg.replace(batch_size=batch), device=check.device, progress=False)
            if phase == "train":
                history = trainer.fit(loader).history  # epoch 1 warms up (and compiles), epoch 2 is timed
                out = {"images_per_s": history[-1]["images_per_s"], "first_epoch_s": round(history[0]["train_s"], 2)}
            else:
                trainer.evaluate(loader)
                loader.set_epoch(1)
                start = time.perf_counter()
                out = {"images_per_s": trainer.evaluate(loader)["images"] / (time.perf_counter() - start)}
            return {**out, "batch": batch, "batch_planned": planned, "peak_gib": check.peak_gib()}
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            trainer = x = y = loader = None
            torch.cuda.empty_cache()
            batch //= 2


def throughput_cells(sizes: Sizes) -> list[tuple[str, Scale, int, str, str]]:
    """(net, scale, T, impl, phase) of every throughput measurement, in run order."""
    cells = []
    for net in NETS:
        for scale in (sizes.search, sizes.imagenet):
            for t in sizes.timesteps:
                impls = ["snnas"] + ["spikingjelly"] * (net == ZOO_NET and scale is sizes.imagenet) + ["ann"] * (t == 1)
                cells += [(net, scale, t, impl, phase) for impl in impls for phase in ("train", "infer")]
    return cells + [(ZOO_NET, sizes.zoo_search, t, impl, phase) for t in sizes.timesteps
                    for impl in ("snnas", "spikingjelly") for phase in ("train", "infer")]


def run_throughput(check: Check) -> None:
    groups: dict[tuple[str, str], dict] = {}
    for net, scale, t, impl, phase in throughput_cells(check.sizes):
        built = groups.setdefault((net, scale.name), {})

        def one(net=net, scale=scale, t=t, impl=impl, phase=phase, built=built) -> dict:
            batch = fill_batch(check, net, scale, t)
            return images_per_s(check, network(built, impl, net, scale), scale, batch, phase, step_config(batch, t))

        check.measure(f"throughput/{net}/{scale.name}/T{t}/{impl}/{phase}", phase, one, section="throughput",
                      net=net, scale=scale.name, T=t, impl=impl, phase=phase)


def run_switches(check: Check, compiled: bool) -> None:
    """Each switch flipped alone on a freshly built network (a network once made ``channels_last``
    stays so), against the defaults measured in the throughput section."""
    for scale in (check.sizes.search, check.sizes.imagenet):
        for name in (n for n in SWITCHES if (n == "compile") == compiled):
            rid, fields = f"switch/{PROXY_NET}/{scale.name}/T1/{name}", dict(section="switch", net=PROXY_NET,
                                                                             scale=scale.name, switch=name)
            if compiled and not check.sizes.compile:
                check.skip(rid, "smoke: torch.compile takes minutes to compile; measured in the full run", **fields)
                continue

            def one(scale=scale, name=name) -> dict:
                torch._dynamo.reset()  # every compiled network compiles afresh, within dynamo's cache limit
                batch = fill_batch(check, PROXY_NET, scale, 1)
                return images_per_s(check, build_snnas(PROXY_NET, scale, {}), scale, batch, "train",
                                    step_config(batch, 1, **SWITCHES[name]))

            check.measure(rid, "compile" if compiled else "train", one, **fields)


# ---------------------------------------------------------------- 3. data path
class WaitTimed:
    """A training loader that adds up the seconds its consumer waits for each batch (per epoch)."""

    def __init__(self, loader):
        self.loader, self.wait_s = loader, 0.0
        self.name, self.seed = loader.name, loader.seed

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self.wait_s = 0.0

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            self.wait_s += time.perf_counter() - start
            yield batch


def imagenet_folder(check: Check) -> Path:
    """Five classes of JPEGs larger than the cache's side (decoding resizes), written whole or not at all."""
    root = check.args.work / f"imagenet-5-{check.sizes.data_images}"
    if not (root / "val").is_dir():
        side = max(check.sizes.data_resolution * 2, 64)
        with tempfile.TemporaryDirectory(dir=check.args.work) as tmp:
            write_image_folder(Path(tmp) / "root", 5, check.sizes.data_images, (side, side * 3 // 4), seed=0)
            os.replace(Path(tmp) / "root", root)
    return root


def data_wait(check: Check, splits, settings: FitSettings, workers: int) -> dict:
    """The search's phase-1 step on the cached JPEGs: the share of it spent waiting in next(batch)."""
    fit = GenotypeFit(PROXY_NET, splits, settings, device=check.device, num_workers=workers)
    cfg = fit.phases[0].config.replace(epochs=2, precise_bn_images=0)
    loader = WaitTimed(fit.loader(splits.train, train=True, batch_size=cfg.batch_size, augment=cfg.augment))
    last = Trainer(fit.model, cfg, device=check.device, progress=False).fit(loader).history[-1].metrics
    return {"wait_share": loader.wait_s / last["train_s"], "step_ms": 1000 * last["train_s"] / len(loader),
            "images_per_s": last["images_per_s"], "batch": cfg.batch_size, "train_images": len(splits.train)}


def run_data(check: Check) -> None:
    s = check.sizes
    variants = [(f"data/{s.data_resolution}px/{aug}/workers{w}",
                 dict(section="data", resolution=s.data_resolution, augment=aug, workers=w)) for aug, w in s.data_variants]
    if all(rid in check.done for rid, _ in variants):
        return
    if not check.fits(ESTIMATE_S["data-build"] * s.estimate_scale):
        for rid, fields in variants:
            check.skip(rid, "time budget", **fields)
        return
    started = time.monotonic()
    fid = SearchOptions(data=f"imagenet-5:{imagenet_folder(check)}", **s.search_overrides).phase1
    splits = load_splits(fid.data, resolution=s.data_resolution, val_per_class=max(1, s.data_images // 20),
                         cache_dir=check.cache)
    build_s = round(time.monotonic() - started, 2)  # writing the JPEGs, decoding them into the cache
    for rid, fields in variants:
        settings = fid.fit.replace(augment=fields["augment"])
        check.measure(rid, "data", lambda settings=settings, w=fields["workers"]: data_wait(check, splits, settings, w),
                      **fields, folder_and_cache_s=build_s)


# ---------------------------------------------------------------- 4-6. proxy, ground truth, workers
def fashion_spec(check: Check) -> str:
    return "fashion-10" + (f":{check.args.fashion_dir}" if check.args.fashion_dir else "")


def proxy_trials(check: Check, splits, settings: FitSettings) -> dict:
    """Two default phase-1 trials back to back, as a search worker runs them: build, train, measure."""
    walls = []
    for _ in range(2):
        check.peak_reset()
        started = time.monotonic()
        fit = GenotypeFit(PROXY_NET, splits, settings, device=check.device)
        results = fit.run()
        fit.measure()
        walls.append(time.monotonic() - started)
    return {"wall_s": walls[1], "cold_wall_s": walls[0], "val_acc": results[-1].last["val_acc"],
            "images": len(splits.train), "epochs": settings.phases()[0].config.epochs, "peak_gib": check.peak_gib(),
            "speedup_vs_cpu": CPU_PROXY_TRIAL_S / walls[1]}


def run_groundtruth(check: Check, proxy: dict | None) -> None:
    if "groundtruth" in check.done:
        return
    settings = FitSettings(recipe="short", epochs=(5,), timesteps=(1,), width_mult=0.25)
    settings = settings.replace(**check.sizes.groundtruth_overrides)
    splits = load_splits(fashion_spec(check), cache_dir=check.cache, **check.sizes.groundtruth_splits)
    expected = None
    if proxy is not None:  # the proxy trial's pace over the images this training sees, with a margin
        epochs = settings.phases()[0].config.epochs
        expected = proxy["wall_s"] * (epochs * len(splits.train)) / (proxy["epochs"] * proxy["images"]) * 1.3 + 10
    g = built_genotype(GROUNDTRUTH_NET, settings, splits.resolution)
    command = shlex.join(["python", "scripts/retrain.py", "--genotype", GROUNDTRUTH_NET, "--data", fashion_spec(check),
                          "--epochs", "5", "--timesteps", "1", "--width-mult", "0.25"])

    def row() -> dict:
        with tempfile.TemporaryDirectory(dir=check.args.work) as work:
            out = train_row({"key": g.key, "genotype": g.to_str(), "preset": GROUNDTRUTH_NET}, 0, splits, settings,
                            Path(work), command, device=str(check.device))
        return {"wall_s": out["wall_s"], "train_s": out["train_s"], "test_acc": out["test_acc"],
                "train_images": len(splits.train), "speedup_vs_cpu": CPU_GROUNDTRUTH_S / out["wall_s"]}

    check.measure("groundtruth", "groundtruth", row, expected, section="groundtruth", net=GROUNDTRUTH_NET,
                  cpu_s=CPU_GROUNDTRUTH_S)


def run_workers(check: Check) -> None:
    """Trials per hour of the real search (phase 1 on the seed networks) with N worker processes on
    the one device, over the trials' own span (start-up excluded)."""
    s = check.sizes
    search_args = ["--device", str(check.device)]
    for name, value in s.search_overrides.items():
        search_args += ["--" + name.replace("_", "-"), str(value)]
    for n in s.workers:
        threads = check.args.threads or max(1, (os.cpu_count() or 1) // n)

        def one(n=n, threads=threads) -> dict:
            with tempfile.TemporaryDirectory(dir=check.args.work) as tmp:
                out = run_config(n, threads, s.worker_trials, fashion_spec(check), Path(tmp), check.cache, search_args)
            return {k: out[k] for k in ("threads", "trials", "span_s", "wall_s", "trials_per_hour")}

        check.measure(f"workers/{n}", "workers", one, section="workers", workers=n)


def run_fashion_sections(check: Check) -> None:
    ids = ["proxy", "groundtruth"] + [f"workers/{n}" for n in check.sizes.workers]
    if all(rid in check.done for rid in ids):
        return
    fid = SearchOptions(data=fashion_spec(check), **check.sizes.search_overrides).phase1
    try:
        splits = load_splits(fid.data, resolution=fid.resolution, data_seed=fid.data_seed,
                             train_per_class=fid.train_per_class, val_per_class=fid.val_per_class, cache_dir=check.cache)
    except DataError as exc:
        for rid in ids:
            check.skip(rid, f"no Fashion-MNIST: {exc}")
        return
    check.measure("proxy", "proxy", lambda: proxy_trials(check, splits, fid.fit), section="proxy", net=PROXY_NET,
                  cpu_s=CPU_PROXY_TRIAL_S)
    run_groundtruth(check, next((r for r in check.results.runs() if r["id"] == "proxy" and r["status"] == "ok"), None))
    run_workers(check)


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--smoke", action="store_true", help="every section at tiny sizes (seconds): the script's own test")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip measurements that would end past this")
    p.add_argument("--fashion-dir", type=Path, default=None,
                   help="Fashion-MNIST's IDX files (default: Debian's dataset-fashion-mnist)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/gpu_<device>.json)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "gpu-check", help="generated images and data caches")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (and each search worker's)")
    return p.parse_args(argv)


def open_device(text: str) -> tuple[torch.device, str, str]:
    """The device, its description and its file-name slug."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cuda", "cpu"):
        raise SnnasError(f"--device {text!r}: expected cuda, cuda:N or cpu")
    if device.type == "cpu":
        return device, f"cpu ({platform.machine()}, {os.cpu_count()} cores)", "cpu"
    if not torch.cuda.is_available():
        raise SnnasError(f"--device {text}: no CUDA device here (torch {torch.__version__}); "
                         "`--device cpu --smoke` checks the script itself")
    device = torch.device("cuda", device.index or 0)
    torch.cuda.set_device(device)
    props = torch.cuda.get_device_properties(device)
    return device, f"{props.name}, {props.total_memory / 2**30:.0f} GiB", re.sub(r"[^a-z0-9]+", "-", props.name.lower())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.budget_s <= 0:
        raise SnnasError(f"--budget-s {args.budget_s:g}: expected a number of seconds > 0")
    device, name, slug = open_device(args.device)
    sizes = SMOKE if args.smoke else FULL
    out = args.out or REPO / "bench" / "results" / f"gpu_{slug.strip('-')}{'-smoke' if args.smoke else ''}.json"
    settings = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                "spikingjelly": version("spikingjelly"), "smoke": args.smoke}
    args.work.mkdir(parents=True, exist_ok=True)
    check = Check(args, sizes, device, SharedResults(out, FORMAT, settings, identity=lambda r: (r["id"],)))
    print(f"{name}: {len(check.done)} measurements already in {out}; budget {args.budget_s:g} s", flush=True)
    run_throughput(check)
    run_switches(check, compiled=False)
    run_data(check)
    run_fashion_sections(check)
    run_switches(check, compiled=True)  # last: compiling takes longest and decides no target
    summary = summarize(check.results.runs(), max(sizes.timesteps), CPU_PROXY_TRIAL_S)
    check.results.add({"id": "summary", "status": "summary", **summary})
    print(f"\n{name} | torch {torch.__version__} | {out}"
          + ("\nsmoke sizes: these figures check the script, not the device" if args.smoke else ""))
    print_report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main, None))
