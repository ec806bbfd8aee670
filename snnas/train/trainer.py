"""One trainer for the search's proxies and for full retraining.

It fits any network that follows the compiled-network contract (``model(x)`` gives logits
averaged over ``model.timesteps`` and resets its neurons itself) on any iterable of ``(x, y)``
batches with ``len()`` (and ``set_epoch`` when it reshuffles per epoch). Everything that
decides the result is in the :class:`TrainConfig`; everything needed to continue a run is in
its checkpoint, so a killed run resumed from disk ends with the weights an uninterrupted run
would have had.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from snnas.checkpoint import atomic_save, model_record, plain_state_dict, safe_load
from snnas.errors import CheckpointError, DataError, Diverged
from snnas.train import distributed as dist_utils
from snnas.train.callbacks import EpochCallback
from snnas.train.config import AMP_DTYPES, TrainConfig, TrainConfigError
from snnas.train.metrics_log import MetricsFile, TensorBoardLog
from snnas.train.schedule import build_scheduler
from snnas.train.precise_bn import clean_batches, recompute_bn_stats
from snnas.train.shortcut import ShortcutHeads, combine_losses, head_share
from snnas.train.syncbn import convert_sync_batchnorm

CHECKPOINT_FORMAT = "snnas-train/1"
# Settings that change how a run is executed but not the numbers it computes; a resume may differ in these.
_RESUMABLE_CHANGES = frozenset({"eval_every", "compile"})

CHECKPOINT_NAME = "checkpoint.pt"  # in each run's out_dir, rewritten every epoch


@dataclass(frozen=True)
class EpochResult:
    """The metrics of one epoch (``metrics["epoch"]`` counts from 1); indexable like the dict."""

    epoch: int
    metrics: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.metrics.get(key, default)


@dataclass(frozen=True)
class FitResult:
    history: list[EpochResult]
    stopped_early: bool = False
    resumed_from: int = 0  # epochs already done when this call started
    epochs_run: int = 0  # epochs trained by this call

    @property
    def last(self) -> EpochResult | None:
        return self.history[-1] if self.history else None

    @property
    def best(self) -> EpochResult | None:
        """The epoch with the highest validation accuracy (None when never evaluated)."""
        scored = [r for r in self.history if r.get("val_acc") is not None]
        return max(scored, key=lambda r: r["val_acc"]) if scored else None


class _TrainingNet(nn.Module):
    """The network plus the trainer's auxiliary heads, as one module for DDP and torch.compile."""

    def __init__(self, model: nn.Module, heads: ShortcutHeads | None):
        super().__init__()
        self.model = model
        self.heads = heads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.heads is None:
            return self.model(x), []
        logits, stages = self.model(x, return_stages=True)
        return logits, self.heads(stages)


def split_name(loader: Any) -> str | None:
    """The name of the split a loader walks (``TensorSet.name``), when it says."""
    for attr in ("dataset", "tensor_set", "data", "split"):
        name = getattr(getattr(loader, attr, None), "name", None)
        if isinstance(name, str):
            return name
    name = getattr(loader, "name", None)
    return name if isinstance(name, str) else None


def _data_seed(loader: Any) -> int | None:
    seed = getattr(loader, "seed", None)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _data_generator(loader: Any) -> torch.Generator | None:
    gen = getattr(loader, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


class Trainer:
    """Fits ``model`` with ``config``; see the module docstring for what it expects.

    ``out_dir`` receives ``checkpoint.pt`` (every epoch), ``metrics.jsonl`` and, with
    ``tensorboard=True``, ``tb/``; without it nothing is written. ``tags`` are added to every
    metrics record (a multi-phase run tags its phase). ``progress=False`` silences the bar,
    which also hides itself when stderr is not a terminal. Under ``torchrun`` the network is
    wrapped in DistributedDataParallel and only rank 0 writes.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, *, callbacks: Sequence[EpochCallback] = (),
                 out_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 progress: bool = True, tensorboard: bool = False, tags: dict[str, Any] | None = None,
                 metrics_path: str | os.PathLike | None = None):
        if not isinstance(config, TrainConfig):
            raise TrainConfigError(f"expected a TrainConfig, got {type(config).__name__}")
        for cb in callbacks:
            if not isinstance(cb, EpochCallback):
                raise TypeError(f"callback {cb!r} has no on_epoch_end(epoch, metrics) method")
        self.config = config
        self.callbacks = list(callbacks)
        self.ctx = dist_utils.current()
        self.device = torch.device(device) if device is not None else dist_utils.default_device(self.ctx)
        self.on_cuda = self.device.type == "cuda"
        self.amp_dtype = config.amp_dtype if self.on_cuda else None  # mixed precision acts on CUDA only
        self.amp = self.amp_dtype is not None
        self._autocast_dtype = getattr(torch, self.amp_dtype or AMP_DTYPES[0])
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.tags = dict(tags or {})
        self.metrics_file = None
        if metrics_path is not None:
            self.metrics_file = MetricsFile(metrics_path)
        elif self.out_dir is not None:
            self.metrics_file = MetricsFile(self.out_dir / "metrics.jsonl")
        self.tensorboard = tensorboard and self.out_dir is not None

        self.model = model
        if config.timesteps is not None:
            model.timesteps = config.timesteps
        heads = None
        if config.aux_heads:
            channels = getattr(model, "stage_channels", None)
            if not channels or len(channels) < 2:
                raise TrainConfigError("aux_heads needs a network with at least two stages (model.stage_channels)")
            with torch.random.fork_rng(devices=[]):  # the heads' initialisation never moves the global stream
                torch.manual_seed(config.seed)
                heads = ShortcutHeads(channels, model.num_classes)
        model.to(self.device)
        if self.on_cuda and config.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.on_cuda and self.ctx.active and config.sync_bn:
            convert_sync_batchnorm(model)
        self.heads = heads.to(self.device) if heads is not None else None
        self.net = _TrainingNet(model, self.heads)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        # bfloat16 has float32's range: only float16 needs its loss scaled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == "float16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.scheduler = None

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None

    def _genotype_record(self) -> dict[str, Any]:
        try:
            return model_record(self.model)
        except CheckpointError:  # a hand-written network: weights only
            return {"genotype": None, "build_kwargs": None}

    def _save_checkpoint(self, epoch: int, history: list[EpochResult], train_loader: Any) -> None:
        gen = _data_generator(train_loader)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": plain_state_dict(self.model),
            "heads": plain_state_dict(self.heads) if self.heads is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.on_cuda else None,
                "data": gen.get_state() if gen is not None else None,
                "data_seed": _data_seed(train_loader),
            },
            "config": self.config.to_dict(),
            "tags": self.tags,
            "history": [r.metrics for r in history],
            **self._genotype_record(),
        }
        atomic_save(payload, self.checkpoint_path)

    def _restore(self, path: Path, train_loader: Any) -> tuple[int, list[EpochResult]]:
        state = safe_load(path, map_location=self.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a training checkpoint (format {state.get('format')!r})")
        saved = state.get("config") or {}
        current = self.config.to_dict()
        changed = sorted(k for k in set(saved) | set(current)
                         if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k))
        if changed:
            raise CheckpointError(f"{path}: cannot resume with different training settings ({', '.join(changed)}); "
                                  "start a new run or use the original settings")
        genotype = self._genotype_record()["genotype"]
        if genotype is not None and state.get("genotype") not in (None, genotype):
            raise CheckpointError(f"{path}: the checkpoint was written for a different genotype")
        try:
            self.model.load_state_dict(state["model"])
            if self.heads is not None:
                if state.get("heads") is None:
                    raise CheckpointError(f"{path}: the checkpoint has no auxiliary heads to resume")
                self.heads.load_state_dict(state["heads"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):  # a CPU run saves a disabled, empty scaler
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not fit this run: {' '.join(str(exc).split())[:300]}") from None
        rng = state.get("rng") or {}
        if rng.get("data_seed") is not None and _data_seed(train_loader) not in (None, rng["data_seed"]):
            raise CheckpointError(f"{path}: the run was shuffled with data seed {rng['data_seed']}, "
                                  f"not {_data_seed(train_loader)}; resume with the original seed")
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"].cpu())
        if self.on_cuda and rng.get("cuda") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        gen = _data_generator(train_loader)
        if gen is not None and rng.get("data") is not None:
            gen.set_state(rng["data"].cpu())
        history = [EpochResult(int(m["epoch"]), dict(m)) for m in state.get("history", [])]
        return int(state["epoch"]), history

    # ---------------------------------------------------------------- training
    def fit(self, train_loader: Iterable, val_loader: Iterable | None = None, *, resume: bool = False) -> FitResult:
        """Train for ``config.epochs`` (or until a callback says stop); with ``resume=True``
        continue from ``out_dir/checkpoint.pt`` when there is one."""
        cfg = self.config
        steps = len(train_loader)
        if steps == 0:
            raise DataError(f"the training split{self._named(train_loader)} gives no batches "
                            f"(batch size {cfg.batch_size})")
        self.scheduler = build_scheduler(self.optimizer, cfg, steps)
        start, history = 0, []
        ckpt = self.checkpoint_path
        if resume and ckpt is not None and ckpt.is_file():
            start, history = self._restore(ckpt, train_loader)
        if self.ctx.is_main and self.metrics_file is not None:  # the file says what the weights saw
            mine = lambda r: all(r.get(k) == v for k, v in self.tags.items())  # noqa: E731
            self.metrics_file.drop(lambda r: mine(r) and int(r.get("epoch", 0)) > start)
        runner: nn.Module = self.net
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            runner = DistributedDataParallel(self.net, device_ids=[self.device] if self.on_cuda else None)
        if cfg.compile:
            runner = torch.compile(runner)
        board = TensorBoardLog(self.out_dir / "tb") if self.tensorboard and self.ctx.is_main else None
        stopped, run = False, 0
        try:
            for index in range(start, cfg.epochs):
                epoch = index + 1
                metrics = {"epoch": epoch, "epochs": cfg.epochs, "timesteps": int(getattr(self.model, "timesteps", 0))}
                metrics.update(self._train_epoch(runner, train_loader, index))
                if cfg.precise_bn_images:
                    metrics["precise_bn_images"] = recompute_bn_stats(
                        self.model, clean_batches(train_loader, index), cfg.precise_bn_images, self.device,
                        channels_last=self.on_cuda and cfg.channels_last)
                if val_loader is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                    dist_utils.broadcast_buffers(self.model)
                    val = self.evaluate(val_loader)
                    metrics.update(val_acc=val["acc"], val_loss=val["loss"], val_images=val["images"],
                                   val_split=split_name(val_loader) or "val")
                metrics.update(self.tags)
                result = EpochResult(epoch, metrics)
                history.append(result)
                run += 1
                if self.ctx.is_main:
                    if self.metrics_file is not None:
                        self.metrics_file.append(metrics)
                    if ckpt is not None:
                        self._save_checkpoint(epoch, history, train_loader)
                    if board is not None:
                        board.write(metrics, step=epoch, prefix=self._board_prefix())
                stop = False
                for cb in self.callbacks:  # every callback sees every epoch, even after one said stop
                    stop = bool(cb.on_epoch_end(epoch, dict(metrics))) or stop
                stopped = dist_utils.broadcast_flag(stop, self.device)
                if stopped:
                    break
        finally:
            if board is not None:
                board.close()
        dist_utils.broadcast_buffers(self.model)
        return FitResult(history=history, stopped_early=stopped, resumed_from=start, epochs_run=run)

    def _board_prefix(self) -> str:
        return "".join(f"{k}{v}/" for k, v in sorted(self.tags.items()))

    @staticmethod
    def _named(loader: Any) -> str:
        name = split_name(loader)
        return f" {name!r}" if name else ""

    def _train_epoch(self, runner: nn.Module, loader: Iterable, index: int) -> dict[str, Any]:
        cfg = self.config
        epoch = index + 1
        self.net.train()
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(index)
        steps = len(loader)
        shares = 0.0
        # running sums: main loss x images, total loss x images, correct, images
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        world = self.ctx.world_size
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   dynamic_ncols=True, disable=(None if self.progress and self.ctx.is_main else True))
        start = time.perf_counter()
        try:
            for step, (x, y) in enumerate(loader, 1):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                if self.on_cuda and cfg.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=self.device.type, dtype=self._autocast_dtype, enabled=self.amp):
                    logits, aux = runner(x)
                share = head_share(cfg.aux_weight, index * steps + step - 1, cfg.epochs * steps) if aux else 0.0
                shares += share
                main_loss = self.criterion(logits.float(), y)
                loss = combine_losses(main_loss, [self.criterion(a.float(), y) for a in aux], share)
                value = loss.detach().to(torch.float64).reshape(1)
                if world > 1:  # every rank sees the global loss, so all stop together on divergence
                    value = dist_utils.all_reduce_sum(value) / world
                value = value.item()
                if not math.isfinite(value):
                    raise Diverged(epoch, step, value)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                n = y.shape[0]
                with torch.no_grad():
                    correct = (logits.argmax(dim=1) == y).sum()
                    sums += torch.stack([main_loss.detach().double() * n, loss.detach().double() * n,
                                         correct.double(), torch.tensor(float(n), dtype=torch.float64,
                                                                        device=self.device)])
                if not bar.disable and (step % 10 == 0 or step == steps):
                    seen = sums[3].item()
                    bar.set_postfix(loss=f"{sums[0].item() / seen:.4f}", acc=f"{sums[2].item() / seen:.3f}",
                                    img_s=f"{seen * world / (time.perf_counter() - start):.0f}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        sums = dist_utils.all_reduce_sum(sums)
        images = sums[3].item()
        metrics = {
            "train_loss": sums[0].item() / images,
            "train_acc": sums[2].item() / images,
            "train_images": int(images),
            "train_split": split_name(loader) or "train",
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_s": elapsed,
            "images_per_s": images / elapsed if elapsed > 0 else float("nan"),
        }
        if self.heads is not None:
            metrics.update(train_total_loss=sums[1].item() / images, aux_share=shares / steps)
        return metrics

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """Accuracy and (unsmoothed) cross-entropy of the network alone over ``loader``, summed
        over every process's share."""
        return evaluate_model(self.model, loader, device=self.device, amp=self.amp_dtype or False,
                              channels_last=self.on_cuda and self.config.channels_last)


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: Iterable, *, device: str | torch.device | None = None,
                   amp: bool | str = False, channels_last: bool = False) -> dict[str, float]:
    """``{"acc", "loss", "images"}`` of ``model`` over ``loader`` (in eval mode; under ``torchrun``
    each process passes its share and the sums are combined). ``loss`` is plain cross-entropy.
    ``amp`` is a :class:`TrainConfig`'s: True or a type name autocasts on CUDA."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = AMP_DTYPES[0] if amp is True else (amp or None)
    if dtype is not None and dtype not in AMP_DTYPES:
        raise TrainConfigError(f"amp {amp!r}: expected true, false or one of {', '.join(AMP_DTYPES)}")
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for x, y in loader:
        if y.numel() == 0:  # a rank's share of a short last batch
            continue
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=getattr(torch, dtype or AMP_DTYPES[0]),
                            enabled=dtype is not None and device.type == "cuda"):
            logits = model(x)
        sums[0] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[1] += (logits.argmax(dim=1) == y).sum().double()
        sums[2] += y.shape[0]
    sums = dist_utils.all_reduce_sum(sums)
    images = sums[2].item()
    if images == 0:
        name = split_name(loader)
        raise DataError(f"the evaluation split{f' {name!r}' if name else ''} gives no images")
    return {"acc": sums[1].item() / images, "loss": sums[0].item() / images, "images": int(images)}
