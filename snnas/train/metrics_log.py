"""Per-epoch metrics on disk: one JSON line per epoch, and TensorBoard scalars when asked.

A resumed run rewinds the JSONL file to its checkpoint, so the file never holds an epoch twice
or an epoch whose weights were lost.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from snnas.files import atomic_write_text


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class MetricsFile:
    """Append-only JSONL of metrics dictionaries (each line is written with one ``write``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: _jsonable(v) for k, v in record.items()}, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash mid-write
                continue
        return records

    def drop(self, unwanted: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the file atomically without the records ``unwanted`` selects."""
        if not self.path.is_file():
            return
        kept = [r for r in self.read() if not unwanted(r)]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


class TensorBoardLog:
    """Scalars under ``<dir>``; ``step`` is the global epoch so phases line up on one axis."""

    def __init__(self, log_dir: str | os.PathLike):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, metrics: dict[str, Any], step: int, prefix: str = "") -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
