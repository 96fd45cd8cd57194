"""DPLNet (Dong et al., IROS 2024): a frozen, ADE20K-finetuned SegFormer adapted to RGB-X by two prompt modules.

* **MPG** (multimodal prompt generator): a trainable X patch embedding per stage, chained over the previous stage's
  prompt map, and :class:`PromptGenerator` (the official ``ADA``), a linear low-rank (÷4) mix of the X embedding and
  the frozen RGB tokens, added to the RGB tokens before the stage's blocks.
* **MFA** (multimodal feature adapter): one learnable 30×32 prompt shared by every block; each frozen attention layer
  gains a low-rank (÷32) attention from its queries to the prompt (:class:`PromptAttention`), added after its
  projection, with the prompt normalised per block (:class:`PromptBlock`).
* A fresh SegFormer head (embed 768, 150 ADE channels, Dropout2d 0.5) and a 1×1 class map 150 → K. The official NYUv2
  model has K = 41 outputs, output 0 being "unlabelled" (``void_logit``): it is trained with class weight 0 in the
  ENet-weighted loss, so void pixels never count and the void logit only competes in the softmax. rgbxseg feeds it
  the same targets (label c ↦ channel c, void ignored), and its predictions read channels 1..40 only.

Built on the shared MiT through its hooks (``attention_cls``, ``block_cls``, the per-block ``context``, the stage
builders): the encoder here *is* :class:`~rgbxseg.models.backbones.mit.MixTransformer`, with the official keys
(``rgb.block1.0.attn.q_prompt…``), so the official checkpoints load without renaming the backbone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs import IMAGENET_RGB, ChannelNormalization, InputSpec, ModalityInput
from .backbones.mit import (
    MIT_CONFIGS,
    EfficientSelfAttention,
    MiTBlock,
    MixTransformer,
    mit_patch_embed,
    run_mit_stage,
)
from .base import SegmentationModel
from .decoders import MLPDecoder, segformer_head_to_current
from .layers import init_vit_weights, merge_heads, split_heads, tokens_to_map
from .losses import VOID
from .pretrained import BackboneMapping, PretrainedSource, StateDict
from .registry import PaperFacts, register_input_spec, register_model

PROMPT_TOKENS = 30
PROMPT_DIM = 32
"""The shared prompt: 30 tokens of width 32."""
PROMPT_RANK_DIVISOR = 32
"""The prompt attention works at width d/32 (head width 2 at every MiT-B1…B5 stage)."""
GENERATOR_RANK_DIVISOR = 4
"""The prompt generator mixes at width d/4."""
ADE_CLASSES = 150
HEAD_EMBED = 768

DPLNET_X_NORMALIZATION = ChannelNormalization(255.0, (0.449,), (0.226,))
"""The official X normalisation: 8-bit values / 255, then mean 0.449, std 0.226 on each of the 3 tiled channels."""

DPLNET_NYUV2 = register_input_spec(
    InputSpec(
        "dplnet_nyuv2",
        IMAGENET_RGB,
        ModalityInput("depth_minmax", "minmax_8bit", 3, DPLNET_X_NORMALIZATION),
        min_size=32,
        description="ImageNet RGB; the 8-bit depth PNG tiled to 3 channels, /255, mean 0.449, std 0.226",
    )
)
"""The official NYUv2 input. Its depth PNGs are 8-bit (the loader converts them to RGB), with an encoding the release
does not document; the 8-bit depth of NYUv2 packages is per-image min-max (DFormer, CMX), which rgbxseg keeps as the
``depth_minmax`` modality. An assumption, not a documented fact."""

DPLNET_DEPTH_MM = register_input_spec(
    replace(
        DPLNET_NYUV2,
        name="dplnet_depth_mm",
        x=ModalityInput("depth", "metric_mm", 3, ChannelNormalization(10000.0, (0.449,), (0.226,))),
        description="ImageNet RGB; metric depth, 0–10 m to 0–1, mean 0.449, std 0.226, tiled to 3 channels",
    )
)
"""For datasets with metric depth (``rgbxseg prepare nyuv2`` from the ``.mat``): NYUv2's 0–10 m range mapped onto the
8-bit range, then the official statistics. Train with it; the released weights expect :data:`DPLNET_NYUV2`."""

DPLNET_THERMAL = register_input_spec(
    replace(
        DPLNET_NYUV2,
        name="dplnet_thermal",
        x=ModalityInput("thermal", "thermal_8bit", 3, DPLNET_X_NORMALIZATION),
        description="ImageNet RGB; the 8-bit thermal image tiled to 3 channels, /255, mean 0.449, std 0.226",
    )
)
"""RGB-T (MFNet, PST900): the paper feeds thermal through the depth pipeline (its RGB-T code is unreleased)."""

ENET_NYUV2_WEIGHTS = (
    0.0, 5.17995767, 12.47921102, 13.79726557, 18.47574439, 19.97749822, 21.10995738, 25.86733191, 27.50483598,
    27.35425244, 25.12185149, 27.04617447, 30.0332327, 29.30994935, 34.72009825, 33.66136128, 34.28715586,
    32.69376342, 33.71574286, 37.0865665, 39.70731054, 38.60681717, 36.37894266, 40.12142316, 39.71753044,
    39.27177794, 43.44761984, 42.96761184, 43.98874667, 43.43148409, 43.29897719, 45.88895515, 44.31838311,
    44.18898992, 42.93723439, 44.61617778, 47.12778303, 46.21331253, 27.69259756, 25.89111664, 15.65148615,
)  # fmt: skip
"""The official NYUv2 class weights (ENet's 1 / ln(1.02 + frequency)) over the 41 outputs; the void weight 0."""

CLASS_WEIGHTS: dict[str, tuple[float, ...]] = {"enet_nyuv2": ENET_NYUV2_WEIGHTS}
"""Named per-output class weights for :class:`DPLNet`'s loss (``model.kwargs.class_weights`` in a config)."""


class PromptAttention(EfficientSelfAttention):
    """Frozen efficient attention plus a trainable low-rank attention from its queries to the shared prompt (MFA).

    ``context`` is the prompt (B, 30, 32) after this block's ``norm_prompt``. ``kv_prompt`` lifts it to width 2d,
    split like the frozen ``kv`` (K first); ``q_prompt``, ``k_prompt`` and ``v_prompt`` project the frozen unscaled
    queries (heads merged) and the prompt keys/values to d/32, attended over the frozen branch's heads with its scale
    (d/h)^−0.5; ``proj_prompt`` returns to width d, added after the frozen projection.
    """

    def __init__(self, dim: int, num_heads: int, *args: Any) -> None:
        super().__init__(dim, num_heads, *args)
        rank = dim // PROMPT_RANK_DIVISOR
        if rank == 0 or rank % num_heads:
            raise ValueError(f"prompt attention needs dim/{PROMPT_RANK_DIVISOR} = {rank} divisible by {num_heads}")
        qkv_bias = self.q.bias is not None
        self.q_prompt = nn.Linear(dim, rank)
        self.kv_prompt = nn.Linear(PROMPT_DIM, 2 * dim, bias=qkv_bias)
        self.k_prompt = nn.Linear(dim, rank, bias=qkv_bias)
        self.v_prompt = nn.Linear(dim, rank, bias=qkv_bias)
        self.proj_prompt = nn.Linear(rank, dim)
        self.scale = (dim // num_heads) ** -0.5

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        q, out = self.attend(x, h, w)
        prompt_k, prompt_v = self.kv_prompt(context).chunk(2, dim=-1)
        heads = self.num_heads
        attended = F.scaled_dot_product_attention(
            split_heads(self.q_prompt(merge_heads(q)), heads),
            split_heads(self.k_prompt(prompt_k), heads),
            split_heads(self.v_prompt(prompt_v), heads),
            scale=self.scale,
        )
        return self.proj(out) + self.proj_prompt(merge_heads(attended))


class PromptBlock(MiTBlock):
    """MiT block whose attention also reads the shared prompt, normalised by the block's own ``norm_prompt``."""

    def __init__(self, dim: int, *args: Any) -> None:
        super().__init__(dim, *args)
        self.norm_prompt = nn.LayerNorm(PROMPT_DIM, eps=self.norm1.eps)

    def forward(self, x: torch.Tensor, h: int, w: int, context: Any = None) -> torch.Tensor:
        return super().forward(x, h, w, self.norm_prompt(context))


class PromptGenerator(nn.Module):
    """The official ``ADA``: P = U(A·e + B·x), with e the X embedding, x the frozen RGB tokens, A and B linear maps
    to d/4 and U back to d — no activation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = dim // GENERATOR_RANK_DIVISOR
        self.conv0_0 = nn.Linear(dim, hidden)  # the X embedding
        self.conv0_1 = nn.Linear(dim, hidden)  # the RGB tokens
        self.conv = nn.Linear(hidden, dim)

    def forward(self, x_embedding: torch.Tensor, rgb_tokens: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv0_0(x_embedding) + self.conv0_1(rgb_tokens))


def _frozen_mit_modules() -> tuple[str, ...]:
    """Every pretrained MiT module (the official rule: every ``rgb`` parameter whose name lacks "prompt")."""
    return (
        r"rgb\.patch_embed\d",
        r"rgb\.norm\d",
        r"rgb\.block\d\.\d+\.(norm1|norm2|mlp)",
        r"rgb\.block\d\.\d+\.attn\.(q|kv|proj|sr|norm)",
    )


class DPLNet(SegmentationModel):
    """``model(rgb, x)`` → logits (B, num_classes, H, W), output 0 = void; ``forward_decoder`` → the same at ¼.

    Args:
        num_classes: outputs including the void channel (the official NYUv2 model: 41 = void + 40 classes).
        backbone: ``mit_b0`` … ``mit_b5`` (the paper: ``mit_b5``, from the ADE20K SegFormer).
        drop_path: stochastic depth over the frozen blocks (they run it while training, as the official code does).
        class_weights: per-output weights of the cross-entropy: a name of :data:`CLASS_WEIGHTS` (``enet_nyuv2``, the
            official recipe) or a sequence of ``num_classes`` values; None = unweighted.
        model_name: the registered name.
    """

    classifier_key = "conv1.weight"
    void_logit = True
    frozen = _frozen_mit_modules()

    def __init__(
        self,
        num_classes: int = 41,
        backbone: str = "mit_b5",
        drop_path: float = 0.1,
        class_weights: str | Sequence[float] | None = None,
        model_name: str = "dplnet_mit_b5",
    ) -> None:
        super().__init__(model_name, num_classes)
        if num_classes < 2:
            raise ValueError(f"{model_name}: num_classes counts the void output too, so at least 2; got {num_classes}")
        self.backbone = backbone
        self.input_spec = DPLNET_NYUV2
        config = replace(MIT_CONFIGS[backbone], drop_path_rate=drop_path)
        dims = config.embed_dims
        self.learnable_prompt = nn.Parameter(torch.randn(1, PROMPT_TOKENS, PROMPT_DIM))
        self.rgb = MixTransformer(config, attention_cls=PromptAttention, block_cls=PromptBlock)
        self.head = MLPDecoder(dims, ADE_CLASSES, embed_dim=HEAD_EMBED, dropout=0.5, fuse_bias=False)
        for i in range(4):
            embed = mit_patch_embed(config, i, 3 if i == 0 else dims[i - 1])
            embed.apply(init_vit_weights)
            self.add_module(f"patch_embed{i + 1}", embed)
        for i in range(4):
            self.add_module(f"ada{i + 1}", PromptGenerator(dims[i]))
        self.conv1 = nn.Conv2d(ADE_CLASSES, num_classes, kernel_size=1)
        weights = CLASS_WEIGHTS[class_weights] if isinstance(class_weights, str) else class_weights
        if weights is not None and len(weights) != num_classes:
            raise ValueError(f"{model_name}: {len(weights)} class weights for {num_classes} outputs")
        self.register_buffer(
            "class_weights", None if weights is None else torch.tensor(weights, dtype=torch.float32), persistent=False
        )

    def encode(self, rgb: torch.Tensor, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The four frozen-stage outputs after their norms, and the four prompts P_s as maps."""
        # A copy per sample, not an expand: a view of a parameter made without autograd (inference) requires grad but
        # has no grad_fn, which module hooks such as the MAC counter's cannot handle. 30 × 32 values: free.
        prompt = self.learnable_prompt.repeat(rgb.shape[0], 1, 1)
        features, prompts = [], []
        rgb_map, x_map = rgb, x
        for i in range(4):
            patch_embed, blocks, norm = self.rgb.stage(i)
            tokens, h, w = patch_embed(rgb_map)
            x_embedding, _, _ = getattr(self, f"patch_embed{i + 1}")(x_map)
            generated = getattr(self, f"ada{i + 1}")(x_embedding, tokens)
            rgb_map = run_mit_stage(blocks, norm, tokens + generated, h, w, prompt)
            x_map = tokens_to_map(generated, h, w)
            features.append(rgb_map)
            prompts.append(x_map)
        return features, prompts

    def forward_head(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The 150-channel SegFormer head output at ¼, before the class map."""
        return self.head(self.encode(rgb, x)[0])

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # The class map at ¼, then the upsampling in forward: both linear, so equal to the official order (upsample
        # the 150 channels, then map) up to rounding, at 1/16 of the cost.
        return self.conv1(self.forward_head(rgb, x))

    def loss(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of the upsampled logits over all outputs, void pixels ignored, weighted per class if asked
        (the official loss: its void weight 0 ignores the void pixels in the same way)."""
        logits = F.interpolate(outputs["out"], size=target.shape[-2:], mode="bilinear", align_corners=False)
        target = self.logit_targets(target)
        weights = self.class_weights
        if weights is None:
            total = F.cross_entropy(logits.float(), target, ignore_index=VOID, reduction="sum")
            return {"ce": total / (target >= 0).sum().clamp(min=1)}
        total = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=VOID, reduction="sum")
        return {"ce": total / weights[target[target >= 0]].sum().clamp(min=torch.finfo(torch.float32).tiny)}

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        return released_to_current(state)

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        return {"rgb": BackboneMapping(ade_segformer_to_current, _ADE_COVERS, ADE_SEGFORMER[self.backbone])}


# --- checkpoints -------------------------------------------------------------------------------------------------

_UNUSED_ADE_HEAD = (
    [f"rgb.head.linear_c{i}.proj.{p}" for i in range(1, 5) for p in ("weight", "bias")]
    + ["rgb.head.linear_fuse.conv.weight"]
    + [f"rgb.head.linear_fuse.bn.{b}" for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    + ["rgb.head.linear_pred.weight", "rgb.head.linear_pred.bias"]
)
"""The 16 keys of the ADE20K head that the official model carries under ``rgb.head`` but never runs."""


def released_to_current(state: Mapping[str, torch.Tensor]) -> StateDict:
    """The official checkpoint (``torch.save(model.state_dict())``) → ours: the unused ADE head dropped (exactly its
    16 keys), the new head in :class:`MLPDecoder`'s names. The backbone, prompts and adapters keep their keys."""
    unused = set(_UNUSED_ADE_HEAD)
    return segformer_head_to_current({k: v for k, v in state.items() if k not in unused}, "head.")


_ADE_COVERS = re.compile(r"^rgb\.(?!.*prompt)")
"""The frozen MiT: every ``rgb`` key without "prompt" must come from the ADE20K checkpoint."""


def ade_segformer_to_current(state: Mapping[str, torch.Tensor]) -> StateDict:
    """An ADE20K SegFormer checkpoint (mmseg: ``backbone.`` and ``decode_head.``) → the frozen encoder ``rgb``. Its
    ADE head initialises nothing: the official loader puts it under ``rgb.head``, which no computation uses, and the
    new head starts random."""
    return {"rgb." + k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def _ade_source(index: int) -> PretrainedSource:
    size = 640 if index == 5 else 512
    return PretrainedSource(
        file_name=f"segformer.b{index}.{size}x{size}.ade.160k.pth",
        publisher="NVlabs/SegFormer release, ADE20K 160k schedule (weights under 'state_dict')",
        covers=f"the frozen MiT-B{index} encoder (its ADE head is unused); prompts, adapters and the head stay random",
        trained_on=IMAGENET_RGB,
        frozen=True,
    )


ADE_SEGFORMER = {f"mit_b{i}": _ade_source(i) for i in range(6)}


# --- registered models -------------------------------------------------------------------------------------------

_README = "official README (NYUv2 SS / MS with flip, SUN RGB-D, MFNet, PST900); total parameters 88.58 M"
_VARIANTS = {
    # name: (backbone, paper facts)
    "dplnet_mit_b5": (
        "mit_b5",
        PaperFacts(
            params_m=88.58,
            miou={"nyuv2": 58.3, "nyuv2 ms": 59.3, "sunrgbd": 52.1, "sunrgbd ms": 52.8, "mfnet": 59.3, "pst900": 86.7},
            source=_README,
        ),
    ),
    "dplnet_mit_b2": ("mit_b2", PaperFacts(source="a smaller variant of the paper's method (not in the paper)")),
    "dplnet_mit_b0": ("mit_b0", PaperFacts(source="a smaller variant of the paper's method (not in the paper)")),
}


def _register(name: str, backbone: str, paper: PaperFacts) -> None:
    def build(num_classes: int = 41, **kwargs: Any) -> DPLNet:
        return DPLNet(num_classes, backbone=backbone, model_name=name, **kwargs)

    words = backbone.replace("mit_b", "MiT-B")
    summary = f"DPLNet {words}: a frozen ADE20K SegFormer with prompt generation and prompt attention (RGB-X)"
    register_model(name, summary=summary, paper=paper, default_num_classes=41, void_logit=True)(build)


for _name, (_backbone, _paper) in _VARIANTS.items():
    _register(_name, _backbone, _paper)
