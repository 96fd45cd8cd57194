"""Mix Transformer (SegFormer's MiT-B0..B5) with the SegFormer key layout, so ``mit_b*.pth`` files load unchanged.

Built for reuse without forks:

* every stage part has a public builder (:func:`mit_patch_embed`, :func:`mit_blocks`, :func:`mit_stage_norm`) and
  :func:`run_mit_stage` runs blocks + stage norm, so AsymFormer can interleave MiT stages with its own fusion;
* ``norm_layer`` chooses the LayerNorm at every site: :class:`StreamLayerNorm` runs one shared-weight MiT over several
  modalities stacked along the batch with per-modality norms (GeminiFusion);
* ``attention_cls`` lets a method subclass :class:`EfficientSelfAttention`, whose :meth:`~EfficientSelfAttention.attend`
  exposes the queries and the merged-head output before the projection, to add fusion or prompt branches
  (GeminiFusion, DPLNet), and ``block_cls`` replaces the whole block;
* every block passes an optional ``context`` (anything a method needs in every block, e.g. DPLNet's one shared prompt
  tensor) from :meth:`MixTransformer.forward` / :func:`run_mit_stage` through the block to its attention;
* :attr:`MixTransformer.feature_info` announces the channels and strides of the four outputs;
* :meth:`MixTransformer.freeze` freezes the pretrained weights (DPLNet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (
    DropPath,
    drop_path_rates,
    init_vit_weights,
    map_to_tokens,
    merge_heads,
    pyramid_feature_info,
    split_heads,
    tokens_to_map,
)

NormFactory = Callable[..., nn.Module]
"""Called as ``norm_layer(dim, eps=eps)``; ``nn.LayerNorm`` by default."""


@dataclass(frozen=True)
class MiTConfig:
    """Per-stage widths, heads, depths and spatial-reduction ratios of a Mix Transformer."""

    embed_dims: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    block_norm_eps: float = 1e-6
    patch_norm_eps: float = 1e-5
    sr_norm_eps: float = 1e-5


_B1_TO_B5_DIMS = (64, 128, 320, 512)
_HEADS = (1, 2, 5, 8)

MIT_CONFIGS: dict[str, MiTConfig] = {
    "mit_b0": MiTConfig(embed_dims=(32, 64, 160, 256), num_heads=_HEADS, depths=(2, 2, 2, 2)),
    "mit_b1": MiTConfig(embed_dims=_B1_TO_B5_DIMS, num_heads=_HEADS, depths=(2, 2, 2, 2)),
    "mit_b2": MiTConfig(embed_dims=_B1_TO_B5_DIMS, num_heads=_HEADS, depths=(3, 4, 6, 3)),
    "mit_b3": MiTConfig(embed_dims=_B1_TO_B5_DIMS, num_heads=_HEADS, depths=(3, 4, 18, 3)),
    "mit_b4": MiTConfig(embed_dims=_B1_TO_B5_DIMS, num_heads=_HEADS, depths=(3, 8, 27, 3)),
    "mit_b5": MiTConfig(embed_dims=_B1_TO_B5_DIMS, num_heads=_HEADS, depths=(3, 6, 40, 3)),
}


class StreamLayerNorm(nn.Module):
    """One LayerNorm per stream for inputs that stack ``num_streams`` modalities along the batch dimension.

    The linear and conv weights around it are shared by all streams; only the normalisation differs.
    Sub-modules are named ``ln_0``, ``ln_1``, … as in GeminiFusion checkpoints.
    """

    def __init__(self, dim: int, eps: float = 1e-5, num_streams: int = 2) -> None:
        super().__init__()
        self.num_streams = num_streams
        for i in range(num_streams):
            self.add_module(f"ln_{i}", nn.LayerNorm(dim, eps=eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.num_streams:
            raise ValueError(f"batch {x.shape[0]} is not {self.num_streams} equal streams stacked along dim 0")
        chunks = x.chunk(self.num_streams, dim=0)
        return torch.cat([getattr(self, f"ln_{i}")(c) for i, c in enumerate(chunks)], dim=0)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows, flattened to tokens and normalised; returns (tokens, h, w)."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        patch_size: int,
        stride: int,
        eps: float = 1e-5,
        norm_layer: NormFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride, padding=patch_size // 2)
        self.norm = norm_layer(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a map reduced ``sr_ratio``× by a strided conv."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        qkv_bias: bool = True,
        sr_norm_eps: float = 1e-5,
        norm_layer: NormFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = norm_layer(dim, eps=sr_norm_eps)

    def attend(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (queries split into heads, attention output with heads merged, before ``proj``)."""
        q = split_heads(self.q(x), self.num_heads)
        if self.sr_ratio > 1:
            x = self.norm(map_to_tokens(self.sr(tokens_to_map(x, h, w))))
        k, v = self.kv(x).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, split_heads(k, self.num_heads), split_heads(v, self.num_heads))
        return q, merge_heads(out)

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        """``context``: what the model passes to every block (unused here; subclasses read it)."""
        return self.proj(self.attend(x, h, w)[1])


class DWConv(nn.Module):
    """3×3 depthwise conv on tokens (kept as a wrapper for the ``mlp.dwconv.dwconv`` key)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return map_to_tokens(self.dwconv(tokens_to_map(x, h, w)))


class MixFFN(nn.Module):
    """Linear → 3×3 depthwise conv → exact GELU → linear: positional information without position embeddings."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))); x + DropPath(MixFFN(LN(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int,
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        sr_norm_eps: float = 1e-5,
        norm_layer: NormFactory = nn.LayerNorm,
        attention_cls: type[EfficientSelfAttention] = EfficientSelfAttention,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim, eps=norm_eps)
        self.attn = attention_cls(dim, num_heads, sr_ratio, qkv_bias, sr_norm_eps, norm_layer)
        self.norm2 = norm_layer(dim, eps=norm_eps)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w, context))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


def mit_patch_embed(
    config: MiTConfig, stage: int, in_chans: int, norm_layer: NormFactory = nn.LayerNorm
) -> OverlapPatchEmbed:
    """Stage 0: 7×7/4 patch embedding; later stages: 3×3/2."""
    patch, stride = (7, 4) if stage == 0 else (3, 2)
    return OverlapPatchEmbed(in_chans, config.embed_dims[stage], patch, stride, config.patch_norm_eps, norm_layer)


def mit_blocks(
    config: MiTConfig,
    stage: int,
    norm_layer: NormFactory = nn.LayerNorm,
    attention_cls: type[EfficientSelfAttention] = EfficientSelfAttention,
    block_cls: type[MiTBlock] = MiTBlock,
) -> nn.ModuleList:
    """The transformer blocks of one stage, with stochastic depth rising linearly over the whole encoder."""
    dim = config.embed_dims[stage]
    return nn.ModuleList(
        block_cls(
            dim,
            config.num_heads[stage],
            config.sr_ratios[stage],
            config.mlp_ratio,
            config.qkv_bias,
            rate,
            config.block_norm_eps,
            config.sr_norm_eps,
            norm_layer,
            attention_cls,
        )
        for rate in drop_path_rates(config.drop_path_rate, config.depths)[stage]
    )


def mit_stage_norm(config: MiTConfig, stage: int, norm_layer: NormFactory = nn.LayerNorm) -> nn.Module:
    return norm_layer(config.embed_dims[stage], eps=config.block_norm_eps)


def run_mit_stage(
    blocks: nn.ModuleList, norm: nn.Module, tokens: torch.Tensor, h: int, w: int, context: Any = None
) -> torch.Tensor:
    """Blocks (each given ``context``), then the stage norm; returns the NCHW map."""
    for block in blocks:
        tokens = block(tokens, h, w, context)
    return tokens_to_map(norm(tokens), h, w)


class MixTransformer(nn.Module):
    """MiT encoder: four NCHW maps at strides 4, 8, 16, 32 (keys ``patch_embed{k}``, ``block{k}``, ``norm{k}``)."""

    def __init__(
        self,
        config: MiTConfig,
        in_chans: int = 3,
        norm_layer: NormFactory = nn.LayerNorm,
        attention_cls: type[EfficientSelfAttention] = EfficientSelfAttention,
        block_cls: type[MiTBlock] = MiTBlock,
    ) -> None:
        super().__init__()
        self.config = config
        self.feature_info = pyramid_feature_info(config.embed_dims)
        for i in range(4):
            in_ch = in_chans if i == 0 else config.embed_dims[i - 1]
            self.add_module(f"patch_embed{i + 1}", mit_patch_embed(config, i, in_ch, norm_layer))
        for i in range(4):
            self.add_module(f"block{i + 1}", mit_blocks(config, i, norm_layer, attention_cls, block_cls))
            self.add_module(f"norm{i + 1}", mit_stage_norm(config, i, norm_layer))
        self.apply(init_vit_weights)

    def stage(self, i: int) -> tuple[OverlapPatchEmbed, nn.ModuleList, nn.Module]:
        """(patch embedding, blocks, stage norm) of stage ``i`` (0-based)."""
        return getattr(self, f"patch_embed{i + 1}"), getattr(self, f"block{i + 1}"), getattr(self, f"norm{i + 1}")

    def forward(self, x: torch.Tensor, context: Any = None) -> list[torch.Tensor]:
        """The four stage outputs (see :attr:`feature_info`); ``context`` reaches every block."""
        features = []
        for i in range(4):
            patch_embed, blocks, norm = self.stage(i)
            tokens, h, w = patch_embed(x)
            x = run_mit_stage(blocks, norm, tokens, h, w, context)
            features.append(x)
        return features

    def freeze(self) -> None:
        """Freeze every parameter present now; modules added later (prompts, adapters) stay trainable."""
        for p in self.parameters():
            p.requires_grad_(False)
