"""Errors raised for bad dataset input. Every message names the file and says how to fix it."""

from __future__ import annotations

import os
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or breaks the canonical conventions."""


class IncompleteDatasetError(DatasetError):
    """The dataset directory has no ``meta.json``: its preparation did not finish."""


class MissingFileError(DatasetError, FileNotFoundError):
    """A file the dataset needs does not exist (catchable as :class:`FileNotFoundError` too)."""


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or :class:`MissingFileError` naming it when no such file exists."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: file is missing")
    return path
