"""Paired transforms on raw samples (before normalisation): every image entry of a sample moves together.

A raw sample is a dict of numpy arrays: ``rgb`` uint8 H×W×3, ``depth`` uint16 mm H×W, further modalities
H×W[×C], ``label`` H×W, plus non-array entries (``id``) that pass through untouched. Labels and metric depth are
resized with nearest neighbour, so no class id or depth value is invented between two regions (the official
AsymFormer code bilinearly interpolates labels by mistake, see asymformer.md §18); images use bilinear.
Crop padding is 0 everywhere: black RGB, invalid depth, void label.

Randomness and reproducibility: for every sample, :class:`TrainAugmentation` draws one integer from torch's global
generator and seeds a ``numpy.random.Generator`` with it (and its own ``seed``), the way torchvision's transforms
use ``torch.rand``. So ``torch.manual_seed(s)`` makes a run reproducible, and in DataLoader workers, whose torch
generators PyTorch seeds with ``base_seed + worker_id`` (``base_seed`` drawn from the DataLoader's ``generator``
every epoch), each worker draws a distinct stream and epochs differ, with no ``worker_init_fn``. Which worker loads
a sample depends on ``num_workers``, so results are reproducible for a fixed ``num_workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

NEAREST_KEYS = frozenset({"label", "depth", "depth_raw", "depth_minmax"})
"""Sample entries resized with nearest neighbour: labels and depth."""


def _image_keys(sample: Sample) -> list[str]:
    return [key for key, value in sample.items() if isinstance(value, np.ndarray) and value.ndim >= 2]


def resize(array: np.ndarray, size: tuple[int, int], *, nearest: bool) -> np.ndarray:
    """Resize H×W[×C] to ``size`` = (height, width); nearest samples pixel centres, bilinear keeps the dtype."""
    height, width = array.shape[:2]
    if (height, width) == tuple(size):
        return array
    if nearest:
        rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(np.int64), height - 1)
        cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(np.int64), width - 1)
        return array[rows[:, None], cols[None, :]]
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    tensor = tensor[None, None] if array.ndim == 2 else tensor.permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)[0]
    result = (resized[0] if array.ndim == 2 else resized.permute(1, 2, 0)).numpy()
    if np.issubdtype(array.dtype, np.integer):
        limits = np.iinfo(array.dtype)
        result = np.clip(np.rint(result), limits.min, limits.max)
    return result.astype(array.dtype)


def crop_or_pad(array: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The ``height``×``width`` window at (top, left); where the array ends, the window is filled with 0."""
    window = np.zeros((height, width, *array.shape[2:]), dtype=array.dtype)
    piece = array[top : top + height, left : left + width]
    window[: piece.shape[0], : piece.shape[1]] = piece
    return window


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] (…×3) → HSV in [0, 1] (hue as a fraction of a turn)."""
    maxc, minc = rgb.max(axis=-1), rgb.min(axis=-1)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)
    red, green, blue = (rgb[..., i] for i in range(3))
    hue = np.where(
        maxc == red,
        (green - blue) / safe,
        np.where(maxc == green, 2.0 + (blue - red) / safe, 4.0 + (red - green) / safe),
    )
    hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0)
    saturation = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([hue, saturation, maxc], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(hue * 6.0)
    fraction = hue * 6.0 - sector
    p, q, t = value * (1 - saturation), value * (1 - saturation * fraction), value * (1 - saturation * (1 - fraction))
    sector = sector.astype(np.int64) % 6
    channels = [(value, q, p, p, t, value), (t, value, value, q, p, p), (p, p, t, value, value, q)]  # per sector
    return np.stack([np.choose(sector, options) for options in channels], axis=-1)


def jitter_hsv(rgb: np.ndarray, hue_factor: float, saturation_factor: float, value_offset: float) -> np.ndarray:
    """The paper's colour jitter: hue × factor, saturation × factor, value + offset (on the 0–255 scale), clipped."""
    hsv = rgb_to_hsv(rgb.astype(np.float32) / 255.0)
    hsv[..., 0] = np.clip(hsv[..., 0] * hue_factor, 0.0, 1.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation_factor, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + value_offset / 255.0, 0.0, 1.0)
    return np.clip(np.rint(hsv_to_rgb(hsv) * 255.0), 0, 255).astype(np.uint8)


GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def jitter_colour(rgb: np.ndarray, factors: dict[str, float], order: Iterable[str]) -> np.ndarray:
    """torchvision's colour jitter on 8-bit RGB: brightness scales the image, contrast blends it with its mean grey,
    saturation with its grey image, each clipped to [0, 1], in the given order."""
    image = rgb.astype(np.float32) / 255.0
    for name in order:
        factor = factors[name]
        grey = image @ GREY_WEIGHTS
        blend = {"brightness": 0.0, "contrast": grey.mean(), "saturation": grey[..., None]}[name]
        image = np.clip(image * factor + blend * (1.0 - factor), 0.0, 1.0)
    return np.rint(image * 255.0).astype(np.uint8)


def gaussian_blur(rgb: np.ndarray, sigma: float, size: int = 3) -> np.ndarray:
    """A ``size``×``size`` Gaussian blur with mirrored edges, on an 8-bit image."""
    offsets = np.arange(size, dtype=np.float32) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    radius = size // 2
    image = np.pad(rgb.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k * image[i : i + rgb.shape[0]] for i, k in enumerate(kernel))
    blurred = sum(k * rows[:, i : i + rgb.shape[1]] for i, k in enumerate(kernel))
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


class Resize:
    """Resize every image entry to a fixed (height, width), e.g. SUN RGB-D's evaluation at 480×640."""

    def __init__(self, size: tuple[int, int], nearest_keys: Iterable[str] = NEAREST_KEYS) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.nearest_keys = frozenset(nearest_keys)

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        for key in _image_keys(sample):
            out[key] = resize(sample[key], self.size, nearest=key in self.nearest_keys)
        return out


class TrainAugmentation:
    """The papers' training augmentation with nearest-neighbour labels and depth.

    Random scale s ~ U(scale_range) to (round(s·H), round(s·W)); random crop to ``crop_size`` (padding with 0 =
    void/invalid where the scaled sample is smaller); horizontal flip with probability ``flip_p``; HSV jitter on
    RGB only (AsymFormer: hue × U(hue_range), saturation × U(saturation_range), value + U(value_range) on 0–255).
    GeminiFusion's photometric steps come first, on the whole RGB image, as in its code: with probability
    ``colour_jitter_p`` brightness, contrast and saturation (in that order) × U(1 ± ``colour_jitter``), and with
    probability ``blur_p`` a 3×3 Gaussian blur of σ ``blur_sigma``.
    Randomness comes from torch's global generator (see the module docstring); ``seed`` varies it further. The
    photometric steps draw only when enabled, so recipes without them keep their random streams.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (480, 640),
        scale_range: tuple[float, float] = (1.0, 2.0),
        flip_p: float = 0.5,
        hsv: bool = True,
        *,
        hue_range: tuple[float, float] = (0.9, 1.1),
        saturation_range: tuple[float, float] = (0.9, 1.1),
        value_range: tuple[float, float] = (-25.0, 25.0),
        colour_jitter_p: float = 0.0,
        colour_jitter: float = 0.5,
        blur_p: float = 0.0,
        blur_sigma: float = 0.8,
        seed: int | None = None,
        nearest_keys: Iterable[str] = NEAREST_KEYS,
    ) -> None:
        self.colour_jitter_p, self.colour_jitter = colour_jitter_p, colour_jitter
        self.blur_p, self.blur_sigma = blur_p, blur_sigma
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = scale_range
        self.flip_p = flip_p
        self.hsv = hsv
        self.hue_range, self.saturation_range, self.value_range = hue_range, saturation_range, value_range
        self.seed = seed
        self.nearest_keys = frozenset(nearest_keys)

    def _generator(self) -> np.random.Generator:
        """This sample's random stream, seeded by one draw from torch's global generator (see the module notes)."""
        draw = int(torch.randint(0, 2**62, (1,)).item())
        return np.random.default_rng([draw] if self.seed is None else [self.seed, draw])

    def _photometric(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.colour_jitter_p and rng.random() < self.colour_jitter_p:
            names = ("brightness", "contrast", "saturation")
            factors = {name: rng.uniform(1 - self.colour_jitter, 1 + self.colour_jitter) for name in names}
            rgb = jitter_colour(rgb, factors, names)
        if self.blur_p and rng.random() < self.blur_p:
            rgb = gaussian_blur(rgb, self.blur_sigma)
        return rgb

    def __call__(self, sample: Sample) -> Sample:
        rng = self._generator()
        keys = _image_keys(sample)
        height, width = sample["rgb"].shape[:2]
        scale = rng.uniform(*self.scale_range)
        size = (int(scale * height + 0.5), int(scale * width + 0.5))
        crop_h, crop_w = self.crop_size
        top = int(rng.integers(0, max(size[0] - crop_h, 0) + 1))
        left = int(rng.integers(0, max(size[1] - crop_w, 0) + 1))
        flip = rng.random() < self.flip_p
        hsv = (
            (rng.uniform(*self.hue_range), rng.uniform(*self.saturation_range), rng.uniform(*self.value_range))
            if self.hsv
            else None
        )
        out = dict(sample)
        out["rgb"] = self._photometric(sample["rgb"], rng)
        for key in keys:
            array = crop_or_pad(resize(out[key], size, nearest=key in self.nearest_keys), top, left, crop_h, crop_w)
            out[key] = np.ascontiguousarray(array[:, ::-1]) if flip else array
        if hsv is not None:
            out["rgb"] = jitter_hsv(out["rgb"], *hsv)
        return out
