"""KTB, "Keep the Balance" (Cai et al., CVPR 2025): one frozen ImageNet-22K Swin adapted to RGB and to X at once.

* Both modalities run through the **same frozen Swin** in two calls (RGB, then X); only the X patch embedding is
  separate (trainable, initialised as a copy of the RGB one).
* **MAPA prompting** (:class:`ModalityPrompt`) at each stage entry: a linear low-rank unification U of both streams'
  tokens, added to each stream as U + γ_m ⊙ U + β_m.
* **MAPA adaptation**: beside every frozen FFN, the current stream's bottleneck adapter reads the post-attention
  tokens; its output, scaled by a fixed ½, is added after the FFN (:class:`KTBSwinBlock`).
* **DSCF** (:class:`~rgbxseg.models.fusion.SparseCrossModalFusion`) fuses the two normalised stage outputs for the
  fused head only; the streams never see it.
* Three SegFormer heads: fused (embed 512) on the DSCF maps, and RGB-only and X-only (embed 256), which train with
  **masked modality self-teaching** (:meth:`KTB.loss`): while training, one sample's RGB tokens and another's X tokens
  are zeroed, and the single-modality heads learn the labels only where the fused head is already right.

The model contract: ``forward_outputs`` → ``{"fused", "rgb", "x"}`` at ¼; ``forward`` / ``forward_decoder`` (the
inference path of predict, eval and export) run the fused head alone, which saves the two single-modality heads
(≈ 12.8 GMACs at 480×640 for Swin-B) and gives the same fused logits. The Swin weights are frozen but, as in the
released training, not put in eval mode: drop path (0 → 0.3) stays active in the frozen blocks
(``frozen_train_mode = "train"``).

Equal to the released code (the copy vendored in ``yunduo-vision/IR-ADS``): mmseg's corner padding, window padding
after ``norm1`` with shift kept on maps smaller than the window, the DAT reference grid, ``align_corners`` per resize,
and the heads' [c4, c3, c2, c1] concatenation. Its checkpoints load through :func:`released_to_current` (mmseg names
and patch-merging order to ours).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..inputs import IMAGENET_RGB, ChannelNormalization, InputSpec, ModalityInput
from .backbones.swin import (
    SWIN_CONFIGS,
    PatchEmbed,
    SwinBlock,
    SwinTransformer,
    drop_position_indices,
    swin_from_mmseg,
    swin_layout,
)
from .base import SegmentationModel
from .decoders import MLPDecoder, segformer_head_to_current
from .fusion import SparseCrossModalFusion, conv_fan_out_init
from .layers import resize, tokens_to_map
from .losses import VOID, cross_entropy
from .pretrained import BackboneMapping, PretrainedSource, StateDict
from .registry import PaperFacts, register_input_spec, register_model
from .weights import rename_key

PROMPT_RATIO = 0.125
"""MAPA's rank r = C/8."""
ADAPTER_RATIO = 0.0625
"""Adapter hidden width C/16."""
ADAPTER_SCALE = 0.5
"""The fixed (not learned) scale of the adapter branch."""
ADAPTER_DROPOUT = 0.1
DSCF_RATIO = 0.125
"""DSCF works at width d = C/8."""
DSCF_STRIDES = (8, 4, 2, 1)
DSCF_GROUPS = (1, 2, 4, 8)
DSCF_HEADS = (2, 4, 8, 16)
DSCF_ALPHA = (1e-3, 1e-3, 1e-3, 1.0)
"""Per stage: offset-network stride, channel groups, heads and the initial α; every DSCF grid is ⌈H/32⌉ × ⌈W/32⌉."""
FUSED_HEAD_EMBED = 512
SINGLE_HEAD_EMBED = 256
TEACHING_WEIGHT = 0.01
"""Weight of each single-modality head's self-teaching cross-entropy."""
DROP_PATH = 0.3
MIN_SIZE = 33
"""Below 33 pixels a DSCF grid is 1×1 and its coordinates divide by zero (the released code returns NaN)."""
RELEASED_WINDOW = 12
"""The Swin window of every released KTB model (Swin-B and Swin-L, 384 px)."""
MIN_TRAIN_BATCH = 2
"""Masked modality self-teaching zeroes one sample's RGB and a different sample's X: a batch needs two samples."""

_X_UNIT = ChannelNormalization(255.0, (0.0,), (1.0,))
"""KTB's X input: 8-bit values / 255, no mean or std (every loader of the release)."""

KTB_NYUV2 = register_input_spec(
    InputSpec(
        "ktb_nyuv2",
        IMAGENET_RGB,
        ModalityInput("hha", "hha", 3, _X_UNIT),
        min_size=MIN_SIZE,
        description="ImageNet RGB; HHA / 255 (no mean or std), as the released NYUDv2 loader feeds it",
    )
)


def _with_x(name: str, x: ModalityInput, description: str) -> InputSpec:
    """KTB's input with another X modality, registered under ``name``."""
    return register_input_spec(replace(KTB_NYUV2, name=name, x=x, description=description))


KTB_THERMAL = _with_x(
    "ktb_thermal",
    ModalityInput("thermal", "thermal_8bit", 3, _X_UNIT),
    "ImageNet RGB; the 8-bit thermal image / 255 tiled to 3 channels (MFNet, PST900)",
)
KTB_SUNRGBD = _with_x(
    "ktb_sunrgbd",
    ModalityInput("depth_minmax", "minmax_8bit", 3, _X_UNIT),
    "ImageNet RGB; the 8-bit depth image / 255 tiled to 3 channels (the release reads SUN RGB-D depth with OpenCV as "
    "8-bit colour)",
)
"""SUN RGB-D: the release reads each depth PNG with OpenCV as an 8-bit 3-channel image. The 8-bit depth of the
packaged SUN RGB-D sets is per-image min-max (rgbxseg's ``depth_minmax``), an assumption, not a documented fact."""
KTB_EVENT = _with_x(
    "ktb_event", ModalityInput("event", "event_8bit", 3, _X_UNIT), "ImageNet RGB; the 8-bit event image / 255 (DeLiVER)"
)
KTB_DEPTH_MM = _with_x(
    "ktb_depth_mm",
    ModalityInput("depth", "metric_mm", 3, ChannelNormalization(10000.0, (0.0,), (1.0,))),
    "ImageNet RGB; metric depth, 0–10 m to 0–1, tiled to 3 channels",
)
"""For datasets with metric depth and no HHA (the synthetic scenes): 0–10 m onto KTB's 0–1 X range. Not a released
setting; NYUv2 with ``rgbxseg prepare nyuv2 --hha`` feeds :data:`KTB_NYUV2`."""


def mask_modalities(
    rgb: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the whole RGB input of one sample and the whole X input of another (tokens or images, batch first).

    The pair (i, j), i ≠ j, is drawn uniformly: the released masking for every batch of 4 or more (which draws B//2
    distinct samples and uses the first two), and the same rule for 2 or 3. Never both modalities of one sample.
    """
    batch = rgb.shape[0]
    if batch < MIN_TRAIN_BATCH:
        raise ValueError(
            f"masked modality self-teaching masks RGB in one sample and X in another, so it needs a batch of at least "
            f"{MIN_TRAIN_BATCH} samples; got {batch}. Train with data.batch_size ≥ {MIN_TRAIN_BATCH} (the paper: 4), "
            "or build the model with modality_masking=False"
        )
    chosen = torch.randperm(batch, generator=generator, device="cpu")[:2]
    shape = (batch,) + (1,) * (rgb.ndim - 1)
    keep_rgb = torch.ones(shape, dtype=rgb.dtype, device=rgb.device).index_fill(0, chosen[:1].to(rgb.device), 0.0)
    keep_x = torch.ones(shape, dtype=x.dtype, device=x.device).index_fill(0, chosen[1:].to(x.device), 0.0)
    return rgb * keep_rgb, x * keep_x


class BottleneckAdapter(nn.Module):
    """Linear C → C/16 → ReLU → dropout 0.1 → Linear → C, starting as an exact zero (up-projection zero)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(ADAPTER_DROPOUT)
        self.up = nn.Linear(hidden, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform down, zeros elsewhere (again after the backbone's model-wide initialisation, as the
        released training script re-applies it)."""
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        for tensor in (self.down.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(x))))


class KTBSwinBlock(SwinBlock):
    """A frozen Swin block with one adapter per stream beside its FFN: the block's ``context`` names the stream
    (``"rgb"`` or ``"x"``). out = h + DropPath(FFN(LN₂(h))) + ½·Adapter_m(h), h = x + DropPath(W-MSA(LN₁(x)))."""

    checkpointing = False
    """Recompute the block in the backward pass (memory only: PyTorch restores the RNG, so drop path is the same)."""

    def __init__(self, dim: int, *args: Any) -> None:
        super().__init__(dim, *args)
        hidden = int(dim * ADAPTER_RATIO)
        self.adapter_rgb = BottleneckAdapter(dim, hidden)
        self.adapter_x = BottleneckAdapter(dim, hidden)

    def _forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None, stream: str) -> torch.Tensor:
        x = x + self.drop_path(self.window_attention(x, h, w, mask))
        adapted = ADAPTER_SCALE * getattr(self, f"adapter_{stream}")(x)
        return x + self.drop_path(self.mlp(self.norm2(x))) + adapted

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor | None, context: Any = None) -> torch.Tensor:
        if self.checkpointing and x.requires_grad and torch.is_grad_enabled():
            return checkpoint(self._forward, x, h, w, mask, context, use_reentrant=False)
        return self._forward(x, h, w, mask, context)


class ModalityPrompt(nn.Module):
    """MAPA prompting at a stage entry: U = W_up·W_p·[W_rgb·X_rgb ‖ W_x·X_x] (linear, no activation), and for each
    stream m the prompt U + γ_m ⊙ U + β_m, so each stream receives information from both."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down_rgb = nn.Linear(dim, rank)
        self.down_x = nn.Linear(dim, rank)
        self.unify = nn.Linear(2 * rank, rank)
        self.up = nn.Linear(rank, dim)
        for layer in (self.unify, self.up, self.down_rgb, self.down_x):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
        for down in (self.down_rgb, self.down_x):
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
        self.gamma_rgb = nn.Parameter(torch.normal(1.0, 0.02, (dim,)))
        self.beta_rgb = nn.Parameter(torch.normal(0.0, 0.02, (dim,)))
        self.gamma_x = nn.Parameter(torch.normal(1.0, 0.02, (dim,)))
        self.beta_x = nn.Parameter(torch.normal(0.0, 0.02, (dim,)))

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unified = self.up(self.unify(torch.cat([self.down_rgb(rgb), self.down_x(x)], dim=-1)))
        return (
            unified + (unified * self.gamma_rgb + self.beta_rgb),
            unified + (unified * self.gamma_x + self.beta_x),
        )


def _frozen_swin() -> tuple[str, ...]:
    """The pretrained Swin (patch embedding, blocks without their adapters, patch merging) and the twelve output
    LayerNorms (identity in the release: no checkpoint fills them)."""
    return (
        r"backbone\.patch_embed",
        r"backbone\.layers\.\d\.blocks\.\d+\.(norm1|attn|norm2|mlp)",
        r"backbone\.layers\.\d\.downsample",
        r"backbone\.norm\d",
        r"out_norm_x",
        r"out_norm_fuse",
    )


class KTB(SegmentationModel):
    """``model(rgb, x)`` → fused logits (B, K, H, W); ``forward_outputs`` → ``{"fused", "rgb", "x"}`` at ¼.

    Args:
        num_classes: classes without void.
        backbone: ``swin_b_w12`` (the paper's Swin-B, 384 px, window 12), ``swin_l_w12`` or ``swin_t``.
        drop_path: stochastic depth over the frozen blocks, linear from 0 (active while training).
        modality_masking: masked modality self-teaching's masking while training (needs batches of 2 or more).
        checkpointing: recompute the blocks in the backward pass (the release does for Swin-L).
        model_name: the registered name.
    """

    classifier_key = "decode_head.linear_pred.weight"
    outputs = ("fused", "rgb", "x")
    prediction_output = "fused"
    loss_terms = ("fused", "rgb", "x")
    frozen = _frozen_swin()
    frozen_train_mode = "train"

    def __init__(
        self,
        num_classes: int = 40,
        backbone: str = "swin_b_w12",
        drop_path: float = DROP_PATH,
        modality_masking: bool = True,
        checkpointing: bool = False,
        model_name: str = "ktb_swin_b",
    ) -> None:
        super().__init__(model_name, num_classes)
        self.backbone_name = backbone
        self.input_spec = KTB_NYUV2
        self.modality_masking = modality_masking
        self.min_train_batch = MIN_TRAIN_BATCH if modality_masking else 1
        config = replace(SWIN_CONFIGS[backbone], drop_path_rate=drop_path)
        self.backbone = SwinTransformer(config, block_cls=KTBSwinBlock)
        for block in self.backbone.modules():
            if isinstance(block, KTBSwinBlock):
                block.checkpointing = checkpointing
                block.adapter_rgb.reset_parameters()
                block.adapter_x.reset_parameters()
        dims = config.dims
        self.patch_embed_x = PatchEmbed(3, config.embed_dim, config.patch_size, nn.LayerNorm(config.embed_dim))
        self.patch_embed_x.load_state_dict(self.backbone.patch_embed.state_dict())
        self.out_norm_x = nn.ModuleList(nn.LayerNorm(dim) for dim in dims)
        self.out_norm_fuse = nn.ModuleList(nn.LayerNorm(dim) for dim in dims)
        self.mapa = nn.ModuleList(ModalityPrompt(dim, int(dim * PROMPT_RATIO)) for dim in dims)
        self.dscf = nn.ModuleList(
            SparseCrossModalFusion(dim, int(dim * DSCF_RATIO), *settings)
            for dim, *settings in zip(dims, DSCF_STRIDES, DSCF_GROUPS, DSCF_HEADS, DSCF_ALPHA, strict=True)
        )
        self.decode_head = MLPDecoder(dims, num_classes, embed_dim=FUSED_HEAD_EMBED, dropout=0.1, fuse_bias=False)
        self.decode_head_rgb = MLPDecoder(dims, num_classes, embed_dim=SINGLE_HEAD_EMBED, dropout=0.1, fuse_bias=False)
        self.decode_head_x = MLPDecoder(dims, num_classes, embed_dim=SINGLE_HEAD_EMBED, dropout=0.1, fuse_bias=False)
        for head in (self.decode_head, self.decode_head_rgb, self.decode_head_x):
            head.apply(conv_fan_out_init)

    def encode(
        self, rgb: torch.Tensor, x: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """The four fused (DSCF), RGB and X maps, each after its output LayerNorm."""
        swin = self.backbone
        rgb_tokens, h, w = swin.patch_embed(rgb)
        x_tokens, _, _ = self.patch_embed_x(x)
        if self.training and self.modality_masking:
            rgb_tokens, x_tokens = mask_modalities(rgb_tokens, x_tokens)
        fused_maps, rgb_maps, x_maps = [], [], []
        for index, stage in enumerate(swin.layers):
            prompt_rgb, prompt_x = self.mapa[index](rgb_tokens, x_tokens)
            rgb_tokens = stage(rgb_tokens + prompt_rgb, h, w, "rgb")
            x_tokens = stage(x_tokens + prompt_x, h, w, "x")
            rgb_out = getattr(swin, f"norm{index}")(rgb_tokens)
            x_out = self.out_norm_x[index](x_tokens)
            fused = self.out_norm_fuse[index](self.dscf[index](rgb_out, x_out, h, w))
            fused_maps.append(tokens_to_map(fused, h, w))
            rgb_maps.append(tokens_to_map(rgb_out, h, w))
            x_maps.append(tokens_to_map(x_out, h, w))
            if stage.downsample is not None:
                rgb_tokens, next_h, next_w = stage.downsample(rgb_tokens, h, w)
                x_tokens, _, _ = stage.downsample(x_tokens, h, w)
                h, w = next_h, next_w
        return fused_maps, rgb_maps, x_maps

    def forward_outputs(self, rgb: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fused, rgb_maps, x_maps = self.encode(rgb, x)
        return {
            "fused": self.decode_head(fused),
            "rgb": self.decode_head_rgb(rgb_maps),
            "x": self.decode_head_x(x_maps),
        }

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The fused head alone (the single-modality heads only teach)."""
        return self.decode_head(self.encode(rgb, x)[0])

    def loss(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked modality self-teaching: CE(fused, Y) + 0.01·CE(rgb, Y_M) + 0.01·CE(x, Y_M), where Y_M keeps the
        labels only where the fused prediction is right (hard labels, no gradient through the mask). An empty mask
        gives a 0 term, not the released code's NaN. Logits are upsampled bilinearly to the labels first."""
        size = target.shape[-2:]
        fused = resize(outputs["fused"], size)
        with torch.no_grad():
            teacher = torch.where(fused.argmax(dim=1) == target, target, torch.full_like(target, VOID))
        return {
            "fused": cross_entropy(fused, target),
            "rgb": TEACHING_WEIGHT * cross_entropy(resize(outputs["rgb"], size), teacher),
            "x": TEACHING_WEIGHT * cross_entropy(resize(outputs["x"], size), teacher),
        }

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        return released_to_current(state, self.backbone.config.window_size)

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        window = self.backbone.config.window_size
        return {
            "backbone": BackboneMapping(
                lambda s: _swin_into_ktb(s, window), _SWIN_COVERS, SWIN_SOURCES[self.backbone_name]
            )
        }


# --- checkpoints -------------------------------------------------------------------------------------------------

_RELEASED_RENAMES = (
    (re.compile(r"^backbone\.extra_patch_embed\.projection\."), "patch_embed_x.proj."),
    (re.compile(r"^backbone\.extra_patch_embed\."), "patch_embed_x."),
    (re.compile(r"^backbone\.extra_norm(\d)\."), r"out_norm_x.\1."),
    (re.compile(r"^backbone\.fuse_norm(\d)\."), r"out_norm_fuse.\1."),
    (re.compile(r"\.MLP_RGB_Adapter\.D_fc1\."), ".adapter_rgb.down."),
    (re.compile(r"\.MLP_RGB_Adapter\.D_fc2\."), ".adapter_rgb.up."),
    (re.compile(r"\.MLP_DTE_Adapter\.D_fc1\."), ".adapter_x.down."),
    (re.compile(r"\.MLP_DTE_Adapter\.D_fc2\."), ".adapter_x.up."),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.D_fc1\."), r"mapa.\1.down_rgb."),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.D_fc2\."), r"mapa.\1.down_x."),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.P_fc2\."), r"mapa.\1.unify."),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.U_fc1\."), r"mapa.\1.up."),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.tfts_(gamma|beta)_rgb$"), r"mapa.\1.\2_rgb"),
    (re.compile(r"^backbone\.MPGBlocks\.(\d)\.tfts_(gamma|beta)_dte$"), r"mapa.\1.\2_x"),
    (re.compile(r"^backbone\.DeformMPGBlocks\.(\d)\.D_fc1\."), r"dscf.\1.down_rgb."),
    (re.compile(r"^backbone\.DeformMPGBlocks\.(\d)\.D_fc2\."), r"dscf.\1.down_x."),
    (re.compile(r"^backbone\.DeformMPGBlocks\.(\d)\.U_fc1\."), r"dscf.\1.up."),
    (re.compile(r"^backbone\.DeformMPGBlocks\.(\d)\.deform_atten\."), r"dscf.\1.attention."),
    (re.compile(r"\.attention\.conv_offset_x\."), ".attention.offset_rgb."),
    (re.compile(r"\.attention\.conv_offset_y\."), ".attention.offset_x."),
    (re.compile(r"\.(offset_rgb|offset_x)\.0\."), r".\1.depthwise."),
    (re.compile(r"\.(offset_rgb|offset_x)\.1\.norm\."), r".\1.norm."),
    (re.compile(r"\.(offset_rgb|offset_x)\.3\."), r".\1.pointwise."),
    (re.compile(r"\.attention\.fuse_q\.conv\."), ".attention.query."),
    (re.compile(r"\.attention\.get_sample_weight\."), ".attention.gate."),
    (re.compile(r"\.attention\.deform_weight$"), ".attention.alpha"),
    (re.compile(r"\.attention\.identity_weight$"), ".attention.beta"),
    (re.compile(r"\.attention\.rpe_table$"), ".attention.rel_pos_table"),
    (re.compile(r"^decode_head_dte\."), "decode_head_x."),
)


def released_to_current(state: Mapping[str, torch.Tensor], window: int = RELEASED_WINDOW) -> StateDict:
    """The released layout (``CMNeXt("SwinTransformer-B|L", K, …).state_dict()``: mmseg Swin names, ``MPGBlocks``,
    ``DeformMPGBlocks``, ``extra_*`` and ``decode_head_dte``) → ours, losslessly: the 24 ``relative_position_index``
    buffers checked against the standard index and dropped, the Swin under ``backbone.`` through the shared mmseg
    conversion (:func:`~rgbxseg.models.backbones.swin.swin_from_mmseg`: names, patch-merging weights reordered from
    mmseg's unfold order; ``window``: the model's, the released one 12), KTB's modules renamed, the heads' Linear
    projections as 1×1 convs. Our own keys pass."""
    state = drop_position_indices(state)
    swin = swin_from_mmseg({k: v for k, v in state.items() if k.startswith("backbone.")}, window)
    renamed = {"backbone." + key: value for key, value in swin.items()}
    renamed.update((key, value) for key, value in state.items() if not key.startswith("backbone."))
    out = {rename_key(key, _RELEASED_RENAMES): value for key, value in renamed.items()}
    for prefix in ("decode_head.", "decode_head_rgb.", "decode_head_x."):
        out = segformer_head_to_current(out, prefix)
    return out


_SWIN_COVERS = re.compile(r"^backbone\.(?!norm\d\.)(?!.*\.adapter_)")
"""The pretrained file must fill the frozen Swin; its patch embedding is also copied into the trainable X patch
embedding (the release's post-load copy), which is initialised that way but not required of the file."""


def _swin_into_ktb(state: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """A Microsoft or mmseg Swin checkpoint → the frozen backbone, its patch embedding also into ``patch_embed_x``."""
    swin = swin_layout(state, window)
    mapped = {"backbone." + key: value for key, value in swin.items()}
    mapped.update(
        {"patch_embed_x." + k.removeprefix("patch_embed."): v for k, v in swin.items() if k.startswith("patch_embed.")}
    )
    return mapped


def _mmseg_swin(file_name: str, what: str) -> PretrainedSource:
    return PretrainedSource(
        file_name=file_name,
        publisher=f"OpenMMLab mmsegmentation v0.5 pretrain conversion of Microsoft's {what}",
        covers="the frozen Swin (blocks, patch merging, patch embedding) and, as a copy of its patch embedding, the "
        "trainable X patch embedding; adapters, prompts, DSCF, output norms and heads keep their initialisation",
        trained_on=IMAGENET_RGB,
        frozen=True,
    )


SWIN_SOURCES = {
    "swin_b_w12": _mmseg_swin(
        "swin_base_patch4_window12_384_22k_20220317-e5c09f74.pth", "Swin-B, ImageNet-22K, 384 px"
    ),
    "swin_l_w12": _mmseg_swin(
        "swin_large_patch4_window12_384_22k_20220412-6580f57d.pth", "Swin-L, ImageNet-22K, 384 px"
    ),
    "swin_t": replace(
        _mmseg_swin("swin_tiny_patch4_window7_224.pth", "Swin-T, ImageNet-1K, 224 px"),
        publisher="microsoft/Swin-Transformer release, ImageNet-1K (weights under 'model'; OpenMMLab conversions too)",
    ),
}


# --- registered models -------------------------------------------------------------------------------------------

_README = "KTB README (mIoU; protocol not stated, the configs evaluate multi-scale + flip)"
_VARIANTS = {
    # name: (backbone, its name in words, gradient checkpointing, paper facts)
    "ktb_swin_b": (
        "swin_b_w12",
        "Swin-B (ImageNet-22K, 384 px, window 12)",
        False,
        PaperFacts(
            trainable_params_m=7.5,
            miou={
                "nyuv2": 59.0,
                "sunrgbd": 53.7,
                "mfnet": 59.9,
                "pst900": 87.6,
                "mcubes rgb-nir": 53.8,
                "mcubes rgb-dolp": 54.5,
                "mcubes rgb-aolp": 53.7,
                "deliver rgb-event": 58.4,
            },
            fps={"paper, GPU not stated (third-party summary, unverified)": 13.0},
            source=_README + "; trainable 7.5 M per the paper (third-party summary)",
        ),
    ),
    "ktb_swin_l": (
        "swin_l_w12",
        "Swin-L (ImageNet-22K, 384 px, window 12)",
        True,
        PaperFacts(
            trainable_params_m=16.1,
            miou={"nyuv2": 59.9, "sunrgbd": 55.0, "mfnet": 59.2, "pst900": 88.7},
            source=_README + "; the paper's 16.1 M trainable is not what the released code builds (12.72 M with the "
            "Swin-B ratios): unresolved until a released Swin-L checkpoint's shapes are read",
        ),
    ),
    "ktb_swin_t": (
        "swin_t",
        "Swin-T (ImageNet-1K, window 7; rgbxseg's CPU variant, not in the paper)",
        False,
        PaperFacts(source="rgbxseg's variant: KTB's modules on Swin-T widths, not in the paper"),
    ),
}


def _register(name: str, backbone: str, words: str, checkpointing: bool, paper: PaperFacts) -> None:
    def build(num_classes: int = 40, **kwargs: Any) -> KTB:
        kwargs.setdefault("checkpointing", checkpointing)
        return KTB(num_classes, backbone=backbone, model_name=name, **kwargs)

    summary = f"KTB {words}: one frozen Swin adapted to RGB and X, prompts, adapters and sparse fusion (RGB-X)"
    register_model(name, summary=summary, paper=paper)(build)


for _name, (_backbone, _words, _checkpointing, _paper) in _VARIANTS.items():
    _register(_name, _backbone, _words, _checkpointing, _paper)
