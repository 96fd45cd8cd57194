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


def save_training_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` via a temporary file and an atomic rename."""
    with atomic_write_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {path} does not exist")
    state = read_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rgbxseg training checkpoint (format {FORMAT})")
    return state
