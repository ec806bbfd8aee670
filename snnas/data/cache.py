"""The decoded-subset store: one directory per key holding ``.npy`` arrays and ``manifest.json``.

An entry is built in a private temporary directory and renamed into place in one step, so readers
never see half an entry, a crash leaves nothing behind that looks valid, and of two processes that
build the same entry at once one wins the rename and the other uses its result. A per-entry
``fcntl`` lock makes the second process wait instead of decoding the same images again (where the
file system cannot lock, the rename alone keeps entries whole).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from snnas.errors import DataError
from snnas.files import parse_json, read_text

CACHE_FORMAT = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_KEYS = ("format", "key", "spec", "source", "seed", "classes", "class_names", "resolution",
                 "channels", "split_rule", "counts", "sizes", "mean", "std")
SPLIT_FILES = {"images": "{split}_images.npy", "labels": "{split}_labels.npy"}


def default_cache_dir() -> Path:
    """``$SNNAS_CACHE``, else ``$XDG_CACHE_HOME/snnas/data``, else ``~/.cache/snnas/data``."""
    if os.environ.get("SNNAS_CACHE"):
        return Path(os.path.expanduser(os.environ["SNNAS_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "snnas" / "data"


def cache_key(fields: dict) -> str:
    text = json.dumps({"cache_format": CACHE_FORMAT, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def split_path(entry: Path, split: str, what: str) -> Path:
    return entry / SPLIT_FILES[what].format(split=split)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a subset manifest (the file, or the cache entry directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    manifest = parse_json(read_text(path, "manifest", DataError), f"manifest {path}", DataError)
    if not isinstance(manifest, dict):
        raise DataError(f"manifest {path} is not a JSON object")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DataError(f"manifest {path} lacks {', '.join(missing)}")
    if manifest["format"] != CACHE_FORMAT:
        raise DataError(f"manifest {path} has format {manifest['format']!r}, this snnas reads {CACHE_FORMAT}")
    return manifest


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """An exclusive advisory lock; yields False (and locks nothing) where the platform or file
    system has no locks."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps entries whole
        yield False
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            yield False
            return
        yield True  # closing the file releases the lock


def remove_stale_builds(cache_root: Path, name: str) -> None:
    """Temporary directories of ``name`` left by killed builders. Only call while holding the
    entry's lock: then no live process is building it."""
    for leftover in cache_root.glob(f".tmp-{name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def is_complete(entry: Path) -> bool:
    return (entry / MANIFEST_NAME).is_file()


def publish(tmp: Path, entry: Path) -> None:
    """Move a finished temporary directory into place; if another process won, keep theirs."""
    try:
        os.replace(tmp, entry)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not is_complete(entry):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_entry(cache_root: Path, name: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry ``cache_root/name``, built by ``build(tmp_dir)`` if absent. Returns (path, built)."""
    entry = cache_root / name
    if is_complete(entry):
        return entry, False
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data cache directory {cache_root}: {exc}") from exc
    with file_lock(cache_root / f".{name}.lock") as locked:
        if is_complete(entry):
            return entry, False
        if locked:
            remove_stale_builds(cache_root, name)
        tmp = cache_root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            build(tmp)
            publish(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return entry, True


def open_images_writer(entry: Path, split: str, shape: tuple[int, ...]) -> np.ndarray:
    """A writable uint8 ``.npy`` memory map for one split's images (the file is the array)."""
    path = split_path(entry, split, "images")
    if int(np.prod(shape)) == 0:  # an empty file cannot be memory-mapped
        np.save(path, np.zeros(shape, dtype=np.uint8))
        return np.zeros(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


def load_split_arrays(entry: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images memory-mapped copy-on-write (shared page cache, writable views), labels in memory."""
    images_path = split_path(entry, split, "images")
    try:
        try:
            images = np.load(images_path, mmap_mode="c")
        except ValueError:  # an empty array cannot be memory-mapped
            images = np.load(images_path)
        labels = np.load(split_path(entry, split, "labels"))
    except (OSError, ValueError) as exc:
        raise DataError(f"data cache entry {entry} is damaged ({exc}); delete it to rebuild") from exc
    return images, labels
