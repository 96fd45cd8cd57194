"""rgbxseg: real-time multimodal (RGB-D, RGB-X) semantic segmentation."""

__version__ = "0.1.0"

from .inference import Prediction, Segmenter
from .models import (
    AsymFormer,
    InputShapeError,
    InputSizeError,
    SegmentationModel,
    create_model,
    get_model_spec,
    list_models,
    load_model,
    pad_to_multiple,
)
from .normalization import Normalization
from .weights import (
    CheckpointError,
    CheckpointMismatchError,
    LoadReport,
    WeightsMetadata,
    load_backbone_weights,
    load_weights,
    read_checkpoint,
    save_weights,
)

__all__ = [
    "AsymFormer",
    "CheckpointError",
    "CheckpointMismatchError",
    "InputShapeError",
    "InputSizeError",
    "LoadReport",
    "Normalization",
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
