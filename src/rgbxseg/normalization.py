"""Input normalisation declared by every set of weights (the official AsymFormer scripts disagree on it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NYUV2_RGB_MEAN = (0.4850042694973687, 0.41627756261047333, 0.3981809741523051)
NYUV2_RGB_STD = (0.26415541082494515, 0.2728415392982039, 0.2831175140191598)
NYUV2_DEPTH_MEAN_M = 2.8424503515351494
NYUV2_DEPTH_STD_M = 0.9932836506164299


@dataclass(frozen=True)
class Normalization:
    """How raw frames become network inputs.

    RGB: uint8 → ``/255`` → ``(x − rgb_mean) / rgb_std`` per channel (R, G, B order).
    Depth: raw values in ``depth_unit`` (0 = invalid) → ``/ depth_divisor`` → ``(d − depth_mean) / depth_std``.
    Invalid pixels are not masked: they become ``−depth_mean / depth_std`` as in the released training code.
    The arithmetic is float32 in exactly this order, which reproduces the official inputs bit for bit.
    """

    name: str
    rgb_mean: tuple[float, float, float] = IMAGENET_MEAN
    rgb_std: tuple[float, float, float] = IMAGENET_STD
    depth_unit: str = "mm"
    depth_divisor: float = 1000.0
    depth_mean: float = NYUV2_DEPTH_MEAN_M
    depth_std: float = NYUV2_DEPTH_STD_M

    def normalize_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """(…, 3, H, W) uint8 (or float on the 0..255 scale) → normalised float32."""
        mean = torch.tensor(self.rgb_mean, dtype=torch.float32, device=rgb.device)[:, None, None]
        std = torch.tensor(self.rgb_std, dtype=torch.float32, device=rgb.device)[:, None, None]
        return (rgb.to(torch.float32) / 255 - mean) / std

    def normalize_depth(self, depth_mm: torch.Tensor) -> torch.Tensor:
        """(…, 1, H, W) depth in ``depth_unit`` → normalised float32."""
        return (depth_mm.to(torch.float32) / self.depth_divisor - self.depth_mean) / self.depth_std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        fields = dict(data)
        for key in ("rgb_mean", "rgb_std"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)


ASYMFORMER_TRAIN = Normalization(name="asymformer_train")
"""The AsymFormer training convention (ImageNet RGB statistics, depth metres with NYUv2 statistics)."""

ASYMFORMER_NYUV2_EVAL = Normalization(name="asymformer_nyuv2_eval", rgb_mean=NYUV2_RGB_MEAN, rgb_std=NYUV2_RGB_STD)
"""The convention of the official single-scale evaluation script (NYUv2 RGB statistics), behind the 54.1 mIoU."""

NORMALIZATIONS: dict[str, Normalization] = {n.name: n for n in (ASYMFORMER_TRAIN, ASYMFORMER_NYUV2_EVAL)}
