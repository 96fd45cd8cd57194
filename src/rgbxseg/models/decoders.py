"""SegFormer's all-MLP decoder, shared by AsymFormer and the MiT-based peer methods."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import resize


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
