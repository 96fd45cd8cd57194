"""File writing that never leaves a half-written file behind, never mixes two runs in one folder, and says what failed.

Every output goes through :func:`atomic_write_path`: a temporary file next to the target, renamed over it when
complete. A write killed without clean-up (SIGKILL, power loss) leaves only that temporary file, which the next run
into the folder removes (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from .errors import RgbxsegError

log = logging.getLogger(__name__)

TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
"""The names :func:`atomic_write_path` gives its temporary files: ``.<target name>.<12 hex digits>.tmp``."""
LOCK_NAME = ".rgbxseg.lock"
"""The file in an output folder that :func:`lock_directory` locks (it is left in place: it holds nothing)."""

_WRITE_FIXES = {
    errno.ENOSPC: "free space on its disk",
    errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or use a file system that allows larger files",
}
"""The fix for each errno that only a write can raise; other write errors are about the folder's permissions."""


class WriteError(RgbxsegError, OSError):
    """A file could not be written (full disk, no permission); its earlier version, if any, is unchanged."""


class OutputExistsError(RgbxsegError, FileExistsError):
    """A run would write over files it did not make, or into a folder that holds them."""


class DirectoryInUseError(RgbxsegError):
    """Another process is writing into the output folder; two runs there would mix their files."""


def _size(size: float) -> str:
    """A byte count for a message: 512 B, 3.4 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike[str], *, size: int = 0, then: str = "then run again") -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success it is renamed over ``path``, on error deleted.

    The rename is atomic on POSIX file systems, so readers see either the old file or the complete new one.
    The temporary name starts with a dot and ends in ``.tmp`` so that globbing for the real files skips it.
    ``size`` (bytes, when known) is checked against the free space first, so a write that cannot fit fails before it
    starts; a write that fails (disk full, no permission) raises :class:`WriteError`, one line naming ``path``, the
    cause and the fix, ``then`` saying how to carry on.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    unchanged = f"{target.name} was left as it was" if target.exists() else f"no {target.name} was written"
    fix = f"or write elsewhere, {then} ({unchanged})"
    if size and (free := shutil.disk_usage(target.parent).free) < size:
        raise WriteError(
            f"cannot write {target}: it needs {_size(size)} and its disk has {_size(free)} free; "
            f"{_WRITE_FIXES[errno.ENOSPC]} {fix}"
        )
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        tmp.replace(target)
    except OSError as err:
        if isinstance(err, WriteError) or not (err.errno in _WRITE_FIXES or err.filename == str(tmp)):
            raise  # not a failure to write this file (e.g. a missing input read inside the block)
        cause = _WRITE_FIXES.get(err.errno, "check that its folder is writable")
        raise WriteError(f"cannot write {target}: {err.strerror or err}; {cause} {fix}") from err
    finally:
        tmp.unlink(missing_ok=True)


def refuse_existing(*paths: str | os.PathLike[str] | None, overwrite: bool = False) -> None:
    """Refuse, before any work starts, to write over files that already exist (unless ``overwrite``); None: unused."""
    existing = [Path(path) for path in paths if path is not None and Path(path).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{existing[0]} already exists; pass --overwrite (overwrite=True) to replace it, or choose another path"
        )


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> None:
    """Delete the temporary files that writes killed without clean-up left in ``directory`` (they hold nothing usable).

    Call it only while owning the folder: a live writer's temporary file has the same name pattern.
    """
    directory = Path(directory)
    stale = (
        sorted(p for p in directory.glob(".*.tmp") if TEMPORARY_NAME.fullmatch(p.name)) if directory.is_dir() else []
    )
    freed = sum(path.stat().st_size for path in stale)
    for path in stale:
        path.unlink()
    if stale:
        log.info("removed %d temporary files of interrupted writes (%s) from %s", len(stale), _size(freed), directory)


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Own ``directory`` while the block runs: a second process that tries fails at once instead of mixing its files in.

    The lock (``flock`` on ``directory/.rgbxseg.lock``) dies with its process, so a killed run never leaves it held.
    """
    import fcntl  # noqa: PLC0415 (POSIX only; imported here so that the package imports everywhere)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK_NAME
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryInUseError(
                f"{directory} is in use by another rgbxseg run (it holds the lock {lock}); wait for that run to end, "
                "or choose another output folder"
            ) from None
        yield directory


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", *, progress: bool = False) -> str:
    """Hex digest of a file, streamed in 8 MiB blocks (multi-GB files never sit in memory)."""
    path = Path(path)
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with (
        path.open("rb") as stream,
        tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{algorithm} {path.name}", disable=not progress
        ) as bar,
    ):
        while block := stream.read(8 * 2**20):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()
