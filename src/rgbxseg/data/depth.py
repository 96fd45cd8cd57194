"""Depth unit conversions into the canonical encoding: uint16 millimetres, 0 = invalid."""

from __future__ import annotations

import numpy as np

from .errors import DatasetError

MAX_DEPTH_MM = int(np.iinfo(np.uint16).max)

SUN_SHIFT_BITS = 3
SUN_MAX_MM = 8000
"""The SUN RGB-D toolbox (``read3dPoints.m``) clips depth at 8 m."""


def metres_to_mm(metres: np.ndarray, source: str) -> np.ndarray:
    """Float metres → uint16 mm, rounded to the nearest millimetre (nicr truncates; rounding is closer).

    ``source`` names the file (and frame) in the error raised for NaN, negative or out-of-range values.
    """
    metres = np.asarray(metres, dtype=np.float64)
    if not np.isfinite(metres).all():
        raise DatasetError(f"{source}: depth contains NaN or infinite values; mark invalid pixels with 0 instead")
    if metres.size and metres.min() < 0:
        raise DatasetError(f"{source}: depth contains negative values (min {metres.min():g} m); depth must be >= 0")
    millimetres = np.rint(metres * 1000.0)
    if millimetres.size and millimetres.max() > MAX_DEPTH_MM:
        raise DatasetError(
            f"{source}: depth up to {metres.max():g} m does not fit uint16 millimetres (max 65.535 m); "
            "is the unit really metres?"
        )
    return millimetres.astype(np.uint16)


def sun_unshift(stored: np.ndarray) -> np.ndarray:
    """SUN RGB-D uint16 PNG values → mm: the toolbox's 3-bit circular right shift (``read3dPoints.m``).

    SUN stores millimetres rotated left by 3 bits; a plain ``>> 3`` would wrap depths of 8.192 m and more into
    small, valid-looking values.
    """
    return (stored >> SUN_SHIFT_BITS) | (stored << (16 - SUN_SHIFT_BITS))


def sun_png_to_mm(stored: np.ndarray, *, refined: bool, source: str) -> np.ndarray:
    """SUN RGB-D depth PNG (depth in bits 3–15) → mm: :func:`sun_unshift`, then the toolbox's 8 m limit.

    Values above 8000 mm become 8000 for refined (hole-filled) depth, as in the toolbox, and 0 (invalid) for raw
    depth, where they are sensor artefacts.
    """
    if stored.dtype != np.uint16 or stored.ndim != 2:
        raise DatasetError(
            f"{source}: SUN RGB-D depth must be a 16-bit greyscale PNG, got {stored.dtype} {stored.shape}"
        )
    millimetres = sun_unshift(stored)
    millimetres[millimetres > SUN_MAX_MM] = SUN_MAX_MM if refined else 0
    return millimetres
