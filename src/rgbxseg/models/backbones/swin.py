"""Swin Transformer (Liu et al., 2021) as the segmentation and detection code runs it, with Microsoft's key layout.

What the dense-prediction variant does differently from the classification model, and both GeminiFusion and KTB
rely on (reproduced exactly):

* tokens are zero-padded bottom/right to a multiple of the window **after** ``norm1``; padded tokens take part in the
  window attention as keys (only the shift regions are masked, with −100), and the window is never clipped to a
  small feature map;
* the patch embedding and the patch merging zero-pad bottom/right to multiples of 4 and 2;
* every stage output gets its own LayerNorm (``norm0`` … ``norm3``), the classification ``norm`` and ``head`` are
  not used.

Built for reuse without forks: ``patch_norm_layer`` / ``out_norm_layer`` choose the norms that may be per modality
(:class:`~rgbxseg.models.backbones.mit.StreamLayerNorm`), ``block_cls`` replaces the blocks (a subclass overrides
:meth:`SwinBlock.after_attention` to fuse streams after the attention, or adds adapters), a ``context`` reaches every
block, stages run one at a time (:meth:`SwinTransformer.stage_tokens`), and :attr:`SwinTransformer.feature_info`
announces the outputs. Checkpoints: :func:`swin_from_microsoft` and :func:`swin_from_mmseg` map Microsoft's and
OpenMMLab's files onto this layout (relative-position tables interpolated when the window differs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DropPath, Mlp, drop_path_rates, init_vit_weights, pyramid_feature_info, tokens_to_map
from ..weights import rename_key

NormFactory = Callable[..., nn.Module]
StateDict = dict[str, torch.Tensor]
SHIFT_MASK_VALUE = -100.0
"""What the official code adds to attention logits between tokens of different shift regions."""


@dataclass(frozen=True)
class SwinConfig:
    """Widths, depths, heads and window of a Swin Transformer."""

    embed_dim: int
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    window_size: int = 7
    pretrain_img_size: int = 224
    mlp_ratio: int = 4
    qkv_bias: bool = True
    drop_path_rate: float = 0.2
    patch_size: int = 4
    norm_eps: float = 1e-5
    """Epsilon of the block and patch-merging LayerNorms (PyTorch's default, as in the official code)."""

    @property
    def dims(self) -> tuple[int, int, int, int]:
        return tuple(self.embed_dim * 2**i for i in range(4))  # type: ignore[return-value]


_LARGE = {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)}
_BASE = {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)}

SWIN_CONFIGS: dict[str, SwinConfig] = {
    "swin_t": SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "swin_s": SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "swin_b": SwinConfig(**_BASE),
    "swin_b_w12": SwinConfig(**_BASE, window_size=12, pretrain_img_size=384),
    "swin_l": SwinConfig(**_LARGE),
    "swin_l_w12": SwinConfig(**_LARGE, window_size=12, pretrain_img_size=384),
}


def relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) index into the bias table: ``(r_i − r_j + w − 1)·(2w − 1) + (c_i − c_j + w − 1)``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` → (B, nW, window², C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, (H // window) * (W // window), window * window, C)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B, nW, window², C) → (B, H, W, C)."""
    B, _, _, C = windows.shape
    x = windows.view(B, height // window, width // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, height, width, C)


def shift_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, window², window²) additive mask of a shifted layer on the padded (height, width) map: 0 within a shift
    region, −100 across regions (the official construction, 3×3 regions)."""
    regions = torch.zeros(1, height, width, 1, device=device)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for index, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
        regions[:, rows, cols, :] = index
    ids = window_partition(regions, window)[0, :, :, 0]
    mask = ids[:, None, :] - ids[:, :, None]
    return mask.masked_fill(mask != 0, SHIFT_MASK_VALUE).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned bias per relative position and head."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """(heads, window², window²)."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, nW, N, C) window tokens and the (nW, N, N) shift mask (or None) → (B, nW, N, C)."""
        B, nW, N, C = windows.shape
        qkv = self.qkv(windows).view(B, nW, N, 3, self.num_heads, C // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.position_bias()
        if mask is not None:
            bias = bias[None] + mask[:, None]  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias.to(qkv.dtype))
        return self.proj(out.transpose(2, 3).reshape(B, nW, N, C))


class SwinBlock(nn.Module):
    """x + DropPath(after_attention(W-MSA(LN(x)))); x + DropPath(MLP(LN(x))). Odd blocks shift by window // 2."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: int = 4,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def window_attention(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None) -> torch.Tensor:
        """LN, zero-pad to the window, shift, attend within windows, shift back, crop: (B, h·w, C) → same."""
        B, _, C = x.shape
        x = self.norm1(x).view(B, h, w, C)
        x = F.pad(x, (0, 0, 0, (-w) % self.window, 0, (-h) % self.window))
        padded_h, padded_w = x.shape[1:3]
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        x = window_reverse(self.attn(window_partition(x, self.window), mask), self.window, padded_h, padded_w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :h, :w, :].reshape(B, h * w, C)

    def after_attention(self, y: torch.Tensor, context: Any) -> torch.Tensor:
        """Where a method changes the attention output before the residual (GeminiFusion fuses its two streams)."""
        return y

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None, context: Any = None) -> torch.Tensor:
        x = x + self.drop_path(self.after_attention(self.window_attention(x, h, w, mask), context))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2×2 neighbourhoods (Microsoft's order: (0,0), (1,0), (0,1), (1,1)) → LN(4C) → Linear(4C → 2C, no bias)."""

    def __init__(self, dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        B, _, C = x.shape
        x = F.pad(x.view(B, h, w, C), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        out_h, out_w = x.shape[1:3]
        return self.reduction(self.norm(x.reshape(B, out_h * out_w, 4 * C))), out_h, out_w


class PatchEmbed(nn.Module):
    """Zero-pad bottom/right to the patch size, non-overlapping conv, flatten, norm; returns (tokens, h, w)."""

    def __init__(self, in_chans: int, dim: int, patch: int, norm: nn.Module) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = F.pad(x, (0, (-x.shape[-1]) % self.patch, 0, (-x.shape[-2]) % self.patch))
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class SwinStage(nn.Module):
    """The blocks of one stage (``blocks``) and the patch merging that follows them (``downsample``, not last)."""

    def __init__(self, blocks: nn.ModuleList, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = blocks
        self.downsample = downsample

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        """The stage's tokens before patch merging."""
        window = self.blocks[0].window
        padded = (h + (-h) % window, w + (-w) % window)
        shifted = any(block.shift for block in self.blocks)
        mask = shift_mask(*padded, window, window // 2, x.device) if shifted else None
        for block in self.blocks:
            x = block(x, h, w, mask if block.shift else None, context)
        return x


class SwinTransformer(nn.Module):
    """Swin feature extractor: four NCHW maps at strides 4, 8, 16, 32, each through its output norm.

    Args:
        config: widths, depths, heads, window (see :data:`SWIN_CONFIGS`).
        in_chans: input channels.
        patch_norm_layer / out_norm_layer: ``factory(dim, eps=...)`` for the patch-embedding norm and the four output
            norms (``nn.LayerNorm`` by default; GeminiFusion uses per-modality norms with eps 1e-6 there).
        patch_norm_eps / out_norm_eps: their epsilons.
        block_cls: the block class (subclass :class:`SwinBlock` to fuse, adapt or prompt).
    """

    def __init__(
        self,
        config: SwinConfig,
        in_chans: int = 3,
        patch_norm_layer: NormFactory = nn.LayerNorm,
        out_norm_layer: NormFactory = nn.LayerNorm,
        patch_norm_eps: float = 1e-5,
        out_norm_eps: float = 1e-5,
        block_cls: type[SwinBlock] = SwinBlock,
    ) -> None:
        super().__init__()
        self.config = config
        self.feature_info = pyramid_feature_info(config.dims)
        self.patch_embed = PatchEmbed(
            in_chans, config.embed_dim, config.patch_size, patch_norm_layer(config.embed_dim, eps=patch_norm_eps)
        )
        rates = drop_path_rates(config.drop_path_rate, config.depths)
        self.layers = nn.ModuleList()
        for i, dim in enumerate(config.dims):
            blocks = nn.ModuleList(
                block_cls(
                    dim,
                    config.num_heads[i],
                    config.window_size,
                    0 if j % 2 == 0 else config.window_size // 2,
                    config.mlp_ratio,
                    config.qkv_bias,
                    rates[i][j],
                    config.norm_eps,
                )
                for j in range(config.depths[i])
            )
            self.layers.append(SwinStage(blocks, PatchMerging(dim, config.norm_eps) if i < 3 else None))
        for i, dim in enumerate(config.dims):
            self.add_module(f"norm{i}", out_norm_layer(dim, eps=out_norm_eps))
        self.apply(init_swin_weights)

    def stage_tokens(
        self, index: int, tokens: torch.Tensor, h: int, w: int, context: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Run stage ``index``: returns (its normalised NCHW output, the merged tokens for the next stage, h, w)."""
        stage = self.layers[index]
        tokens = stage(tokens, h, w, context)
        feature = tokens_to_map(getattr(self, f"norm{index}")(tokens), h, w)
        if stage.downsample is not None:
            tokens, h, w = stage.downsample(tokens, h, w)
        return feature, tokens, h, w

    def forward(self, x: torch.Tensor, context: Any = None) -> list[torch.Tensor]:
        tokens, h, w = self.patch_embed(x)
        features = []
        for index in range(len(self.layers)):
            feature, tokens, h, w = self.stage_tokens(index, tokens, h, w, context)
            features.append(feature)
        return features


def init_swin_weights(module: nn.Module) -> None:
    """The blocks' initialisation in the official code: trunc-normal(0.02) linears with zero bias and unit LayerNorms
    (the patch-embedding conv keeps PyTorch's default); the bias tables are drawn in :class:`WindowAttention`."""
    if isinstance(module, nn.Conv2d):
        return
    init_vit_weights(module)


# --- checkpoints -------------------------------------------------------------------------------------------------

_MMSEG_RENAMES = (
    (re.compile(r"^patch_embed\.projection\."), "patch_embed.proj."),
    (re.compile(r"^stages\.(\d)\.blocks\.(\d+)\.attn\.w_msa\."), r"layers.\1.blocks.\2.attn."),
    (re.compile(r"^stages\.(\d)\.blocks\.(\d+)\.ffn\.layers\.0\.0\."), r"layers.\1.blocks.\2.mlp.fc1."),
    (re.compile(r"^stages\.(\d)\.blocks\.(\d+)\.ffn\.layers\.1\."), r"layers.\1.blocks.\2.mlp.fc2."),
    (re.compile(r"^stages\.(\d)\."), r"layers.\1."),
)
_MERGING_KEY = re.compile(r"^layers\.\d\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$")
_UNUSED_KEY = re.compile(r"(^head\.|^norm\.|relative_position_index$|attn_mask$)")
_TABLE_KEY = re.compile(r"relative_position_bias_table$")
_INDEX_KEY = re.compile(r"relative_position_index$")
_UNFOLD_TO_CONCAT = (0, 2, 1, 3)
"""Position j of the mmseg (unfold) order ↔ position k of Microsoft's concat order; its own inverse."""


def merging_mmseg_to_microsoft(weight: torch.Tensor) -> torch.Tensor:
    """Reorder a patch-merging weight's last dimension (4C) from mmseg's unfold order (index c·4 + j) to Microsoft's
    concat order (index k·C + c)."""
    channels = weight.shape[-1] // 4
    by_position = weight.unflatten(-1, (channels, 4))  # [..., c, j]
    return torch.stack([by_position[..., _UNFOLD_TO_CONCAT[k]] for k in range(4)], dim=-2).flatten(-2)


def interpolate_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """A ((2w'−1)², heads) relative-position table resized to ``window`` bicubically, as the official loaders do."""
    old = round(table.shape[0] ** 0.5)
    new = 2 * window - 1
    if old == new:
        return table
    grid = table.T.reshape(1, table.shape[1], old, old)
    return F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False).reshape(table.shape[1], -1).T


def swin_from_microsoft(state: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """Microsoft's Swin checkpoint (weights under ``model``) → this layout: the classification ``norm`` and ``head``
    and the index/mask buffers dropped, bias tables resized to ``window``."""
    out = {}
    for key, value in state.items():
        if _UNUSED_KEY.search(key):
            continue
        out[key] = interpolate_bias_table(value, window) if _TABLE_KEY.search(key) else value
    return out


def drop_position_indices(state: Mapping[str, torch.Tensor]) -> StateDict:
    """``state`` without its ``relative_position_index`` buffers (this layout computes them), each checked against the
    standard index of its window first: a released file whose index differs was not made by this architecture."""
    out = {}
    for key, value in state.items():
        if _INDEX_KEY.search(key):
            window = round(value.shape[0] ** 0.5)
            if not torch.equal(value, relative_position_index(window)):
                raise ValueError(f"{key}: not the standard window-{window} relative position index")
            continue
        out[key] = value
    return out


def swin_layout(state: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """A Microsoft or OpenMMLab Swin checkpoint (told apart by its keys) → this layout, tables resized to ``window``."""
    mmseg = any(k.startswith(("stages.", "backbone.stages.")) for k in state)
    return swin_from_mmseg(state, window) if mmseg else swin_from_microsoft(state, window)


def swin_from_mmseg(state: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """An OpenMMLab-converted Swin checkpoint (``stages.*``, ``attn.w_msa``, ``ffn.layers``, ``backbone.`` prefix
    optional) → this layout, with the patch-merging weights put back into Microsoft's gather order."""
    renamed = {}
    for old_key, value in state.items():
        key = rename_key(old_key.removeprefix("backbone."), _MMSEG_RENAMES)
        renamed[key] = merging_mmseg_to_microsoft(value) if _MERGING_KEY.match(key) else value
    return swin_from_microsoft(renamed, window)
