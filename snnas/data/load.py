"""``load_splits``: from a data spec to cached, memory-mapped train/val/test tensors."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from snnas.data.cache import (CACHE_FORMAT, MANIFEST_NAME, cache_key, default_cache_dir, ensure_entry,
                              load_split_arrays, open_images_writer, read_manifest, split_path)
from snnas.data.cifar import CifarSource
from snnas.data.fashion import FashionSource
from snnas.data.folder import FolderSource
from snnas.data.source import Source
from snnas.data.spec import DataSpec, parse_data_spec
from snnas.data.subset import DEFAULT_VAL_FRACTION, SPLITS, Plan, SplitRule, choose_classes, plan_subset
from snnas.data.tensorset import Splits, TensorSet
from snnas.errors import DataError
from snnas.files import atomic_write_json

log = logging.getLogger(__name__)

DEFAULT_FOLDER_RESOLUTION = 224
MAX_RESOLUTION = 4096
_STATS_CHUNK_VALUES = 1 << 22


def open_source(spec: DataSpec) -> Source:
    if spec.kind == "fashion":
        return FashionSource(spec.source_dir)
    if spec.kind in ("cifar10", "cifar100"):
        return CifarSource(spec.kind, spec.source_dir)
    return FolderSource(spec.kind, spec.source_dir)


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise DataError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale, accumulated in float64 chunks."""
    n, channels = images.shape[:2]
    per_image = int(np.prod(images.shape[1:])) or 1
    step = max(1, _STATS_CHUNK_VALUES // per_image)
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, n, step):
        chunk = torch.from_numpy(np.asarray(images[start:start + step])).to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = max(1, n * images.shape[2] * images.shape[3])
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std) * 255)  # a constant channel: leave it unscaled
    return tuple(round(v / 255, 6) for v in mean.tolist()), tuple(round(v / 255, 6) for v in std.tolist())


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _build_entry(tmp: Path, source: Source, plan: Plan, resolution: int, manifest: dict) -> None:
    for split in SPLITS:
        shape = (len(plan.items[split]), source.channels, resolution, resolution)
        out = open_images_writer(tmp, split, shape)
        source.write("test" if split == "test" else "train", plan.items[split], out, resolution)
        if isinstance(out, np.memmap):
            out.flush()
        del out
        np.save(split_path(tmp, split, "labels"), plan.labels[split])
        for what in ("images", "labels"):
            _fsync(split_path(tmp, split, what))
    train_images, _ = load_split_arrays(tmp, "train")
    mean, std = channel_stats(train_images)
    atomic_write_json(tmp / MANIFEST_NAME, {**manifest, "mean": list(mean), "std": list(std)})


def _tensor_set(entry: Path, split: str, manifest: dict) -> TensorSet:
    images, labels = load_split_arrays(entry, split)
    expected = (manifest["sizes"][split], manifest["channels"], manifest["resolution"], manifest["resolution"])
    if tuple(images.shape) != expected or labels.shape != (expected[0],):
        raise DataError(f"data cache entry {entry} is damaged ({split} holds {tuple(images.shape)}, "
                        f"manifest says {expected}); delete it to rebuild")
    return TensorSet(images=torch.from_numpy(images), labels=torch.from_numpy(labels.astype(np.int64)),
                     name=split, mean=tuple(manifest["mean"]), std=tuple(manifest["std"]),
                     path=split_path(entry, split, "images"))


def load_splits(spec: str | DataSpec, resolution: int | None = None, data_seed: int = 0,
                cache_dir: str | os.PathLike | None = None, train_per_class: int | None = None,
                val_per_class: int | None = None, *, val_fraction: float = DEFAULT_VAL_FRACTION,
                classes: Sequence | None = None) -> Splits:
    """Train/val/test of a data spec, decoded once into the cache and memory-mapped afterwards.

    ``resolution`` None means the source's own size (28 for Fashion-MNIST, 32 for CIFAR, 224 for
    image folders). Train and val are carved from the source's training data, stratified and seeded
    by ``data_seed``: ``val_per_class`` images per class (default ``val_fraction`` of each class),
    then at most ``train_per_class`` training images per class. Test is the official held-out set.
    ``classes`` overrides the seeded class choice (for instance with a shared manifest's
    ``classes``). ``cache_dir`` defaults to :func:`default_cache_dir`.
    """
    data_spec = parse_data_spec(spec)
    seed = _check_int("data_seed", data_seed, 0)
    if resolution is not None:
        _check_int("resolution", resolution, 4, MAX_RESOLUTION)
    rule = SplitRule(val_fraction=float(val_fraction), val_per_class=val_per_class, train_per_class=train_per_class)
    source = open_source(data_spec)
    res = int(resolution or source.native_resolution or DEFAULT_FOLDER_RESOLUTION)
    where = str(getattr(source, "train_dir", data_spec.source_dir))
    chosen = choose_classes(source, data_spec.k, seed, where, classes)
    plans: list[Plan] = []

    def plan() -> Plan:  # array sources plan only when building: listing them means reading them
        if not plans:
            plans.append(plan_subset(source, chosen, seed, rule, where))
        return plans[0]

    fingerprint = source.fingerprint()
    key_fields = {"kind": data_spec.kind, "k": data_spec.k, "source": fingerprint, "seed": seed,
                  "classes": [str(c) for c in chosen], "split_rule": rule.to_dict(), "resolution": res}
    if source.listing_in_key:
        key_fields["plan"] = plan().digest()
    key = cache_key(key_fields)
    name = f"{data_spec.kind}-{len(chosen)}-{res}px-seed{seed}-{key}"
    canonical = DataSpec(data_spec.kind, data_spec.k, None if data_spec.root is None else fingerprint["root"])

    def manifest() -> dict:
        counts = plan().counts
        class_names = [source.class_name(c) for c in chosen]
        return {
            "format": CACHE_FORMAT, "key": key, "spec": str(canonical),
            "source": {"kind": data_spec.kind, **fingerprint, "test": source.test_description()},
            "seed": seed, "classes": list(chosen), "class_names": class_names, "resolution": res,
            "channels": source.channels, "split_rule": rule.to_dict(),
            "counts": {split: dict(zip(class_names, counts[split])) for split in SPLITS},
            "sizes": {split: len(plan().items[split]) for split in SPLITS},
        }

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry, built = ensure_entry(root, name, lambda tmp: _build_entry(tmp, source, plan(), res, manifest()))
    log.info("%s data cache %s", "built" if built else "using", entry)
    stored = read_manifest(entry)
    if stored["key"] != key:
        raise DataError(f"data cache entry {entry} belongs to another subset (key {stored['key']}); delete it to rebuild")
    sets = {split: _tensor_set(entry, split, stored) for split in SPLITS}
    return Splits(train=sets["train"], val=sets["val"], test=sets["test"], num_classes=len(chosen),
                  in_channels=source.channels, class_names=tuple(stored["class_names"]), manifest=stored,
                  spec=str(spec), resolution=res, mean=tuple(stored["mean"]), std=tuple(stored["std"]),
                  cache_path=entry)
