"""Resumable training checkpoints: model, optimiser, schedule, scaler, EMA, progress and config, written atomically.

Random streams need no saving: training reseeds them from (seed, rank, epoch) at every epoch start, so a run resumed
at an epoch boundary draws exactly what the uninterrupted run drew.

The file is a plain dict of tensors, numbers, strings and lists (no pickled objects), so it loads with
``torch.load(weights_only=True)``, and :func:`rgbxseg.models.weights.read_checkpoint` reads its ``model`` (or, with
``use_ema=True``, ``state_dict_ema``) and ``metadata`` entries: a training checkpoint is also a weights file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_path
from ..models.weights import CheckpointError, read_torch_file

FORMAT = "rgbxseg-train-1"
RECORD_BYTES = 1024
"""A generous bound on what torch.save adds to each tensor's bytes (zip record, alignment, pickle); measured ~300."""
RESUME = "then continue the run with --resume"
"""How a run carries on after a failed write of one of its files (:func:`~rgbxseg.io.atomic_write_path`)."""


def checkpoint_size(state: Any) -> int:
    """About the bytes ``torch.save(state)`` writes (a little more): each distinct tensor storage once, plus records."""
    storages: dict[int, int] = {}
    pending = [state]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return sum(storages.values()) + RECORD_BYTES * (len(storages) + 1)


def save_training_checkpoint(path: Path, state: dict[str, Any], then: str = RESUME) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` via a temporary file and an atomic rename.

    The free space is checked first. A full disk during the write becomes a one-line :class:`~rgbxseg.io.WriteError`
    naming the file, not torch's "unexpected pos … vs …", ``then`` saying how to carry on; the previous checkpoint
    stays as it was.
    """
    state = {"format": FORMAT, **state}
    with atomic_write_path(path, size=checkpoint_size(state), then=then) as tmp, tmp.open("wb") as stream:
        try:
            torch.save(state, stream)  # through a Python file, so that the disk's error is an OSError we see
        except RuntimeError as err:
            # torch's zip writer hides what stopped a write (full disk, Ctrl-C) behind its own error on exit
            if isinstance(err.__context__, OSError | KeyboardInterrupt):
                raise err.__context__ from None
            raise
    return path


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    state = read_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rgbxseg training checkpoint (format {FORMAT})")
    return state
