"""SegFormer's all-MLP decoder, shared by AsymFormer and the MiT-based peer methods."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .folding import batchnorm_affine
from .layers import resize
from .pretrained import StateDict


class MLPProjection(nn.Module):
    """Per-level 1×1 projection to the embedding width (``proj``; older checkpoints store it as a 2-D Linear)."""

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class MLPDecoder(nn.Module):
    """Project every level to ``embed_dim``, upsample to the finest level, concat [c4, c3, c2, c1], fuse, classify.

    Output: logits at the resolution of the first (stride-4) feature map.

    Args:
        in_dims: channels of the feature maps, finest first.
        num_classes: output channels of ``linear_pred``.
        embed_dim: projection width (256 for AsymFormer and GeminiFusion NYU/SUN, 768 for DPLNet).
        dropout: Dropout2d probability before the classifier.
        fuse_bias: whether the fuse conv has a bias (AsymFormer: yes; mmcv ``ConvModule`` heads: no).
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        num_classes: int,
        embed_dim: int = 256,
        dropout: float = 0.1,
        fuse_bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_levels = len(in_dims)
        for level in reversed(range(self.num_levels)):  # registered c4 … c1, the released key order
            self.add_module(f"linear_c{level + 1}", MLPProjection(in_dims[level], embed_dim))
        self.linear_fuse = nn.Sequential(
            nn.Conv2d(self.num_levels * embed_dim, embed_dim, kernel_size=1, bias=fuse_bias),
            nn.BatchNorm2d(embed_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, kernel_size=1)

    def projection(self, level: int) -> MLPProjection:
        return getattr(self, f"linear_c{level + 1}")

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        projected = [self.projection(0)(features[0])]
        projected += [resize(self.projection(i)(features[i]), size) for i in range(1, self.num_levels)]
        x = self.linear_fuse(torch.cat(projected[::-1], dim=1))
        return self.linear_pred(self.dropout(x))

    @torch.no_grad()
    def fuse(self) -> FusedMLPDecoder:
        """The exact inference form: project each level straight to the fused width at its own resolution.

        The 1×1 projection, the 1×1 fuse conv and its BatchNorm are linear per pixel and bilinear upsampling is
        linear per channel, so they commute: ``BN(W·concat(up(P_i f_i)))`` = ``Σ up((S W_i P_i) f_i) + bias`` with
        ``W_i`` the fuse-conv block of level i and ``S`` the BN scale. The wide (4·E-channel) map at stride 4 and the
        fuse conv on it, most of the decoder's work, disappear.
        """
        scale, shift = batchnorm_affine(self.linear_fuse[1])
        fuse_conv = self.linear_fuse[0]
        embed_dim = fuse_conv.out_channels
        fuse_weight = fuse_conv.weight[:, :, 0, 0]
        bias = fuse_conv.bias.clone() if fuse_conv.bias is not None else torch.zeros_like(scale)
        levels = []
        for level in range(self.num_levels):
            block = self.num_levels - 1 - level  # concat order is c4, c3, c2, c1
            mixing = fuse_weight[:, block * embed_dim : (block + 1) * embed_dim]
            proj = self.projection(level).proj
            merged = nn.Conv2d(  # on the decoder's device and dtype (a model already on a GPU is fused there)
                proj.in_channels, embed_dim, 1, bias=level == 0, device=proj.weight.device, dtype=proj.weight.dtype
            )
            merged.weight.copy_(((scale[:, None] * mixing) @ proj.weight[:, :, 0, 0])[:, :, None, None])
            bias += mixing @ proj.bias
            levels.append(merged)
        levels[0].bias.copy_(scale * bias + shift)
        return FusedMLPDecoder(levels, self.linear_pred)


class FusedMLPDecoder(nn.Module):
    """Inference form of :class:`MLPDecoder` (see :meth:`MLPDecoder.fuse`): per-level convs summed, ReLU, classifier."""

    def __init__(self, levels: Sequence[nn.Conv2d], linear_pred: nn.Conv2d) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)
        self.linear_pred = linear_pred

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.levels[0](features[0])
        size = x.shape[-2:]
        for level, feature in zip(self.levels[1:], features[1:], strict=True):
            x = x + resize(level(feature), size)
        return self.linear_pred(torch.relu(x))


_MMCV_FUSE = re.compile(r"linear_fuse\.(conv|bn)\.")
_PROJECTION_WEIGHT = re.compile(r"linear_c\d\.proj\.weight")


def segformer_head_to_current(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The official SegFormer-head keys under ``prefix`` (mmcv ``ConvModule`` names ``linear_fuse.conv`` /
    ``linear_fuse.bn``, projections stored as 2-D Linear weights) → :class:`MLPDecoder`'s; other keys pass unchanged,
    and so does a state already in our layout."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        rest = _MMCV_FUSE.sub(lambda m: f"linear_fuse.{0 if m[1] == 'conv' else 1}.", key.removeprefix(prefix), count=1)
        as_conv = _PROJECTION_WEIGHT.fullmatch(rest) and value.ndim == 2
        out[prefix + rest] = value[:, :, None, None] if as_conv else value
    return out
