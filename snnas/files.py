"""The one way the package writes a file: to a temporary file beside it, then a rename.

A crash, a kill or a full disk mid-write leaves the old file (or none) where the new one was
going, never half of one; readers never see a partial JSON, checkpoint or figure. Temporary files
are private while written and get the user's usual mode (0644 under the umask) when they land.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from snnas.errors import SnnasError


class OutputError(SnnasError, OSError):
    """A file that cannot be written where the user asked for it."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_mode(mode: int = 0o644) -> int:
    """``mode`` under the process umask: what an ordinary ``open()`` would have created."""
    return mode & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, fsync: bool = True) -> Path:
    """Call ``write(handle)`` on a temporary binary file in ``path``'s folder, then rename it to
    ``path``. Creates missing parent folders; on any failure the temporary file is removed and
    ``path`` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, shared_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_to_path(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """:func:`atomic_write` for libraries that insist on a file name (HDF5): ``write(tmp_path)``
    fills a temporary file beside ``path``, which then replaces it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        write(Path(tmp))
        os.chmod(tmp, shared_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), fsync=fsync)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, fsync: bool = True) -> Path:
    """``data`` as JSON with sorted keys and a final newline."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True) + "\n", fsync=fsync)


MAX_TEXT_BYTES = 4 << 20  # genotype JSON, space TOML, manifests: kilobytes; anything this large is not one


def read_text(path: str | os.PathLike, what: str, error: type[Exception], max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a small file the user gave; every way it can be unusable (missing, a
    folder, huge, unreadable, not UTF-8) raises ``error`` with one line naming the file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{what} {path}: is a directory, not a file")
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {path}: {size:,} bytes, more than such a file can be ({max_bytes:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise error(f"{what} {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path}: not UTF-8 text (byte {exc.start:,} is 0x{data[exc.start]:02x})") from None


def parse_json(text: str | bytes, what: str, error: type[Exception]) -> Any:
    """JSON from user input; malformed, wrongly encoded or absurdly nested text raises ``error``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{what}: nested too deeply to be one") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what}: not UTF-8 text (byte {exc.start:,})") from None
    except (ValueError, TypeError) as exc:
        raise error(f"{what}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_can_make(folder: Path, flag: str, shown: Path, error: type[Exception]) -> None:
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise error(f"{flag} {shown}: {base} is a file, so no folder can be made there")
    try:  # a real write: permission bits say little to root, or on a read-only or virtual file system
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise error(f"{flag} {shown}: cannot write in {base} ({exc.strerror or type(exc).__name__})") from None


def check_output_dir(path: str | os.PathLike, flag: str, error: type[Exception]) -> Path:
    """Refuse, before any work, an output folder that cannot be one: an existing file, or a place
    that cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{flag} {path}: is a file, not a folder")
    _check_can_make(path, flag, path, error)
    return path


def check_output_file(path: str | os.PathLike, flag: str, error: type[Exception]) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, or a place that
    cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{flag} {path}: is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise error(f"{flag} {path}: is not writable")
    _check_can_make(path.parent, flag, path, error)
    return path
