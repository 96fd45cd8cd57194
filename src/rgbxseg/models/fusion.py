"""Cross-modal fusion blocks: AsymFormer's LAFS, CMA and SCC, the paper's Table I baselines (SE, MHSA), and
GeminiFusion's pixel-wise fusion (:class:`PixelwiseFusion`) and KTB's dynamic sparse cross-modality fusion
(:class:`SparseCrossModalFusion`).

An :class:`SCC` block fuses a depth map ``d`` (Cd channels) with an RGB map ``r`` (Cr channels) of the same size:

    x = concat([d, r]) → selection (LAFS / SE / none) → 1×1 conv + BN to Cd channels → extraction (CMA / MHSA / none)

Its output replaces the depth feature. :class:`FusionDesign` names which selection and extraction modules fill the
two slots, so the full model and its ablation variants are one class with different designs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .folding import fold_bn_after_conv, fold_bn_after_linear, fold_bn_before_linear
from .layers import (
    LayerNorm2d,
    Mlp,
    ReducedPrecisionAttention,
    init_vit_weights,
    map_to_tokens,
    split_heads,
    token_attention,
    tokens_to_map,
)


def bottleneck_mlp(channels: int, reduction: int) -> nn.Sequential:
    """Bias-free Linear(C → C/r) → ReLU → Linear(C/r → C), the excitation MLP of SE and LAFS."""
    hidden = channels // reduction
    return nn.Sequential(
        nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, channels, bias=False)
    )


class SqueezeExcite(nn.Module):
    """Channel selection: x ⊙ sigmoid(MLP(global average pool of x))."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc_channel = bottleneck_mlp(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc_channel(x.mean((2, 3))))[:, :, None, None]


class LAFS(nn.Module):
    """Local Attention-guided Feature Selection (AsymFormer §III-B): a spatial and a channel gate from one pool.

    out = sigmoid(Σ_c x ⊙ s / C²) ⊙ x ⊙ sigmoid(MLP_c(g)), with g the global average pool and s = MLP_s(g).
    The C² divisor follows the released code (it keeps the spatial gate close to 0.5). The channel sum is taken in
    float32: 1/C² is sub-normal in fp16.
    """

    def __init__(self, channels: int, spatial_reduction: int = 16, channel_reduction: int = 8) -> None:
        super().__init__()
        self.fc_spatial = bottleneck_mlp(channels, spatial_reduction)
        self.fc_channel = bottleneck_mlp(channels, channel_reduction)
        self.inv_c2 = 1.0 / (channels * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean((2, 3))
        spatial_weights = self.fc_spatial(pooled)[:, :, None, None]
        channel_gate = torch.sigmoid(self.fc_channel(pooled))[:, :, None, None]
        logit = (x * spatial_weights).sum(1, keepdim=True, dtype=torch.float32) * self.inv_c2
        return torch.sigmoid(logit).to(x.dtype) * x * channel_gate


class CrossModalAttention(ReducedPrecisionAttention):
    """Cross-Modal Attention (CMA), the released ``Cross_Atten_Lite_split``: two full N×N attention maps.

    Queries and keys come from the batch-normalised raw depth and RGB features, values from the fused feature;
    an interleaving channel shuffle makes every query/key half depth- and half RGB-derived. The two maps are computed
    as two "heads" of one scaled-dot-product attention call (scale (Cr/4)^-0.5, as released). Requires Cr ≥ Cd
    (true of every AsymFormer stage: the RGB branch is the wider one).
    """

    def __init__(self, depth_channels: int, rgb_channels: int, attn_drop: float = 0.2) -> None:
        super().__init__()
        if rgb_channels < depth_channels:
            raise ValueError(f"CMA expects the RGB feature to be the wider: Cd={depth_channels} > Cr={rgb_channels}")
        self.value_dim = depth_channels // 4
        self.key_dim = rgb_channels // 4
        self.attn_drop = attn_drop
        self.bn_x1 = nn.BatchNorm2d(depth_channels)
        self.bn_x2 = nn.BatchNorm2d(rgb_channels)
        self.kq1 = nn.Linear(depth_channels, 2 * self.key_dim)
        self.kq2 = nn.Linear(rgb_channels, 2 * self.key_dim)
        self.v_conv = nn.Linear(depth_channels, 2 * self.value_dim)
        self.out_conv = nn.Linear(2 * self.value_dim, depth_channels)
        self.bn_last = nn.BatchNorm2d(depth_channels)

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        h, w = fused.shape[-2:]
        p = self.kq1(map_to_tokens(self.bn_x1(depth)))
        q = self.kq2(map_to_tokens(self.bn_x2(rgb)))
        # Interleave: z[2j] = p[j], z[2j+1] = q[j]; then chunks k1, q1, k2, q2.
        k1, q1, k2, q2 = torch.stack((p, q), dim=-1).flatten(2).chunk(4, dim=-1)
        queries = torch.stack((q1, q2), dim=1)
        keys = torch.stack((k1, k2), dim=1)
        values = self.v_conv(map_to_tokens(fused)).unflatten(-1, (2, self.value_dim)).transpose(1, 2)
        out = token_attention(
            queries,
            keys,
            values,
            scale=self.key_dim**-0.5,
            dropout_p=self.attn_drop if self.training else 0.0,
            compute_dtype=self.attention_compute_dtype(),
        )
        out = self.out_conv(out.transpose(1, 2).flatten(2))
        return self.bn_last(tokens_to_map(out, h, w)) + fused

    def fuse(self) -> CrossModalAttention:
        """Inference form: the input BatchNorms folded into ``kq1``/``kq2``, ``bn_last`` into ``out_conv``."""
        self.kq1, self.bn_x1 = fold_bn_before_linear(self.bn_x1, self.kq1), nn.Identity()
        self.kq2, self.bn_x2 = fold_bn_before_linear(self.bn_x2, self.kq2), nn.Identity()
        self.out_conv, self.bn_last = fold_bn_after_linear(self.out_conv, self.bn_last), nn.Identity()
        return self


class TokenSelfAttention(ReducedPrecisionAttention):
    """Standard multi-head self-attention over all tokens of the fused map, with a residual (Table I "MHSA-H2")."""

    def __init__(self, channels: int, num_heads: int = 2, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        """Signature of an SCC extraction slot; only the fused map is attended."""
        h, w = fused.shape[-2:]
        tokens = map_to_tokens(fused)
        q, k, v = (split_heads(layer(tokens), self.num_heads) for layer in (self.q, self.k, self.v))
        dropout = self.attn_drop if self.training else 0.0
        out = token_attention(q, k, v, dropout_p=dropout, compute_dtype=self.attention_compute_dtype())
        out = out.transpose(1, 2).flatten(2)
        return fused + tokens_to_map(self.proj(out), h, w)


SelectionFactory = Callable[[int], nn.Module]
"""Called with the concatenated channel count C = Cd + Cr; maps (B, C, h, w) → (B, C, h, w)."""
ExtractionFactory = Callable[[int, int, float], nn.Module]
"""Called with (Cd, Cr, attention dropout); the module maps (depth, rgb, fused) → fused."""


@dataclass(frozen=True)
class FusionDesign:
    """Which modules fill the selection and extraction slots of an :class:`SCC` block (``None`` = empty slot)."""

    selection: SelectionFactory | None
    extraction: ExtractionFactory | None


def _se_reduction_8(channels: int) -> nn.Module:
    return SqueezeExcite(channels, reduction=8)


def _mhsa_two_heads(depth_channels: int, rgb_channels: int, attn_drop: float) -> nn.Module:
    return TokenSelfAttention(depth_channels, num_heads=2, attn_drop=attn_drop)


LAFS_CMA = FusionDesign(selection=LAFS, extraction=CrossModalAttention)
"""The released AsymFormer SCC."""
CONCAT = FusionDesign(selection=None, extraction=None)
"""Table I "Cat": concatenate and project with a 1×1 conv + BN."""
SE_MHSA = FusionDesign(selection=_se_reduction_8, extraction=_mhsa_two_heads)
"""Table I "SE+MHSA-H2" (SE reduction 8, bias-free, as LAFS's channel branch: the reading that gives 32.6 M)."""
LAFS_ONLY = FusionDesign(selection=LAFS, extraction=None)
CMA_ONLY = FusionDesign(selection=None, extraction=CrossModalAttention)


class SCC(nn.Module):
    """Selection → 1×1 conv (no bias) + BN → extraction.

    Slot names are the released keys: ``fus_atten`` (selection), ``conv_bn``, ``cross_atten`` (extraction).
    """

    def __init__(
        self, depth_channels: int, rgb_channels: int, design: FusionDesign = LAFS_CMA, attn_drop: float = 0.2
    ) -> None:
        super().__init__()
        channels = depth_channels + rgb_channels
        self.fus_atten = design.selection(channels) if design.selection else None
        self.conv_bn = nn.Sequential(
            nn.Conv2d(channels, depth_channels, kernel_size=1, bias=False), nn.BatchNorm2d(depth_channels)
        )
        self.cross_atten = design.extraction(depth_channels, rgb_channels, attn_drop) if design.extraction else None

    def forward(self, depth: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        x = torch.cat((depth, rgb), dim=1)  # depth first, as released
        if self.fus_atten is not None:
            x = self.fus_atten(x)
        x = self.conv_bn(x)
        if self.cross_atten is not None:
            x = self.cross_atten(depth, rgb, x)
        return x

    def fuse(self) -> SCC:
        """Inference form: the 1×1 conv and its BatchNorm as one convolution."""
        self.conv_bn = fold_bn_after_conv(self.conv_bn[0], self.conv_bn[1])
        return self


# --- GeminiFusion ------------------------------------------------------------------------------------------------


class TwoSlotAttention(nn.Module):
    """Multi-head attention of one query per pixel over two key/value slots of that pixel.

    The parameters are ``nn.MultiheadAttention``'s (``in_proj_weight`` packing q/k/v, ``in_proj_bias``,
    ``out_proj``), so GeminiFusion checkpoints load as they are; the computation is the same as calling that module
    with the pixels as its batch (per head: q·k of the two slots scaled by head_dim^-½, softmax over the two, weighted
    values), written out so that it runs vectorised over batch and pixels and exports to ONNX.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's own initialisation

    def forward(
        self, query: torch.Tensor, keys: tuple[torch.Tensor, torch.Tensor], values: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """``query`` and each slot (B, N, C) → (B, N, C)."""
        B, N, C = query.shape
        heads, head_dim = self.num_heads, C // self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = (F.linear(query, w_q, b_q) * head_dim**-0.5).reshape(B, N, heads, 1, head_dim)
        k = F.linear(torch.stack(keys, dim=2), w_k, b_k).reshape(B, N, 2, heads, head_dim).transpose(2, 3)
        v = F.linear(torch.stack(values, dim=2), w_v, b_v).reshape(B, N, 2, heads, head_dim).transpose(2, 3)
        weights = (q @ k.transpose(-1, -2)).softmax(dim=-1)  # (B, N, heads, 1, 2 slots)
        return self.out_proj((weights @ v).reshape(B, N, C))


class PixelwiseFusion(nn.Module):
    """GeminiFusion (Jia et al., ICML 2024): each modality's tokens attend, pixel by pixel, to two slots built from the
    same pixel: an "intra" slot (itself plus a learned per-layer noise) and an "inter" slot (key: itself weighted by
    a relation score of the pair; value: the other modality). Residual inside: ``z = y + attention``.

    Direction RGB ← X uses ``cross_attn_0_to_1`` and noise row 0, X ← RGB ``cross_attn_1_to_0`` and row 1; the
    relation judger (MLP 2C → C → C, softmax over channels) is shared, its input order swapped.
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        self.cross_attn_0_to_1 = TwoSlotAttention(dim, num_heads)
        self.cross_attn_1_to_0 = TwoSlotAttention(dim, num_heads)
        self.relation_judger = nn.Sequential(Mlp(2 * dim, dim, dim), nn.Softmax(dim=-1))
        self.k_noise = nn.Embedding(2, dim)
        self.v_noise = nn.Embedding(2, dim)
        self.apply(init_vit_weights)  # trunc-normal linears as in the official code; in_proj and noise keep theirs

    def _direction(self, row: int, attention: TwoSlotAttention, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        relation = self.relation_judger(torch.cat([own, other], dim=-1))
        keys = (own + self.k_noise.weight[row], own * relation)
        values = (own + self.v_noise.weight[row], other)
        return own + attention(own, keys, values)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two streams' tokens (B, N, C) → fused tokens, in the same order."""
        return (
            self._direction(0, self.cross_attn_0_to_1, rgb, x),
            self._direction(1, self.cross_attn_1_to_0, x, rgb),
        )


# --- KTB ---------------------------------------------------------------------------------------------------------

DSCF_TABLE_SIZE = (119, 159)
"""Rows × columns of each head's relative-position table: (2·60 − 1) × (2·80 − 1), from the released default query
size 60 × 80, at every stage and input size (looked up in normalised coordinates, so free of the resolution)."""


DSCF_QUERY_CHUNK = 4096
"""Queries per block of DSCF's dense-to-sparse attention (bounds its memory on large frames)."""


def conv_fan_out_init(module: nn.Module) -> None:
    """KTB's model-wide initialisation: trunc-normal(0.02) linears, N(0, 2/(k²·out)) convs (the released code does not
    divide by the groups, so depthwise convs start wider than He), unit norms, zero biases."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    else:
        init_vit_weights(module)


class ConvBatchNormGELU(nn.Sequential):
    """k×k conv → BatchNorm → GELU (KTB's fused query; the released ``conv_bn_relu`` uses GELU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.BatchNorm2d(out_channels), nn.GELU()
        )

    def fuse(self) -> nn.Sequential:
        """The inference form: the BatchNorm folded into the conv."""
        return nn.Sequential(fold_bn_after_conv(self[0], self[1]), self[2])


class OffsetNetwork(nn.Module):
    """DAT's offset predictor over one channel group: depthwise k×k conv (stride s, padding k//2) → channel
    LayerNorm → GELU → 1×1 conv to two channels, (dy, dx) in normalised coordinates (channel 0 is vertical)."""

    def __init__(self, channels: int, stride: int, kernel: int = 9) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels)
        self.norm = LayerNorm2d(channels)
        self.act = nn.GELU()
        self.pointwise = nn.Conv2d(channels, 2, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.act(self.norm(self.depthwise(x))))


def dat_reference_points(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(rows, cols, 2) DAT reference grid in (y, x): ((i + ½)/(rows − 1), (j + ½)/(cols − 1))·2 − 1. Shifted by
    +1/(n − 1) against a centred grid (a DAT quirk the released weights were trained with, kept)."""
    y = (torch.arange(rows, dtype=dtype, device=device) + 0.5) / (rows - 1.0) * 2.0 - 1.0
    x = (torch.arange(cols, dtype=dtype, device=device) + 0.5) / (cols - 1.0) * 2.0 - 1.0
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1)


def corner_grid(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(rows·cols, 2) query positions in (y, x), exactly [−1, 1] corner to corner, row-major."""
    y = torch.arange(rows, dtype=dtype, device=device) / (rows - 1.0) * 2.0 - 1.0
    x = torch.arange(cols, dtype=dtype, device=device) / (cols - 1.0) * 2.0 - 1.0
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(rows * cols, 2)


class SparseCrossModalAttention(nn.Module):
    """The core of KTB's DSCF: every position of a fused query attends to a sparse set of 2n keys sampled from both
    modalities at points that each modality's own offset network chooses.

    For R, T (B, d, h, w): Q₀ = GELU(BN(conv3×3([R ‖ T]))), Q = proj_q(Q₀). Per channel group, offsets Δ_m =
    φ_m(·) on a ⌈h/s⌉ × ⌈w/s⌉ grid give points p_m = clamp(ref + Δ_m, −1, 1); R, T and Q are sampled bilinearly at
    p_rgb then p_x (2n keys, align_corners=True, zero padding). A gate (1×1 → ReLU → 1×1 → softmax over 2) of the
    sampled Q weighs the sampled R against T per key; multi-head attention from all h·w queries to those keys adds a
    bias looked up bilinearly in a per-head table at ½(q − p). Out = α ⊙ proj_out(O) + β ⊙ Q₀.
    Heads follow groups: head k reads the keys of group ⌊k / (heads / groups)⌋.
    """

    def __init__(self, dim: int, stride: int, groups: int, heads: int, alpha: float) -> None:
        super().__init__()
        if dim % heads or dim % groups or heads % groups:
            raise ValueError(f"DSCF width {dim} must split into {groups} groups and {heads} heads (heads per group)")
        self.groups = groups
        self.heads = heads
        group_channels = dim // groups
        self.offset_rgb = OffsetNetwork(group_channels, stride)
        self.offset_x = OffsetNetwork(group_channels, stride)
        self.query = ConvBatchNormGELU(2 * dim, dim, 3)
        self.proj_q = nn.Conv2d(dim, dim, 1)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU(), nn.Conv2d(dim, 2, 1))
        self.proj_k = nn.Conv2d(dim, dim, 1)
        self.proj_v = nn.Conv2d(dim, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.apply(conv_fan_out_init)
        self.alpha = nn.Parameter(torch.full((dim,), alpha))
        self.beta = nn.Parameter(torch.ones(dim))
        self.rel_pos_table = nn.Parameter(torch.empty(heads, *DSCF_TABLE_SIZE))
        nn.init.trunc_normal_(self.rel_pos_table, std=0.01, a=-2.0, b=2.0)

    def sample_points(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B·G, 2n, 2) sampling points in (y, x): the n RGB-chosen ones, then the n X-chosen ones (row-major)."""
        B, d, h, w = rgb.shape
        points = []
        for offsets, stream in ((self.offset_rgb, rgb), (self.offset_x, x)):
            delta = offsets(stream.reshape(B * self.groups, d // self.groups, h, w)).permute(0, 2, 3, 1)
            reference = dat_reference_points(delta.shape[1], delta.shape[2], delta.dtype, delta.device)
            points.append((delta + reference).clamp(-1.0, 1.0).flatten(1, 2))
        return torch.cat(points, dim=1)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, d, h, w = rgb.shape
        groups, heads = self.groups, self.heads
        query_map = self.query(torch.cat([rgb, x], dim=1))
        q = self.proj_q(query_map)
        points = self.sample_points(rgb, x)  # (B·G, 2n, 2), (y, x)
        keys = points.shape[1]
        stacked = torch.cat([m.reshape(B * groups, d // groups, h, w) for m in (rgb, x, q)], dim=1)
        sampled = F.grid_sample(stacked, points.flip(-1)[:, None], mode="bilinear", align_corners=True)
        sampled = sampled.reshape(B, groups, 3, d // groups, keys)
        sampled_rgb, sampled_x, sampled_q = (sampled[:, :, i].reshape(B, d, 1, keys) for i in range(3))
        weights = self.gate(sampled_q).softmax(dim=1)  # (B, 2, 1, 2n): per key, RGB vs X
        kv = weights[:, :1] * sampled_rgb + weights[:, 1:] * sampled_x
        head_dim = d // heads
        k = self.proj_k(kv).reshape(B * heads, head_dim, keys).transpose(1, 2)
        v = self.proj_v(kv).reshape(B * heads, head_dim, keys).transpose(1, 2)
        queries = q.reshape(B * heads, head_dim, h * w).transpose(1, 2)
        positions = corner_grid(h, w, q.dtype, q.device)
        table = self.rel_pos_table[None].expand(B, -1, -1, -1).reshape(B * groups, heads // groups, *DSCF_TABLE_SIZE)
        chunks = []
        for start in range(0, h * w, DSCF_QUERY_CHUNK):
            # the bias and attention of a block of queries at a time: every query's softmax is its own, so the result
            # is the same, and the memory grows with h·w instead of h·w × the keys (which grow with h·w too)
            displacement = 0.5 * (positions[None, start : start + DSCF_QUERY_CHUNK, None] - points[:, None])
            bias = F.grid_sample(table, displacement.flip(-1), mode="bilinear", align_corners=True)
            chunk = queries[:, start : start + DSCF_QUERY_CHUNK]
            mask = bias.reshape(B * heads, chunk.shape[1], keys)
            chunks.append(F.scaled_dot_product_attention(chunk, k, v, attn_mask=mask))
        out = torch.cat(chunks, dim=1) if len(chunks) > 1 else chunks[0]
        out = self.proj_out(out.transpose(1, 2).reshape(B, d, h, w))
        return self.alpha[:, None, None] * out + self.beta[:, None, None] * query_map


class SparseCrossModalFusion(nn.Module):
    """KTB's DSCF at one stage: both normalised stage outputs (B, h·w, C) projected to d = C/8, fused by
    :class:`SparseCrossModalAttention`, projected back to C (no residual from either stream)."""

    def __init__(self, dim: int, rank: int, stride: int, groups: int, heads: int, alpha: float) -> None:
        super().__init__()
        self.down_rgb = nn.Linear(dim, rank)
        self.down_x = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        self.apply(init_vit_weights)
        for down in (self.down_rgb, self.down_x):
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
        self.attention = SparseCrossModalAttention(rank, stride, groups, heads, alpha)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        fused = self.attention(tokens_to_map(self.down_rgb(rgb), h, w), tokens_to_map(self.down_x(x), h, w))
        return self.up(map_to_tokens(fused))
