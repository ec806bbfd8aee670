"""Writing figures through the package's atomic writer (a reader never sees half a PNG)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnas.files import atomic_write  # noqa: E402


def save_png(fig, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` and close it."""
    try:
        return atomic_write(path, lambda handle: fig.savefig(handle, dpi=dpi, format="png"), fsync=False)
    finally:
        plt.close(fig)
