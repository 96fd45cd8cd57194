"""Exact algebraic folds of normalisation layers into neighbouring linear maps, for inference.

In eval mode a BatchNorm is the per-channel affine map ``y = s ⊙ x + t`` (s = γ/√(var + ε), t = β − s·mean), and a
LayerNorm's own affine part is ``γ ⊙ x̂ + β``; either composes with an adjacent convolution or linear layer into a
single layer with new weights and bias. The folds return new layers and leave their inputs untouched.
"""

from __future__ import annotations

import torch
from torch import nn


def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - scale * bn.running_mean


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    layer.weight.data.copy_(weight)
    layer.bias.data.copy_(bias)
    return layer


@torch.no_grad()
def fold_bn_after_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``bn(conv(x))`` as one convolution with a bias."""
    scale, shift = batchnorm_affine(bn)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    fused.bias.copy_(bias * scale + shift)
    return fused


@torch.no_grad()
def fold_bn_before_linear(bn: nn.BatchNorm2d, linear: nn.Linear) -> nn.Linear:
    """``linear(bn(x))`` (BN over the linear layer's input features) as one linear layer."""
    scale, shift = batchnorm_affine(bn)
    return _linear(linear.weight * scale[None, :], linear.weight @ shift + linear.bias)


@torch.no_grad()
def fold_bn_after_linear(linear: nn.Linear, bn: nn.BatchNorm2d) -> nn.Linear:
    """``bn(linear(x))`` (BN over the linear layer's output features) as one linear layer."""
    scale, shift = batchnorm_affine(bn)
    return _linear(linear.weight * scale[:, None], linear.bias * scale + shift)


@torch.no_grad()
def fold_layernorm_affine(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[nn.LayerNorm, nn.Linear]:
    """``linear(norm(x))`` as an affine-free LayerNorm followed by one linear layer."""
    plain = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
    return plain, _linear(linear.weight * norm.weight[None, :], linear.weight @ norm.bias + linear.bias)


@torch.no_grad()
def scale_linear_output(linear: nn.Linear, scale: torch.Tensor) -> nn.Linear:
    """``scale ⊙ linear(x)`` (e.g. a layer-scale parameter) as one linear layer."""
    return _linear(linear.weight * scale[:, None], linear.bias * scale)


def fuse_for_inference(module: nn.Module) -> nn.Module:
    """Replace, bottom-up, every sub-module that defines ``fuse()`` by what it returns; returns the new root.

    ``fuse()`` must return an eval-mode module computing the same function; call this on an eval-mode copy.
    """
    for name, child in list(module.named_children()):
        setattr(module, name, fuse_for_inference(child))
    fuse = getattr(module, "fuse", None)
    return fuse() if callable(fuse) else module
