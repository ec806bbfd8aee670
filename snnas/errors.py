"""Exception types shared across layers.

Every error a user can cause derives from :class:`SnnasError`; the command line turns it into one
line on stderr and exit status 2, so a typo never shows a traceback. Programming errors keep
their tracebacks.
"""
from __future__ import annotations


EXCERPT_CHARS = 60  # an echoed value longer than this is cut (a 10 MB input must not come back whole)
MESSAGE_CHARS = 600  # the one error line, at most


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to a readable length, saying how long it was."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails still deserves a message
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[:limit - 3]}... ({len(text):,} characters)"


def one_line(message: object, limit: int = MESSAGE_CHARS) -> str:
    """An error message as one line of readable length (the command line's error line)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SnnasError(Exception):
    """A user-facing error: bad input, bad file, bad configuration."""


class GenotypeError(SnnasError, ValueError):
    """An invalid genotype: the message names the field, the bad value and what is allowed."""


class DataError(SnnasError):
    """Bad data: missing path, empty class folder, corrupt image, unknown data spec."""


class SpaceError(SnnasError):
    """A search-space file that cannot be used."""


class StorageError(SnnasError):
    """A storage URL that cannot be used (the message never contains the password)."""


class CheckpointError(SnnasError):
    """A checkpoint or model file that cannot be loaded safely."""


class Diverged(SnnasError, ArithmeticError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, epoch: int, step: int, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(f"training diverged: loss {value} at epoch {epoch}, step {step}")
