"""AsymFormer (Du et al., CVPRW 2024): asymmetric ConvNeXt RGB branch + MiT depth branch with SCC fusion.

The module and key layout follow the released ``B0_T`` model, so the official checkpoint loads unchanged (the 2023
layout through :func:`legacy_to_current`). Data flow per stage k = 1..4::

    r_k = ConvNeXt stage k (RGB only)
    f_k = MiT stage k (stage 1: on the depth image; later: on f_{k-1})
    f_k = SCC_k(f_k, r_k) for k ≥ 2      # the fused map replaces the depth feature
    logits = upsample(MLPDecoder([f_1, f_2, f_3, f_4]))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from ..inputs import DEFAULT_RGBD, IMAGENET_RGB, ChannelNormalization, InputSpec, ModalityInput
from .backbones.convnext import (
    CONVNEXT_CONFIGS,
    ConvNeXtConfig,
    convnext_downsampler,
    convnext_stage,
    init_convnext_weights,
)
from .backbones.mit import MIT_CONFIGS, MiTConfig, mit_blocks, mit_patch_embed, mit_stage_norm, run_mit_stage
from .base import SegmentationModel
from .decoders import MLPDecoder
from .fusion import CMA_ONLY, CONCAT, LAFS_CMA, LAFS_ONLY, SCC, SE_MHSA, FusionDesign
from .layers import init_vit_weights
from .pretrained import BackboneMapping, PretrainedSource, StateDict
from .registry import PaperFacts, register_input_spec, register_model
from .weights import rename_key

NYUV2_RGB_MEAN = (0.4850042694973687, 0.41627756261047333, 0.3981809741523051)
NYUV2_RGB_STD = (0.26415541082494515, 0.2728415392982039, 0.2831175140191598)

ASYMFORMER_TRAIN = register_input_spec(
    replace(
        DEFAULT_RGBD,
        name="asymformer_train",
        multiple=32,
        description="the official training code: ImageNet RGB statistics, depth mm/1000 with NYUv2 statistics",
    )
)
"""The AsymFormer training convention: RGB ``/255`` with ImageNet mean/std; depth in millimetres ``/1000``, then
``(d − 2.8424503515351494) / 0.9932836506164299``, invalid (0) pixels left unmasked. H and W multiples of 32."""

ASYMFORMER_RELEASE = register_input_spec(
    replace(
        ASYMFORMER_TRAIN,
        name="asymformer_release",
        rgb=replace(ASYMFORMER_TRAIN.rgb, channel_order="bgr"),
        description="the released 2023 checkpoint as it was trained (and as MS5_eval.py scores it): the image's "
        "channels in B, G, R order with the ImageNet statistics in that order; depth as asymformer_train",
    )
)
"""How the released checkpoint was trained: the 2023 loader calls ``cv2.imread(path, cv2.COLOR_BGR2RGB)``, whose flag
(4) means ``IMREAD_ANYCOLOR``, so the network saw OpenCV's B, G, R arrays of the package's PNGs. Loading that
checkpoint (recognised by its 2023 key layout) applies this spec."""

ASYMFORMER_NYUV2_EVAL = register_input_spec(
    replace(
        ASYMFORMER_RELEASE,
        name="asymformer_nyuv2_eval",
        rgb=ModalityInput(
            "rgb", "rgb", 3, ChannelNormalization(255.0, NYUV2_RGB_MEAN, NYUV2_RGB_STD), channel_order="bgr"
        ),
        description="the official single-scale evaluation script eval.py (54.1 mIoU): B, G, R channels with its "
        "NYUv2 RGB statistics",
    )
)
"""The convention of the official single-scale evaluation script: the released checkpoint's B, G, R order with the
statistics ``eval.py`` normalises with (its NYUv2 RGB mean/std, applied in that channel order), behind the 54.1."""


class AsymStage(nn.Module):
    """One ``down_sample_k`` block: a ConvNeXt stage, a MiT stage and (k ≥ 2) the SCC fusion of their outputs."""

    def __init__(
        self, stage: int, rgb: ConvNeXtConfig, depth: MiTConfig, fusion: FusionDesign | None, attn_drop: float
    ) -> None:
        super().__init__()
        depth_in = 1 if stage == 0 else depth.embed_dims[stage - 1]
        self.depth_stem = mit_patch_embed(depth, stage, depth_in)
        self.rgb_stem = convnext_downsampler(rgb, stage)
        self.rgb_layer = convnext_stage(rgb, stage)
        self.depth_layer = mit_blocks(depth, stage)
        self.depth_norm = mit_stage_norm(depth, stage)
        self.SCC = SCC(depth.embed_dims[stage], rgb.dims[stage], fusion, attn_drop) if fusion else None

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.rgb_layer(self.rgb_stem(rgb))
        tokens, h, w = self.depth_stem(depth)
        f = run_mit_stage(self.depth_layer, self.depth_norm, tokens, h, w)
        if self.SCC is not None:
            f = self.SCC(f, r)
        return r, f


class AsymFormer(SegmentationModel):
    """``model(rgb, depth)`` → logits (B, num_classes, H, W); H and W must be multiples of 32.

    Args:
        num_classes: classes without void (NYUv2: 40, SUN RGB-D: 37); logit c is dataset label c + 1.
        fusion: the SCC design at stages 2–4 (the paper's Table I variants differ only here).
        rgb_backbone: a key of ``CONVNEXT_CONFIGS``; depth_backbone: a key of ``MIT_CONFIGS``.
        rgb_drop_path / depth_drop_path: stochastic-depth rates (0.3 / 0.1 as released).
        fusion_attn_drop: dropout on the fusion attention probabilities (0.2 as released).
        decoder_dropout: Dropout2d before the classifier (0.1 as released).
        decoder_dim: MLP decoder width.
    """

    input_spec: InputSpec = ASYMFORMER_TRAIN
    classifier_key = "Decoder.linear_pred.weight"
    # The ConvNeXt branch (27 of 36 GMACs) and the SCC fusion are robust in bf16; the MiT branch and the decoder,
    # cheap but sensitive, stay float32 (argmax agreement with float32 on the reference fixture: 99.5 % with these
    # islands, 99.0 % with MiT in bf16 too, 98.6 % with everything in bf16). The RGB features feed only the next
    # ConvNeXt stage and the SCC, so they stay in half precision from stem to stem.
    half_precision_modules = (r"down_sample_\d\.rgb_(stem|layer)", r"down_sample_\d\.SCC")
    half_precision_outputs = (r"down_sample_\d\.rgb_(stem|layer)",)
    # int8: the first stems see the raw normalised RGB and depth; keeping them float32 (under 1 % of the MACs) lifts the
    # argmax agreement of the demo's trained weights on its test frames from 99.30 % to 99.73 %. Keeping the decoder
    # or the last stage float32 changes nothing (99.31 %, 99.30 %).
    int8_float_modules = (r"down_sample_1\.(rgb|depth)_stem",)

    def __init__(
        self,
        num_classes: int = 40,
        fusion: FusionDesign = LAFS_CMA,
        rgb_backbone: str = "convnext_t",
        depth_backbone: str = "mit_b0",
        rgb_drop_path: float = 0.3,
        depth_drop_path: float = 0.1,
        fusion_attn_drop: float = 0.2,
        decoder_dropout: float = 0.1,
        decoder_dim: int = 256,
        model_name: str = "asymformer_b0_t",
    ) -> None:
        super().__init__(model_name, num_classes)
        rgb = replace(CONVNEXT_CONFIGS[rgb_backbone], drop_path_rate=rgb_drop_path)
        depth = replace(MIT_CONFIGS[depth_backbone], drop_path_rate=depth_drop_path)
        for k in range(4):
            stage_fusion = fusion if k > 0 else None
            self.add_module(f"down_sample_{k + 1}", AsymStage(k, rgb, depth, stage_fusion, fusion_attn_drop))
        self.Decoder = MLPDecoder(depth.embed_dims, num_classes, decoder_dim, decoder_dropout, fuse_bias=True)
        for stage in self.stages:
            for part in (stage.rgb_stem, stage.rgb_layer):
                part.apply(init_convnext_weights)
            for part in (stage.depth_stem, stage.depth_layer, stage.depth_norm):
                part.apply(init_vit_weights)

    @property
    def stages(self) -> list[AsymStage]:
        return [self.down_sample_1, self.down_sample_2, self.down_sample_3, self.down_sample_4]

    def forward_features(self, rgb: torch.Tensor, depth: torch.Tensor) -> list[torch.Tensor]:
        """The four decoder inputs [f1 (un-fused), f2, f3, f4] at strides 4, 8, 16, 32."""
        features = []
        for stage in self.stages:
            rgb, depth = stage(rgb, depth)
            features.append(depth)
        return features

    def forward_decoder(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return self.Decoder(self.forward_features(rgb, depth))

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        return legacy_to_current(state)

    def checkpoint_input_spec(self, state: StateDict) -> InputSpec | None:
        """The released 2023 checkpoint (its ``SCC.conv1`` keys) was trained on B, G, R: :data:`ASYMFORMER_RELEASE`."""
        return ASYMFORMER_RELEASE if any(_LEGACY_KEY.search(key) for key in state) else None

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        return {
            "rgb": BackboneMapping(
                convnext_to_asymformer, re.compile(r"^down_sample_\d\.rgb_(stem|layer)\."), CONVNEXT_T_IMAGENET
            ),
            "depth": BackboneMapping(
                mit_to_asymformer,
                re.compile(r"^down_sample_(\d\.depth_(layer|norm)|[234]\.depth_stem)\."),
                MIT_B0_IMAGENET,
            ),
        }


CONVNEXT_T_IMAGENET = PretrainedSource(
    file_name="convnext_tiny_1k_224_ema.pth",
    publisher="facebookresearch/ConvNeXt release, ImageNet-1k, EMA weights under 'model'",
    covers="the ConvNeXt-T RGB branch (down_sample_k.rgb_stem / rgb_layer, 27,818,592 parameters)",
    trained_on=IMAGENET_RGB,
)
MIT_B0_IMAGENET = PretrainedSource(
    file_name="mit_b0.pth",
    publisher="NVlabs/SegFormer release, ImageNet-1k",
    covers="the MiT-B0 depth branch (trained on RGB) except its 1-channel stage-1 stem, which stays random as in the "
    "official code",
    trained_on=IMAGENET_RGB,
)


# --- checkpoint layouts ------------------------------------------------------------------------------------------

_LEGACY_RENAMES = (
    (re.compile(r"^(down_sample_\d\.SCC\.)conv1\."), r"\1conv_bn.0."),
    (re.compile(r"^(down_sample_\d\.SCC\.)bn\."), r"\1conv_bn.1."),
)
_CURRENT_RENAMES = (
    (re.compile(r"^(down_sample_\d\.SCC\.)conv_bn\.0\."), r"\1conv1."),
    (re.compile(r"^(down_sample_\d\.SCC\.)conv_bn\.1\."), r"\1bn."),
)
_LEGACY_KEY = re.compile(r"(^|\.)down_sample_\d\.SCC\.conv1\.")
"""A key only the 2023 released layout has."""
_DECODER_PROJ = re.compile(r"^Decoder\.linear_c\d\.proj\.weight$")
_ATTN_PROJ = re.compile(r"\.attn\.proj\.weight$")


def legacy_to_current(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Convert the 2023 released layout (``SCC.conv1``/``SCC.bn``, 2-D decoder projections) losslessly.

    Current-layout keys pass through unchanged, so the conversion is safe to apply to any AsymFormer state.
    """
    out = {}
    for old_key, value in state.items():
        key = rename_key(old_key, _LEGACY_RENAMES)
        if _DECODER_PROJ.match(key) and value.ndim == 2:
            out[key] = value[:, :, None, None]
        elif _ATTN_PROJ.search(key) and value.ndim == 4 and value.shape[2:] == (1, 1):
            out[key] = value[:, :, 0, 0]
        else:
            out[key] = value
    return out


def current_to_legacy(state: Mapping[str, torch.Tensor]) -> StateDict:
    """The inverse of :func:`legacy_to_current`: the layout the official 2023 code and released checkpoint use."""
    out = {}
    for current_key, value in state.items():
        key = rename_key(current_key, _CURRENT_RENAMES)
        out[key] = value[:, :, 0, 0] if _DECODER_PROJ.match(key) and value.ndim == 4 else value
    return out


_CONVNEXT_KEY = re.compile(r"^(downsample_layers|stages)\.([0-3])\.(.+)$")
_CONVNEXT_PARTS = {"downsample_layers": "rgb_stem", "stages": "rgb_layer"}
_MIT_KEY = re.compile(r"^(patch_embed|block|norm)([1-4])\.(.+)$")
_MIT_PARTS = {"patch_embed": "depth_stem", "block": "depth_layer", "norm": "depth_norm"}


def convnext_to_asymformer(state: Mapping[str, torch.Tensor]) -> StateDict:
    """ImageNet ConvNeXt (``downsample_layers.i``, ``stages.i``) → ``down_sample_{i+1}.rgb_stem/rgb_layer``.

    The classifier (``norm``, ``head``) is dropped.
    """
    out = {}
    for key, value in state.items():
        if match := _CONVNEXT_KEY.match(key):
            out[f"down_sample_{int(match[2]) + 1}.{_CONVNEXT_PARTS[match[1]]}.{match[3]}"] = value
    return out


def mit_to_asymformer(state: Mapping[str, torch.Tensor]) -> StateDict:
    """SegFormer ImageNet MiT (``patch_embed{k}``, ``block{k}``, ``norm{k}``) → ``down_sample_k.depth_*``.

    ``patch_embed1`` is a 3-channel RGB stem and the head classifies ImageNet: both are dropped, so the 1-channel
    depth stem keeps its random initialisation, as in the official code.
    """
    out = {}
    for key, value in state.items():
        match = _MIT_KEY.match(key)
        if match and not (match[1] == "patch_embed" and match[2] == "1"):
            out[f"down_sample_{match[2]}.{_MIT_PARTS[match[1]]}.{match[3]}"] = value
    return out


# --- registered models -----------------------------------------------------------------------------------------

_ARXIV = "arXiv 2309.14065 v1"
_TABLE_I = f"{_ARXIV}, Table I (NYUv2, RTX 3090 fp32 at 480×640)"


def _register_variant(name: str, fusion: FusionDesign, summary: str, paper: PaperFacts) -> None:
    def build(num_classes: int = 40, **kwargs: object) -> AsymFormer:
        return AsymFormer(num_classes, fusion=fusion, model_name=name, **kwargs)

    register_model(name, summary=summary, paper=paper)(build)


_register_variant(
    "asymformer_b0_t",
    LAFS_CMA,
    "AsymFormer B0-T: ConvNeXt-T RGB + MiT-B0 depth, LAFS + CMA fusion, MLP decoder (released model)",
    PaperFacts(
        params_m=33.0,
        gmacs=36.0,
        miou={"nyuv2": 54.1, "nyuv2 ms": 55.3, "nyuv2 arXiv v1": 52.0, "sunrgbd": 49.1},
        fps={"RTX 3090 fp32": 65.0, "RTX 3090 TensorRT fp16": 79.0, "Tesla T4 fp16": 29.4},
        source=f"official README (released weights) and {_ARXIV}",
    ),
)
_register_variant(
    "asymformer_b0_t_cat",
    CONCAT,
    "Table I baseline: concatenation + 1×1 conv/BN fusion (no LAFS, no CMA)",
    PaperFacts(params_m=31.9, miou={"nyuv2 arXiv v1": 47.0}, fps={"RTX 3090 fp32": 77.5}, source=_TABLE_I),
)
_register_variant(
    "asymformer_b0_t_se_mhsa",
    SE_MHSA,
    "Table I baseline: SE channel selection (r=8) + 2-head MHSA on the fused map",
    PaperFacts(params_m=32.6, miou={"nyuv2 arXiv v1": 49.9}, fps={"RTX 3090 fp32": 65.7}, source=_TABLE_I),
)
_register_variant(
    "asymformer_b0_t_lafs",
    LAFS_ONLY,
    "Table I ablation: LAFS feature selection only (no CMA)",
    PaperFacts(params_m=32.4, miou={"nyuv2 arXiv v1": 49.1}, fps={"RTX 3090 fp32": 75.7}, source=_TABLE_I),
)
_register_variant(
    "asymformer_b0_t_cma",
    CMA_ONLY,
    "Table I ablation: concatenation + 1×1 conv/BN + CMA (no LAFS)",
    PaperFacts(params_m=32.5, miou={"nyuv2 arXiv v1": 49.6}, fps={"RTX 3090 fp32": 67.4}, source=_TABLE_I),
)
