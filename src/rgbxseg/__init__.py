"""rgbxseg: real-time multimodal (RGB-D, RGB-X) semantic segmentation."""

__version__ = "0.1.0"

from .models import AsymFormer, InputShapeError, InputSizeError, SegmentationModel, get_model_spec, list_models

__all__ = [
    "AsymFormer",
    "InputShapeError",
    "InputSizeError",
    "SegmentationModel",
    "__version__",
    "get_model_spec",
    "list_models",
]
