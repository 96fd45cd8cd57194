"""The contract every segmentation model of the package follows."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .layers import InputShapeError, check_spatial_size, is_tracing, resize

if TYPE_CHECKING:
    from ..weights import WeightsMetadata

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class BackboneMapping:
    """How an ImageNet backbone checkpoint initialises part of a model.

    ``remap`` renames the checkpoint's keys to the model's (dropping what it does not use); every model key that
    ``covers`` matches must then be provided, so a truncated or wrong file cannot half-initialise a branch.
    """

    remap: Callable[[Mapping[str, torch.Tensor]], StateDict]
    covers: re.Pattern[str]
    expected_file: str


class SegmentationModel(nn.Module):
    """Base class: ``model(rgb, x)`` → logits (B, num_classes, H, W) at input resolution.

    Subclasses implement :meth:`forward_decoder` (logits at the decoder's resolution, upsampled bilinearly by
    :meth:`forward`), set ``input_multiple`` (H and W must be multiples of it), ``x_channels`` (channels of the second
    modality) and ``classifier_key`` (state-dict key of the classifier weight, used to infer the class count of a
    checkpoint), and may override :meth:`convert_checkpoint` for legacy layouts and
    :meth:`pretrained_backbone_mappings` for ImageNet initialisation.
    """

    input_multiple: int = 32
    x_channels: int = 1
    classifier_key: str = ""
    half_precision_modules: tuple[str, ...] = ()
    """Regular expressions of sub-module names that keep the argmax when run in bf16/fp16 (see
    :func:`rgbxseg.models.optimize.optimize_for_inference`)."""
    half_precision_outputs: tuple[str, ...] = ()
    """The subset of ``half_precision_modules`` whose outputs feed only other half-precision modules: they hand
    their outputs on in half precision instead of casting them back to float32 (and their consumers back again)."""
    weights_metadata: WeightsMetadata | None = None
    """Set by :func:`rgbxseg.create_model`: classes, palette and input normalisation of the loaded weights."""

    def __init__(self, model_name: str, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.model_name = model_name
        self.num_classes = num_classes

    def check_inputs(self, rgb: torch.Tensor, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` with the fix when the inputs cannot go through the network."""
        if is_tracing():
            return
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise InputShapeError(f"{self.model_name}: rgb must be (B, 3, H, W), got {tuple(rgb.shape)}")
        if x.ndim != 4 or x.shape[1] != self.x_channels:
            raise InputShapeError(
                f"{self.model_name}: the second input must be (B, {self.x_channels}, H, W), got {tuple(x.shape)}"
            )
        if rgb.shape[0] != x.shape[0] or rgb.shape[-2:] != x.shape[-2:]:
            raise InputShapeError(
                f"{self.model_name}: rgb {tuple(rgb.shape)} and second input {tuple(x.shape)} differ in batch or H×W; "
                "resize the depth/X map to the RGB image (nearest interpolation for depth) before the model."
            )
        check_spatial_size(rgb.shape[-2], rgb.shape[-1], self.input_multiple, self.model_name)

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits at the decoder's resolution (e.g. H/4 × W/4), before the final upsampling."""
        raise NotImplementedError

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.check_inputs(rgb, x)
        return resize(self.forward_decoder(rgb, x), rgb.shape[-2:])

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        """Rename/reshape keys of older released layouts to the current one (identity by default)."""
        return state

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        """ImageNet backbone checkpoints this model can start from, by part name (none by default)."""
        return {}
