"""File writing that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success it is renamed over ``path``, on error deleted.

    The rename is atomic on POSIX file systems, so readers see either the old file or the complete new one.
    The temporary name starts with a dot and ends in ``.tmp`` so that globbing for the real files skips it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


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
