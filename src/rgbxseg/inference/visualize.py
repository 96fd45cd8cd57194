"""Pictures of predictions with numpy + Pillow only: palette label PNGs, overlays, depth colour maps, panels and
their legends."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..classes import ClassSet
from ..io import atomic_write_path

_TURBO_COEFFICIENTS = np.array(
    [
        (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
        (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
        (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
    ]
)
"""Google's polynomial fit of the Turbo colour map (R, G, B rows; powers 0..5): perceptually ordered, no matplotlib."""


def _turbo_lut() -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    rgb = _TURBO_COEFFICIENTS @ np.vander(x, 6, increasing=True).T
    return (np.clip(rgb.T, 0.0, 1.0) * 255).round().astype(np.uint8)


TURBO = _turbo_lut()
"""(256, 3) uint8 lookup table, near = dark blue, far = dark red."""


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) dataset labels → (H, W, 3) uint8 colours; ``palette`` is (K + 1, 3) with void first."""
    palette = np.asarray(palette, dtype=np.uint8)
    if labels.size and labels.max() >= len(palette):
        raise ValueError(f"label {labels.max()} has no colour: the palette has {len(palette)} entries")
    return palette[labels]


def label_image(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """A palette (mode ``P``) image whose pixel values are the dataset labels; 16-bit greyscale past 256 labels."""
    palette = np.asarray(palette, dtype=np.uint8)
    if len(palette) > 256:
        return Image.fromarray(labels.astype(np.uint16))
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(palette.reshape(-1).tolist())
    return image


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The label colours alpha-blended over the RGB image (``alpha`` = weight of the colours)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colorize_labels(labels, palette).astype(np.float32)
    return blended.round().astype(np.uint8)


def depth_colormap(depth_mm: np.ndarray, max_depth_mm: float | None = None) -> np.ndarray:
    """(H, W) depth → (H, W, 3) Turbo colours, invalid (0) pixels black.

    The range is 0 .. ``max_depth_mm``, by default the 99th percentile of the valid depth, so one far outlier does
    not flatten the picture.
    """
    valid = depth_mm > 0
    image = np.zeros((*depth_mm.shape, 3), dtype=np.uint8)
    if not valid.any():
        return image
    top = max_depth_mm or float(np.percentile(depth_mm[valid], 99))
    index = np.clip(depth_mm / max(top, 1e-6) * 255, 0, 255).astype(np.uint8)
    image[valid] = TURBO[index[valid]]
    return image


def modality_picture(values: np.ndarray) -> np.ndarray:
    """A stored modality image (H, W, C) as an (H, W, 3) uint8 picture: 8-bit 3-channel images (HHA) as they are,
    one channel (thermal) as grey stretched from its 1st to its 99th percentile."""
    if values.ndim == 3 and values.shape[2] == 3 and values.dtype == np.uint8:
        return values
    grey = values.reshape(values.shape[0], values.shape[1], -1)[:, :, 0].astype(np.float32)
    low, high = np.percentile(grey, (1, 99)) if grey.size else (0.0, 1.0)
    scaled = np.clip((grey - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return np.repeat(scaled[:, :, None], 3, axis=2)


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Equal-height (H, W, 3) images in a row, separated by white gaps."""
    height = images[0].shape[0]
    if any(image.shape[0] != height for image in images):
        raise ValueError(f"panel images differ in height: {[image.shape[0] for image in images]}")
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts = [part for image in images for part in (image, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def prediction_panel(rgb: np.ndarray, x_picture: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB | second modality (e.g. :func:`depth_colormap`) | prediction colours, one row."""
    return side_by_side(rgb, x_picture, colorize_labels(labels, palette))


def legend_entries(labels: np.ndarray, class_set: ClassSet) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(label, name, colour) of every label present in ``labels``, in label order; void (0) is named "void"."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(class_set.palette))
    if len(counts) > len(class_set.palette):
        raise ValueError(
            f"label {len(counts) - 1} has no colour: {class_set.name} has {len(class_set.palette)} entries"
        )
    names = ("void", *class_set.names)
    return [(int(label), names[label], class_set.palette[label]) for label in np.flatnonzero(counts)]


def legend(labels: np.ndarray, class_set: ClassSet, height: int) -> np.ndarray:
    """A white (≥ ``height``, W, 3) strip that lists the classes present in ``labels``: a swatch of each colour beside
    its name, in label order, in as many columns as ``height`` needs; the text scales with ``height``."""
    entries = legend_entries(labels, class_set)
    size = min(max(height // 32, 10), 28)
    font = ImageFont.load_default(size=size)
    margin, row = size // 2, size + size // 2
    per_column = max(1, (height - 2 * margin) // row)
    columns = [entries[start : start + per_column] for start in range(0, len(entries), per_column)]
    widths = [3 * margin + size + math.ceil(max(font.getlength(name) for _, name, _ in column)) for column in columns]
    strip = Image.new("RGB", (sum(widths), max(height, 2 * margin + min(len(entries), per_column) * row)), "white")
    draw = ImageDraw.Draw(strip)
    _, ink_top, _, ink_bottom = font.getbbox("Ag")
    left, text_offset = 0, (size - ink_top - ink_bottom) // 2  # centres the text on its swatch
    for column, width in zip(columns, widths, strict=True):
        for index, (_, name, colour) in enumerate(column):
            top = margin + index * row
            draw.rectangle((left + margin, top, left + margin + size - 1, top + size - 1), fill=colour)
            draw.text((left + 2 * margin + size, top + text_offset), name, fill="black", font=font)
        left += width
    return np.asarray(strip)


def add_legend(image: np.ndarray, labels: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """``image`` (an overlay or a panel) with the :func:`legend` of ``labels`` on its right, so that a reader can tell
    which colour is which class; a short image is padded with white below."""
    if not np.asarray(labels).size:
        return image
    strip = legend(labels, class_set, image.shape[0])
    image = np.pad(image, ((0, strip.shape[0] - image.shape[0]), (0, 0), (0, 0)), constant_values=255)
    return side_by_side(image, strip)


_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def save_image(image: Image.Image | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an image atomically; the format follows the suffix (PNG, JPEG, WebP, BMP)."""
    path = Path(path)
    if path.suffix.lower() not in _PIL_FORMATS:
        raise ValueError(f"{path}: unsupported image suffix; use one of {', '.join(_PIL_FORMATS)}")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_write_path(path) as tmp:
        image.save(tmp, format=_PIL_FORMATS[path.suffix.lower()])
    return path
