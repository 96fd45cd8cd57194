"""``create_model``: the one way to build a registered model, optionally with weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..metadata import WeightsMetadata
from .base import SegmentationModel
from .registry import ModelSpec, get_model_spec, list_models
from .weights import (
    CheckpointMismatchError,
    PathLike,
    StateDict,
    check_model_name,
    default_metadata,
    infer_num_classes,
    load_backbone_weights,
    load_weights,
    read_checkpoint,
)


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
        num_classes: the classifier's outputs: the classes without void, plus one for models whose output 0 scores
            void (DPLNet: 41 for NYUv2's 40 classes; ``get_model_spec(name).outputs_for(classes)``). By default taken
            from the weights (metadata or classifier shape), else the model's default (NYUv2).
        weights: a checkpoint to load (our safetensors, the official release, a training checkpoint); strict by
            default — see :func:`rgbxseg.models.weights.load_weights`.
        use_ema: load the EMA weights of a training checkpoint.
        backbone_weights: pretrained checkpoints per part, e.g. ``{"rgb": "convnext_tiny_1k_224_ema.pth",
            "depth": "mit_b0.pth"}`` (see ``rgbxseg info NAME``), applied before ``weights``.
        kwargs: passed to the model constructor (e.g. drop-path rates).

    The returned model is in training mode (call ``.eval()`` for inference), its declared frozen parts are frozen,
    and it carries ``weights_metadata`` and the ``input_spec`` of its weights.
    """
    spec = get_model_spec(name)  # an unknown name fails before any file is read
    checkpoint = read_checkpoint(weights, use_ema=use_ema) if weights is not None else None
    return _build(spec, num_classes, weights, checkpoint, strict, backbone_weights, **kwargs)


def _build(
    spec: ModelSpec,
    num_classes: int | None,
    weights: PathLike | None,
    checkpoint: tuple[StateDict, WeightsMetadata | None] | None,
    strict: bool,
    backbone_weights: Mapping[str, PathLike] | None,
    **kwargs: Any,
) -> SegmentationModel:
    """:func:`create_model` once the checkpoint (if any) has been read from ``weights``."""
    state, metadata = checkpoint if checkpoint is not None else (None, None)
    if state is not None:
        if strict:
            check_model_name(metadata, spec.name, str(weights))
        found = spec.outputs_for(metadata.num_classes) if metadata else infer_num_classes(spec.name, state)
        if num_classes is None:
            num_classes = found
        elif found is not None and found != num_classes and strict:
            raise CheckpointMismatchError(
                f"{weights} was trained for {_outputs(spec, found)}, but num_classes={num_classes} was requested; "
                f"leave num_classes out (or pass {found}), or pass strict=False to load everything but the classifier"
            )
    model = spec.builder(num_classes=num_classes or spec.default_num_classes, **kwargs)
    for part, path in (backbone_weights or {}).items():
        load_backbone_weights(model, path, part)
    if state is not None:
        load_weights(model, state, strict=strict, name=str(weights))
    if metadata is not None:
        model.use_input_spec(metadata.input_spec)
    elif state is not None and (released := model.checkpoint_input_spec(state)) is not None:
        model.use_input_spec(released)
    model.freeze_declared()
    model.weights_metadata = metadata or default_metadata(model)
    return model


def model_from_checkpoint(state: StateDict, metadata: WeightsMetadata, source: str) -> SegmentationModel:
    """The model ``metadata`` names with ``state`` loaded strictly; ``source`` names the file in errors."""
    return _build(get_model_spec(metadata.model), None, source, (state, metadata), True, None)


def _outputs(spec: ModelSpec, outputs: int) -> str:
    if spec.void_logit:
        return f"{outputs} outputs ({outputs - 1} classes + void)"
    return f"{outputs} classes"


def load_model(
    weights: PathLike,
    name: str | None = None,
    *,
    num_classes: int | None = None,
    strict: bool = True,
    use_ema: bool = False,
    backbone_weights: Mapping[str, PathLike] | None = None,
    **kwargs: Any,
) -> SegmentationModel:
    """The model a weights file was saved from, in eval mode: our files name it in their metadata.

    Files without metadata (the official release, plain state dicts) need the registered ``name``. The file is
    read once; the other arguments are those of :func:`create_model`.
    """
    checkpoint = read_checkpoint(weights, use_ema=use_ema)
    if name is None:
        metadata = checkpoint[1]
        if metadata is None:
            raise ValueError(
                f"{weights} does not say which model it holds (no rgbxseg metadata); name it with --model / "
                f"name=..., one of: {', '.join(list_models())}"
            )
        name = metadata.model
    return _build(get_model_spec(name), num_classes, weights, checkpoint, strict, backbone_weights, **kwargs).eval()
