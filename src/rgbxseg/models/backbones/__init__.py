"""Backbones written once and reused by every method."""

from .convnext import CONVNEXT_CONFIGS, ConvNeXt, ConvNeXtBlock, ConvNeXtConfig
from .mit import MIT_CONFIGS, EfficientSelfAttention, MiTBlock, MiTConfig, MixTransformer, StreamLayerNorm

__all__ = [
    "CONVNEXT_CONFIGS",
    "MIT_CONFIGS",
    "ConvNeXt",
    "ConvNeXtBlock",
    "ConvNeXtConfig",
    "EfficientSelfAttention",
    "MiTBlock",
    "MiTConfig",
    "MixTransformer",
    "StreamLayerNorm",
]
