"""Models: backbones, fusion blocks, decoders, one module per method, and the registry."""

from . import asymformer  # noqa: F401  (registers the AsymFormer family)
from .asymformer import AsymFormer
from .base import SegmentationModel
from .factory import create_model, load_model
from .layers import InputShapeError, InputSizeError, pad_to_multiple
from .registry import MODELS, ModelSpec, PaperFacts, get_model_spec, list_models, register_model

__all__ = [
    "MODELS",
    "AsymFormer",
    "InputShapeError",
    "InputSizeError",
    "ModelSpec",
    "PaperFacts",
    "SegmentationModel",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_model",
    "pad_to_multiple",
    "register_model",
]
