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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
