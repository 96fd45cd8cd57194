"""ConvNeXt (Liu et al., 2022) with the official key layout, so ImageNet checkpoints load unchanged.

The stage builders are public: AsymFormer interleaves ConvNeXt stages with MiT stages under its own key names
and builds them with :func:`convnext_downsampler` and :func:`convnext_stage` instead of forking the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..folding import fold_layernorm_affine, scale_linear_output
from ..layers import DropPath, LayerNorm2d, drop_path_rates, init_vit_weights, pyramid_feature_info


@dataclass(frozen=True)
class ConvNeXtConfig:
    """Widths and depths of the four ConvNeXt stages."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    drop_path_rate: float = 0.0
    layer_scale_init: float = 1e-6


CONVNEXT_CONFIGS: dict[str, ConvNeXtConfig] = {
    "convnext_t": ConvNeXtConfig(dims=(96, 192, 384, 768), depths=(3, 3, 9, 3)),
    "convnext_s": ConvNeXtConfig(dims=(96, 192, 384, 768), depths=(3, 3, 27, 3)),
    "convnext_b": ConvNeXtConfig(dims=(128, 256, 512, 1024), depths=(3, 3, 27, 3)),
}


class ConvNeXtBlock(nn.Module):
    """7×7 depthwise conv → LN → 4× MLP (exact GELU) → layer scale, with a residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        # Registered first so the state_dict order matches the official checkpoints.
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))

    def fuse(self) -> ConvNeXtBlock:
        """Inference form: the LayerNorm affine folded into ``pwconv1``, the layer scale into ``pwconv2``."""
        self.norm, self.pwconv1 = fold_layernorm_affine(self.norm, self.pwconv1)
        self.pwconv2 = scale_linear_output(self.pwconv2, self.gamma)
        self.gamma = None
        return self


def convnext_downsampler(config: ConvNeXtConfig, stage: int, in_chans: int = 3) -> nn.Sequential:
    """Stage 0: 4×4/4 conv stem + LN; later stages: LN + 2×2/2 conv (the official index order)."""
    if stage == 0:
        return nn.Sequential(
            nn.Conv2d(in_chans, config.dims[0], kernel_size=4, stride=4),
            LayerNorm2d(config.dims[0], eps=1e-6),
        )
    return nn.Sequential(
        LayerNorm2d(config.dims[stage - 1], eps=1e-6),
        nn.Conv2d(config.dims[stage - 1], config.dims[stage], kernel_size=2, stride=2),
    )


def convnext_stage(config: ConvNeXtConfig, stage: int, block_cls: type[ConvNeXtBlock] = ConvNeXtBlock) -> nn.Sequential:
    """The blocks of one stage, with stochastic depth rising linearly over the whole network."""
    rates = drop_path_rates(config.drop_path_rate, config.depths)[stage]
    return nn.Sequential(*(block_cls(config.dims[stage], rate, config.layer_scale_init) for rate in rates))


class ConvNeXt(nn.Module):
    """ConvNeXt feature extractor: four NCHW maps at strides 4, 8, 16, 32 (no final norm or head), announced in
    :attr:`feature_info`; ``block_cls`` replaces the blocks (e.g. a subclass with adapters)."""

    def __init__(
        self, config: ConvNeXtConfig, in_chans: int = 3, block_cls: type[ConvNeXtBlock] = ConvNeXtBlock
    ) -> None:
        super().__init__()
        self.config = config
        self.feature_info = pyramid_feature_info(config.dims)
        self.downsample_layers = nn.ModuleList(convnext_downsampler(config, i, in_chans) for i in range(4))
        self.stages = nn.ModuleList(convnext_stage(config, i, block_cls) for i in range(4))
        self.apply(init_convnext_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
            features.append(x)
        return features


def init_convnext_weights(module: nn.Module) -> None:
    """Official ConvNeXt init: trunc-normal(0.02) for convs and linears, zero bias (layer scale keeps its init)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    else:
        init_vit_weights(module)
