"""``create_model``: the one way to build a registered model, optionally with weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..weights import (
    CheckpointMismatchError,
    PathLike,
    default_metadata,
    infer_num_classes,
    load_backbone_weights,
    load_weights,
    read_checkpoint,
    read_metadata,
)
from .base import SegmentationModel
from .registry import get_model_spec, list_models


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: PathLike | None = None,
    *,
    strict: bool = True,
    use_ema: bool = False,
    backbone_weights: Mapping[str, PathLike] | None = None,
    **kwargs: Any,
) -> SegmentationModel:
    """Build the registered model ``name``.

    Args:
        num_classes: classes without void; by default taken from the weights (metadata or classifier shape), else
            the model's default (40, NYUv2).
        weights: a checkpoint to load (our safetensors, the official release, a training checkpoint); strict by
            default — see :func:`rgbxseg.weights.load_weights`.
        use_ema: load the EMA weights of a training checkpoint.
        backbone_weights: ImageNet checkpoints per branch, e.g. ``{"rgb": "convnext_tiny_1k_224_ema.pth",
            "depth": "mit_b0.pth"}``, applied before ``weights``.
        kwargs: passed to the model constructor (e.g. drop-path rates).

    The returned model is in training mode (call ``.eval()`` for inference) and carries ``weights_metadata``.
    """
    spec = get_model_spec(name)
    state = metadata = None
    if weights is not None:
        state, metadata = read_checkpoint(weights, use_ema=use_ema)
        if metadata is not None and metadata.model != name and strict:
            raise CheckpointMismatchError(
                f"{weights} holds weights of {metadata.model!r}, not {name!r}; "
                f"use rgbxseg.create_model({metadata.model!r}, weights=...)"
            )
        found = metadata.num_classes if metadata else infer_num_classes(name, state)
        if num_classes is None:
            num_classes = found
        elif found is not None and found != num_classes and strict:
            raise CheckpointMismatchError(
                f"{weights} was trained for {found} classes, but num_classes={num_classes} was requested; "
                f"leave num_classes out (or pass {found}), or pass strict=False to load everything but the classifier"
            )
    model = spec.builder(num_classes=num_classes or spec.default_num_classes, **kwargs)
    for part, path in (backbone_weights or {}).items():
        load_backbone_weights(model, path, part)
    if state is not None:
        load_weights(model, state, strict=strict)
    model.weights_metadata = metadata or default_metadata(model)
    return model


def load_model(weights: PathLike, name: str | None = None, **kwargs: Any) -> SegmentationModel:
    """The model a weights file was saved from, in eval mode: our files name it in their metadata.

    Files without metadata (the official release, plain state dicts) need the registered ``name``.
    ``kwargs`` go to :func:`create_model`.
    """
    if name is None:
        metadata = read_metadata(weights)
        if metadata is None:
            raise ValueError(
                f"{weights} does not say which model it holds (no rgbxseg metadata); name it with --model / "
                f"name=..., one of: {', '.join(list_models())}"
            )
        name = metadata.model
    return create_model(name, weights=weights, **kwargs).eval()
