"""Models: backbones, fusion blocks, decoders, one module per method, the registry and the checkpoints."""

from . import asymformer, dplnet, geminifusion, ktb  # noqa: F401  (register the model families)
from .asymformer import ASYMFORMER_NYUV2_EVAL, ASYMFORMER_RELEASE, ASYMFORMER_TRAIN, AsymFormer
from .base import ParamGroupRule, SegmentationModel
from .dplnet import DPLNet
from .factory import create_model, load_model
from .geminifusion import GeminiFusion
from .ktb import KTB, mask_modalities
from .layers import InputShapeError, InputSizeError, pad_to_multiple
from .pretrained import BackboneMapping, PretrainedSource
from .registry import (
    INPUT_SPECS,
    MODELS,
    ModelSpec,
    PaperFacts,
    get_input_spec,
    get_model_spec,
    list_models,
    register_input_spec,
    register_model,
)
from .weights import (
    CheckpointError,
    CheckpointMismatchError,
    LoadReport,
    load_backbone_weights,
    load_weights,
    read_checkpoint,
    save_weights,
)

__all__ = [
    "ASYMFORMER_NYUV2_EVAL",
    "ASYMFORMER_RELEASE",
    "ASYMFORMER_TRAIN",
    "INPUT_SPECS",
    "KTB",
    "MODELS",
    "AsymFormer",
    "BackboneMapping",
    "CheckpointError",
    "CheckpointMismatchError",
    "DPLNet",
    "GeminiFusion",
    "InputShapeError",
    "InputSizeError",
    "LoadReport",
    "ModelSpec",
    "PaperFacts",
    "ParamGroupRule",
    "PretrainedSource",
    "SegmentationModel",
    "create_model",
    "get_input_spec",
    "get_model_spec",
    "list_models",
    "load_backbone_weights",
    "load_model",
    "load_weights",
    "mask_modalities",
    "pad_to_multiple",
    "read_checkpoint",
    "register_input_spec",
    "register_model",
    "save_weights",
]
