"""rgbxseg: real-time multimodal (RGB-D, RGB-X) semantic segmentation.

The public API below is imported on first use (PEP 562), so that importing one part of the package — the datasets,
say, or the version — never loads the others (the models, torch's compiler, the inference pipeline).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .inference import Prediction, Segmenter
    from .inputs import ChannelNormalization, InputSpec, ModalityInput
    from .metadata import WeightsMetadata
    from .models import (
        AsymFormer,
        CheckpointError,
        CheckpointMismatchError,
        InputShapeError,
        InputSizeError,
        LoadReport,
        SegmentationModel,
        create_model,
        get_model_spec,
        list_models,
        load_backbone_weights,
        load_model,
        load_weights,
        pad_to_multiple,
        read_checkpoint,
        save_weights,
    )

_EXPORTS = {
    "rgbxseg.inference": ("Prediction", "Segmenter"),
    "rgbxseg.inputs": ("ChannelNormalization", "InputSpec", "ModalityInput"),
    "rgbxseg.metadata": ("WeightsMetadata",),
    "rgbxseg.models": (
        "AsymFormer",
        "CheckpointError",
        "CheckpointMismatchError",
        "InputShapeError",
        "InputSizeError",
        "LoadReport",
        "SegmentationModel",
        "create_model",
        "get_model_spec",
        "list_models",
        "load_backbone_weights",
        "load_model",
        "load_weights",
        "pad_to_multiple",
        "read_checkpoint",
        "save_weights",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AsymFormer",
    "ChannelNormalization",
    "CheckpointError",
    "CheckpointMismatchError",
    "InputShapeError",
    "InputSizeError",
    "InputSpec",
    "LoadReport",
    "ModalityInput",
    "Prediction",
    "SegmentationModel",
    "Segmenter",
    "WeightsMetadata",
    "__version__",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_backbone_weights",
    "load_model",
    "load_weights",
    "pad_to_multiple",
    "read_checkpoint",
    "save_weights",
]


def __getattr__(name: str) -> Any:
    """A public name, or a subpackage (``rgbxseg.data``), imported when first asked for."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})
