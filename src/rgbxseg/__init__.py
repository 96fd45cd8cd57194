"""rgbxseg: real-time multimodal (RGB-D, RGB-X) semantic segmentation."""

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
from .version import __version__

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
