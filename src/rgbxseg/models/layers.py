"""Small building blocks shared by every model (timm and mmcv are unusable with the CPU torch build)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone returns: its channels, its stride relative to the input and a name."""

    channels: int
    stride: int
    name: str


def pyramid_feature_info(channels: tuple[int, ...]) -> tuple[FeatureInfo, ...]:
    """The usual four-stage pyramid: stage k (1-based) at stride 2^(k+1), i.e. 4, 8, 16, 32."""
    return tuple(FeatureInfo(dim, 4 * 2**i, f"stage{i + 1}") for i, dim in enumerate(channels))


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def drop_path_rates(total_rate: float, depths: list[int] | tuple[int, ...]) -> list[list[float]]:
    """Linearly increasing stochastic-depth rates (0 → total_rate over all blocks), split per stage."""
    n = sum(depths)
    rates = [total_rate * i / max(n - 1, 1) for i in range(n)]
    out, start = [], 0
    for depth in depths:
        out.append(rates[start : start + depth])
        start += depth
    return out


class Mlp(nn.Module):
    """Linear → exact GELU → linear on tokens (Swin's MLP, GeminiFusion's relation judger)."""

    def __init__(self, in_features: int, hidden: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW map (ConvNeXt's "channels_first" LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h·w, C) row-major tokens → (B, C, h, w)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) → (B, h·w, C) row-major tokens."""
    return x.flatten(2).transpose(1, 2)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) → (B, heads, N, C/heads); head i holds channels [i·d, (i+1)·d).

    A reshape, not ``unflatten``: the legacy ONNX exporter freezes the batch size of shapes read downstream of
    ``unflatten``, which broke dynamic-batch exports.
    """
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) → (B, N, heads·d): the inverse of :func:`split_heads`."""
    B, heads, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, heads * d)


MATMUL_ATTENTION_SCORES = 2_400_000
"""Scores per head in one block of :func:`token_attention`'s matmul form (about 9 MB in float32). Measured on
AsymFormer's 4800-token CMA in the compiled int8 form (2 CPU cores): blocks of 240, 480, 960 and 1200 queries ran a
480×640 frame in 117, 114, 129 and 121 ms."""


def token_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v over (B, heads, N, d) tensors; values may be narrower than queries and keys.

    With ``compute_dtype=None``: :func:`torch.nn.functional.scaled_dot_product_attention` (values padded to the key
    width for the fused kernels, which need equal widths; the zero channels are sliced off). With a reduced
    ``compute_dtype`` (bf16): q, k and v are cast to it and the attention runs as two batched matmuls per block of
    queries with a float32 softmax in between, the output cast back to q's dtype. That is the fast form for a
    compiled CPU graph without AMX, where the flash kernel's GEMMs run at the float32 rate in either precision
    while oneDNN's bf16 matmuls run 4–5× faster, and unpadded values save the wasted third of the second matmul
    (AsymFormer's int8 frame at 480×640: 151 → 114 ms). Eagerly it is slower than the flash kernel, and it never
    takes dropout: it is for inference forms only.
    """
    if compute_dtype is None:
        # A legacy ONNX trace (plain matmuls, shapes as tensors) needs no padding, and comparing shapes would warn.
        width = v.shape[-1]
        padded = not torch.jit.is_tracing() and width < q.shape[-1]
        if padded:
            v = F.pad(v, (0, q.shape[-1] - width))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
        return out[..., :width] if padded else out
    if dropout_p:
        raise ValueError("the matmul form of token_attention is for inference: it takes no dropout")
    out_dtype = q.dtype
    queries = (q * (q.shape[-1] ** -0.5 if scale is None else scale)).to(compute_dtype)
    keys_t = k.to(compute_dtype).transpose(-1, -2)
    values = v.to(compute_dtype)
    n_queries, n_keys = q.shape[-2], k.shape[-2]
    blocks = max(1, math.ceil(n_queries * n_keys / MATMUL_ATTENTION_SCORES))
    block = math.ceil(n_queries / blocks)
    outputs = []
    for start in range(0, n_queries, block):
        scores = (queries[..., start : start + block, :] @ keys_t).float()
        outputs.append(scores.softmax(-1).to(compute_dtype) @ values)
    return torch.cat(outputs, -2).to(out_dtype)


class ReducedPrecisionAttention(nn.Module):
    """A module whose token attention can run in :func:`token_attention`'s matmul form: inference forms set
    ``attention_dtype`` (see :func:`rgbxseg.models.optimize.optimize_for_inference`); ``None`` (the default, and
    always while training) keeps the exact fused kernel."""

    attention_dtype: torch.dtype | None = None

    def attention_compute_dtype(self) -> torch.dtype | None:
        return None if self.training else self.attention_dtype


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize with align_corners=False, the convention of every decoder here."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _mirrored_linear_weights(source: int, target: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(target, source) weights of 1-D linear interpolation at pixel centres (source coordinate
    ``(i + 0.5) · source / target − 0.5``) with the signal mirrored about its first and last samples."""
    position = (torch.arange(target, dtype=torch.float64) + 0.5) * (source / target) - 0.5
    if source > 1:
        period = 2 * (source - 1)
        position = torch.remainder(position, period)
        position = torch.where(position > source - 1, period - position, position)
    else:
        position = torch.zeros_like(position)
    low = position.floor().clamp(max=max(source - 2, 0)).long()
    fraction = position - low
    weights = torch.zeros(target, source, dtype=torch.float64)
    rows = torch.arange(target)
    weights[rows, low] += 1 - fraction
    weights[rows, (low + 1).clamp(max=source - 1)] += fraction
    return weights.to(dtype=dtype, device=device)


def resize_bilinear_mirrored(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (…, H, W) at pixel centres whose edges are mirrored, not clamped: what
    ``skimage.transform.resize(order=1, mode="reflect")`` does when it enlarges an image (it would also smooth before
    shrinking, which this does not). Differs from :func:`resize` only in the outer half pixel."""
    height, width = x.shape[-2:]
    work = x.to(torch.float64)
    rows = _mirrored_linear_weights(height, size[0], work.dtype, work.device)
    cols = _mirrored_linear_weights(width, size[1], work.dtype, work.device)
    return (rows @ work @ cols.T).to(x.dtype)


def init_vit_weights(module: nn.Module) -> None:
    """SegFormer/ConvNeXt initialisation: trunc-normal(0.02) linears, fan-out normal convs, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class InputShapeError(ValueError):
    """Inputs whose shapes do not fit the model (wrong channels, RGB/X size mismatch, H/W the model cannot take)."""


class InputSizeError(InputShapeError):
    """An input whose H or W the model cannot take; the message names the nearest valid sizes."""


def nearest_multiples(value: int, multiple: int) -> list[int]:
    """The valid sizes around ``value`` (below and above, below omitted when it would be 0)."""
    lower = (value // multiple) * multiple
    upper = lower if lower == value else lower + multiple
    return [v for v in dict.fromkeys((lower, upper)) if v > 0]


def valid_size(side: int, multiple: int, min_size: int = 1) -> int:
    """The smallest size ≥ ``side`` that is a multiple of ``multiple`` and at least ``min_size``."""
    return max(-(-side // multiple), -(-min_size // multiple), 1) * multiple


def check_spatial_size(h: int, w: int, multiple: int, model_name: str, min_size: int = 1) -> None:
    """Raise :class:`InputSizeError` naming the nearest valid sizes when H or W is not a multiple of ``multiple`` or
    is below ``min_size`` (an empty input has none: it is named as such)."""
    if h % multiple == 0 and w % multiple == 0 and min(h, w) >= max(min_size, 1):
        return
    if min(h, w) < 1:
        raise InputSizeError(
            f"{model_name} got an empty input ({h}×{w}, H×W): there are no pixels to segment; check how the image was "
            "read or cropped."
        )
    fix = (
        f"pad it with rgbxseg.models.pad_to_multiple(x, {multiple}{f', min_size={min_size}' if min_size > 1 else ''}) "
        "and crop the logits back (rgbxseg.Segmenter does this for you)"
    )
    if min(h, w) < max(min_size, 1):
        raise InputSizeError(f"{model_name} needs H and W of at least {min_size}, got {h}×{w}; {fix}.")
    options = [f"{hh}×{ww}" for hh in nearest_multiples(h, multiple) for ww in nearest_multiples(w, multiple)]
    raise InputSizeError(
        f"{model_name} needs H and W to be multiples of {multiple}, got {h}×{w}. "
        f"Nearest valid sizes: {', '.join(options)}. Resize the input to one of them, or {fix}."
    )


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0, min_size: int = 1) -> torch.Tensor:
    """Pad an NCHW tensor at the bottom/right so that H and W become multiples of ``multiple`` (and ≥ ``min_size``).

    Crop the model output back with ``out[..., :h, :w]``; padding bottom/right keeps pixel (0, 0) aligned.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = valid_size(h, multiple, min_size) - h, valid_size(w, multiple, min_size) - w
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=value)


def is_tracing() -> bool:
    """True while exporting or compiling, when Python-side shape checks must not add guards."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
