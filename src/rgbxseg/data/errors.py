"""Errors raised for bad dataset input. Every message names the file and says how to fix it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or breaks the canonical conventions."""


class IncompleteDatasetError(DatasetError):
    """The dataset directory has no ``meta.json``: its preparation did not finish."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file the dataset needs does not exist (catchable as :class:`FileNotFoundError` too)."""


class InvalidDatasetError(DatasetError):
    """Checking a whole dataset found problems: ``problems`` has one line for each, naming the file and the fix."""

    SHOWN = 3
    """Problems quoted in the message; the others are in ``problems``."""

    def __init__(self, root: str | os.PathLike[str], problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        rest = len(self.problems) - self.SHOWN
        more = f"; … and {rest} more" if rest > 0 else ""
        super().__init__(
            self.problems[0]
            if len(self.problems) == 1
            else f"{printable(root)}: {len(self.problems)} problems: " + "; ".join(self.problems[: self.SHOWN]) + more
        )


def printable(text: str | os.PathLike[str]) -> str:
    """A path (or a message naming one) as text that any stream can print: the bytes of a file name that are not
    UTF-8 (which Python holds as surrogates) are shown as ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or :class:`MissingFileError` naming it when no such file exists."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file is missing")
    return path
