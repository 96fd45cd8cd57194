"""GeminiFusion (Jia et al., ICML 2024): one shared-weight backbone over RGB and X, fused pixel by pixel in every block.

Both modalities run through the same MiT or Swin weights, stacked along the batch (RGB first), with per-modality
LayerNorms where the official code has them. After the attention of every block, :class:`PixelwiseFusion` lets each
modality's tokens attend to a two-slot key/value set of the same pixel (MiT: before the attention's output
projection; Swin: after the window attention, before the residual). One SegFormer head decodes each modality; the
ensemble is ``softmax(α)[0]·rgb + softmax(α)[1]·x`` of the detached logits. ``forward_outputs`` returns
``{"rgb", "x", "ens"}`` at ¼ resolution (what the official model returns), ``forward`` the upsampled ensemble, and
the loss is the official sum of the three cross-entropies.

Faithful to the released training: the decoder BatchNorm runs in eval mode (``--freeze-bn``), and α is not in any
optimiser group, so it stays at its initial (1, 1) — an ensemble of equal weights (``train_alpha=True`` learns it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..inputs import IMAGENET_RGB, ChannelNormalization, InputSpec, ModalityInput
from .backbones.mit import MIT_CONFIGS, EfficientSelfAttention, MixTransformer, StreamLayerNorm
from .backbones.swin import SWIN_CONFIGS, SwinBlock, SwinTransformer, drop_position_indices, swin_layout
from .base import ParamGroupRule, SegmentationModel
from .decoders import MLPDecoder, segformer_head_to_current
from .fusion import PixelwiseFusion
from .layers import resize
from .losses import cross_entropy
from .pretrained import BackboneMapping, PretrainedSource, StateDict
from .registry import PaperFacts, register_input_spec, register_model
from .weights import rename_key

FUSION_HEADS = 8
"""Heads of the pixel-wise attention (the official ``--n_heads`` default; fixed at 8 in its Swin blocks)."""
NORM_EPS = 1e-6
"""Epsilon of every per-modality LayerNorm (the official ``LayerNormParallel``); Swin's shared norms keep 1e-5."""

GEMINIFUSION_DEPTH = ModalityInput("depth", "metric_mm", 3, ChannelNormalization(51.0, (0.0,), (1.0,)))
"""The official X input: the NYUDv2 package's depth PNG divided by 255, tiled to 3 channels, no mean/std. The package
(TokenFusion/CEN, from DrSleep's NYUDv2 set) most likely stores metres × 5000, i.e. 5 × millimetres, so the network
sees millimetres / 51 (≈ 19.6 per metre). This is an inference from the code (its unused ``depth_scale`` 1/5000) and
the users' reports, not a documented fact; ``geminifusion_nyudv2_mm`` is the alternative reading (millimetres / 255)."""

GEMINIFUSION_NYUDV2 = register_input_spec(
    InputSpec(
        "geminifusion_nyudv2",
        IMAGENET_RGB,
        GEMINIFUSION_DEPTH,
        multiple=1,
        min_size=32,
        description="ImageNet RGB; depth PNG (metres × 5000) / 255 tiled to 3 channels",
    )
)
GEMINIFUSION_NYUDV2_MM = register_input_spec(
    replace(
        GEMINIFUSION_NYUDV2,
        name="geminifusion_nyudv2_mm",
        x=replace(GEMINIFUSION_DEPTH, normalization=ChannelNormalization(255.0, (0.0,), (1.0,))),
        description="ImageNet RGB; depth PNG (millimetres) / 255 tiled to 3 channels",
    )
)
GEMINIFUSION_SUNRGBD = register_input_spec(
    replace(
        GEMINIFUSION_NYUDV2,
        name="geminifusion_sunrgbd",
        x=ModalityInput("depth_minmax", "minmax_8bit", 3, ChannelNormalization(255.0, (0.0,), (1.0,))),
        description="ImageNet RGB; the DFormer package's 8-bit depth PNG / 255 tiled to 3 channels",
    )
)
"""The official SUN RGB-D input: the depth PNG of the DFormer package (which rgbxseg's DFormer importer keeps as the
``depth_minmax`` modality, per-image min-max 8-bit as far as known) / 255, tiled to 3 channels."""


def _stream_norm(dim: int, eps: float = NORM_EPS) -> StreamLayerNorm:
    return StreamLayerNorm(dim, eps=eps)


class GeminiMiTAttention(EfficientSelfAttention):
    """MiT efficient attention over the stacked streams, fused pixel-wise before the shared output projection."""

    def __init__(self, dim: int, *args: Any) -> None:
        super().__init__(dim, *args)
        self.fusion = PixelwiseFusion(dim, FUSION_HEADS)

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        _, out = self.attend(x, h, w)
        return self.proj(torch.cat(self.fusion(*out.chunk(2)), dim=0))


class GeminiSwinBlock(SwinBlock):
    """Swin block over the stacked streams, fused pixel-wise after the window attention, before the residual."""

    def __init__(self, dim: int, *args: Any) -> None:
        super().__init__(dim, *args)
        self.fusion = PixelwiseFusion(dim, FUSION_HEADS)

    def after_attention(self, y: torch.Tensor, context: Any) -> torch.Tensor:
        return torch.cat(self.fusion(*y.chunk(2)), dim=0)


def _mit_encoder(backbone: str, drop_path: float) -> MixTransformer:
    config = replace(
        MIT_CONFIGS[backbone],
        drop_path_rate=drop_path,
        block_norm_eps=NORM_EPS,
        patch_norm_eps=NORM_EPS,
        sr_norm_eps=NORM_EPS,
    )
    return MixTransformer(config, norm_layer=StreamLayerNorm, attention_cls=GeminiMiTAttention)


def _swin_encoder(backbone: str, drop_path: float) -> SwinTransformer:
    return SwinTransformer(
        replace(SWIN_CONFIGS[backbone], drop_path_rate=drop_path),
        patch_norm_layer=_stream_norm,
        out_norm_layer=_stream_norm,
        patch_norm_eps=NORM_EPS,
        out_norm_eps=NORM_EPS,
        block_cls=GeminiSwinBlock,
    )


class GeminiFusion(SegmentationModel):
    """``model(rgb, x)`` → the ensemble's logits (B, K, H, W); ``forward_outputs`` → ``{"rgb", "x", "ens"}`` at ¼.

    Args:
        num_classes: classes without void; logit c is dataset label c + 1.
        backbone: ``mit_b0`` … ``mit_b5`` or ``swin_t``, ``swin_s``, ``swin_l``, ``swin_l_w12``.
        drop_path: stochastic-depth rate over the backbone's blocks (the published recipes: see the registry).
        train_alpha: learn the ensemble weight α (the official optimiser leaves it out: it stays 1, 1).
        model_name: the registered name.
    """

    classifier_key = "decoder.linear_pred.weight"
    outputs = ("rgb", "x", "ens")
    prediction_output = "ens"
    loss_terms = ("rgb", "x", "ens")
    eval_in_training = (r"decoder\.linear_fuse\.1",)
    # The official groups: encoder weights with decay; encoder parameters named "norm" without; decoder lr × 10.
    param_group_rules = (
        ParamGroupRule(r"^decoder\.", lr_mult=10.0),
        ParamGroupRule(r"^encoder\..*norm", weight_decay=0.0),
    )

    def __init__(
        self,
        num_classes: int = 40,
        backbone: str = "mit_b0",
        drop_path: float = 0.4,
        train_alpha: bool = False,
        model_name: str = "geminifusion_mit_b0",
    ) -> None:
        super().__init__(model_name, num_classes)
        self.backbone = backbone
        swin = backbone.startswith("swin")
        # MiT takes any size from 32; Swin multiples of 4 (its official code fails on others).
        self.input_spec = replace(GEMINIFUSION_NYUDV2, multiple=4, min_size=4) if swin else GEMINIFUSION_NYUDV2
        self.frozen = () if train_alpha else ("alpha",)
        self.alpha = nn.Parameter(torch.ones(2))  # first, as in the official state dict
        self.encoder = _swin_encoder(backbone, drop_path) if swin else _mit_encoder(backbone, drop_path)
        dims = [info.channels for info in self.encoder.feature_info]
        self.decoder = MLPDecoder(dims, num_classes, embed_dim=256, dropout=0.1, fuse_bias=False)

    def forward_outputs(self, rgb: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder(torch.cat([rgb, x], dim=0))  # one shared backbone, the streams stacked
        logits_rgb, logits_x = self.decoder(features).chunk(2)
        weights = self.alpha.softmax(dim=0)
        ensemble = weights[0] * logits_rgb.detach() + weights[1] * logits_x.detach()
        return {"rgb": logits_rgb, "x": logits_x, "ens": ensemble}

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.forward_outputs(rgb, x)["ens"]

    def loss(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official loss: cross-entropy of each output, bilinearly upsampled to the labels, summed."""
        return {name: cross_entropy(resize(outputs[name], target.shape[-2:]), target) for name in self.loss_terms}

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        return released_to_current(state)

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        own_keys = list(self.state_dict())
        if self.backbone.startswith("swin"):
            source = SWIN_IMAGENET[self.backbone]
            window = self.encoder.config.window_size
            return {
                "backbone": BackboneMapping(lambda s: _expand(_swin_layout(s, window), own_keys), _SWIN_COVERS, source)
            }
        source = MIT_IMAGENET[self.backbone]
        return {"backbone": BackboneMapping(lambda s: _expand(s, own_keys), _MIT_COVERS, source)}


# --- checkpoints -------------------------------------------------------------------------------------------------

_RELEASED_RENAMES = (
    (re.compile(r"\.module\."), "."),  # the official ModuleParallel wrappers
    (re.compile(r"^encoder\.body\."), "encoder."),  # its Swin TransformerBackbone wrapper
    (
        re.compile(r"(?<!\.fusion)\.(cross_attn_0_to_1|cross_attn_1_to_0|relation_judger|k_noise|v_noise)\."),
        r".fusion.\1.",
    ),
)


def released_to_current(state: Mapping[str, torch.Tensor]) -> StateDict:
    """The official (released) state-dict layout → ours, losslessly: wrapper segments dropped, the fusion modules under
    ``fusion``, mmcv's ``ConvModule`` names, decoder projections as 1×1 convs. Swin's ``relative_position_index``
    buffers are checked against the canonical index and dropped (ours is computed). Our own keys pass unchanged."""
    out = {rename_key(key, _RELEASED_RENAMES): value for key, value in drop_position_indices(state).items()}
    return segformer_head_to_current(out, "decoder.")


_LN_STREAM = re.compile(r"\.ln_[01]\.")
_MIT_COVERS = re.compile(r"^encoder\.(?!.*\.fusion\.)")
_SWIN_COVERS = re.compile(r"^encoder\.(?!norm\d\.)(?!patch_embed\.norm\.)(?!.*\.fusion\.)")
"""Swin's per-modality norms (patch embedding, outputs) start at 1, 0, as the official loader leaves them."""


def _swin_layout(state: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """A Microsoft or OpenMMLab Swin checkpoint in Microsoft's layout, tables resized to ``window``, without the
    patch-embedding norm (the official loader never fills the per-modality norms there: they start at 1, 0)."""
    return {k: v for k, v in swin_layout(state, window).items() if not k.startswith("patch_embed.norm.")}


def _expand(state: Mapping[str, torch.Tensor], own_keys: list[str]) -> StateDict:
    """A single-stream ImageNet backbone onto the encoder (the official "expand" rule): every encoder key looks up its
    name without ``encoder.`` and without the stream suffix ``.ln_0`` / ``.ln_1``, so each LayerNorm initialises both
    modalities' norms."""
    out = {}
    for key in own_keys:
        if key.startswith("encoder."):
            source = _LN_STREAM.sub(".", key.removeprefix("encoder."))
            if source in state:
                out[key] = state[source]
    return out


def _mit_source(index: int) -> PretrainedSource:
    return PretrainedSource(
        file_name=f"mit_b{index}.pth",
        publisher="NVlabs/SegFormer release, ImageNet-1k",
        covers=f"the shared MiT-B{index} encoder (each LayerNorm into both modalities' norms); the fusion modules stay "
        "random",
        trained_on=IMAGENET_RGB,
    )


MIT_IMAGENET = {f"mit_b{i}": _mit_source(i) for i in range(6)}


def _swin_source(file_name: str, what: str) -> PretrainedSource:
    return PretrainedSource(
        file_name=file_name,
        publisher=f"microsoft/Swin-Transformer release, {what} (weights under 'model'; OpenMMLab conversions too)",
        covers="the shared Swin encoder; its per-modality norms (patch embedding, outputs) and the fusion modules stay "
        "at their initialisation, as in the official code",
        trained_on=IMAGENET_RGB,
    )


SWIN_IMAGENET = {
    "swin_t": _swin_source("swin_tiny_patch4_window7_224.pth", "ImageNet-1k"),
    "swin_s": _swin_source("swin_small_patch4_window7_224.pth", "ImageNet-1k"),
    "swin_l": _swin_source("swin_large_patch4_window7_224_22k.pth", "ImageNet-22k"),
    "swin_l_w12": _swin_source("swin_large_patch4_window12_384_22k.pth", "ImageNet-22k, 384 px"),
}


# --- registered models -------------------------------------------------------------------------------------------

_README = "official README (NYUDv2 / SUN RGB-D, single scale, the ens output)"
_MEASURED = "official model measured (random weights, 40 classes)"
_VARIANTS = {
    # name: (backbone, its name in words, the NYUDv2 recipe's drop-path rate, paper facts)
    "geminifusion_mit_b0": ("mit_b0", "MiT-B0", 0.4, PaperFacts(params_m=5.86, source=_MEASURED)),
    "geminifusion_mit_b1": ("mit_b1", "MiT-B1", 0.4, PaperFacts(params_m=22.20, source=_MEASURED)),
    "geminifusion_mit_b2": ("mit_b2", "MiT-B2", 0.4, PaperFacts(params_m=41.08, source=_MEASURED)),
    "geminifusion_mit_b3": (
        "mit_b3",
        "MiT-B3",
        0.4,
        PaperFacts(params_m=74.55, miou={"nyuv2": 56.8, "sunrgbd": 52.7}, source=_README),
    ),
    "geminifusion_mit_b4": ("mit_b4", "MiT-B4", 0.4, PaperFacts(params_m=102.25, source=_MEASURED)),
    "geminifusion_mit_b5": (
        "mit_b5",
        "MiT-B5",
        0.35,
        PaperFacts(params_m=137.21, miou={"nyuv2": 57.7, "sunrgbd": 53.3}, source=_README),
    ),
    "geminifusion_swin_t": (
        "swin_t",
        "Swin-T",
        0.2,
        PaperFacts(params_m=51.95, miou={"nyuv2": 52.2, "sunrgbd": 50.2}, source=_README),
    ),
    "geminifusion_swin_s": ("swin_s", "Swin-S", 0.4, PaperFacts(params_m=92.80, miou={"nyuv2": 55.0}, source=_README)),
    "geminifusion_swin_l": (
        "swin_l",
        "Swin-L (window 7, 224 px)",
        0.4,
        PaperFacts(miou={"nyuv2": 58.8}, source=_README),
    ),
    "geminifusion_swin_l_w12": (
        "swin_l_w12",
        "Swin-L (window 12, 384 px)",
        0.2,
        PaperFacts(
            params_m=369.22,
            miou={"nyuv2": 60.2, "nyuv2 (SUN RGB-D pre-training)": 60.9, "sunrgbd": 54.8},
            fps={"third-party, unverified": 7.5},
            source=_README,
        ),
    ),
}


def _register(name: str, backbone: str, words: str, drop_path: float, paper: PaperFacts) -> None:
    def build(num_classes: int = 40, **kwargs: Any) -> GeminiFusion:
        kwargs.setdefault("drop_path", drop_path)
        return GeminiFusion(num_classes, backbone=backbone, model_name=name, **kwargs)

    summary = f"GeminiFusion {words}: one shared backbone over RGB and X, pixel-wise fusion in every block"
    register_model(name, summary=summary, paper=paper)(build)


for _name, (_backbone, _words, _drop_path, _paper) in _VARIANTS.items():
    _register(_name, _backbone, _words, _drop_path, _paper)
