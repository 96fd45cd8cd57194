"""Depth unit conversions into the canonical encoding (uint16 millimetres, 0 = invalid), and the checks that a map's
values fit the unit it is declared in."""

from __future__ import annotations

import numpy as np

from .errors import DatasetError

MAX_DEPTH_MM = int(np.iinfo(np.uint16).max)

SUN_SHIFT_BITS = 3
SUN_MAX_MM = 8000
"""The SUN RGB-D toolbox (``read3dPoints.m``) clips depth at 8 m."""

PLAUSIBLE_MEDIAN_MM = (50.0, 200_000.0)
"""Where the median valid depth of a real scene lies, in mm: no depth camera measures nearer than 5 cm (the RealSense
D405 starts at 7 cm) and no scene's median lies beyond 200 m (about the reach of long-range LiDAR). A median outside
means a wrong unit: metres read as mm are 1000 times too near, mm read as metres 1000 times too far."""

SUN_MARK_MIN_VALUES = 64
SUN_MARK_SHARE = 0.35
"""SUN RGB-D raw PNGs hold millimetres rotated left by 3 bits, so every depth below 8.192 m is stored as a multiple of
8, while only about 1 in 8 distinct values of plain millimetres are. A uint16 map with at least
:data:`SUN_MARK_MIN_VALUES` distinct valid values has the SUN mark when at least this share of them are multiples
of 8."""

STATISTICS_PIXELS = 1 << 14
"""The checks read a regular grid of about this many pixels of a map: as good a verdict, at a fraction of the cost per
frame."""


def _grid(depth: np.ndarray) -> np.ndarray:
    """A regular subsample of an (H, W) map with about :data:`STATISTICS_PIXELS` pixels (all of a small map)."""
    step = max(1, int(np.sqrt(depth.size / STATISTICS_PIXELS)))
    return depth[::step, ::step]


def median_valid(depth: np.ndarray) -> float | None:
    """Median of the valid values (finite and > 0) of an (H, W) map, on :func:`_grid`; ``None`` when there are none.
    The median is robust to holes and far outliers."""
    depth = _grid(depth)
    valid = depth > 0
    if np.issubdtype(depth.dtype, np.floating):
        valid &= np.isfinite(depth)
    values = depth[valid]
    return float(np.median(values)) if values.size else None


def looks_sun_shifted(stored: np.ndarray) -> bool | None:
    """Whether an (H, W) uint16 map has the SUN RGB-D bit-shift mark (:data:`SUN_MARK_SHARE`, on :func:`_grid`);
    ``None`` when it cannot tell (another dtype, or fewer than :data:`SUN_MARK_MIN_VALUES` distinct valid values)."""
    if stored.dtype != np.uint16:
        return None
    present = np.bincount(_grid(stored).ravel(), minlength=8) > 0
    present[0] = False  # invalid
    distinct = int(present.sum())
    if distinct < SUN_MARK_MIN_VALUES:
        return None
    return bool(present[::8].sum() >= SUN_MARK_SHARE * distinct)


def check_millimetres(depth: np.ndarray, source: str) -> np.ndarray:
    """Refuse a uint16 map declared as millimetres whose values are clearly in another unit; returns it unchanged.

    Imported and canonical depth is never converted, so a wrong declaration would train on wrong depth silently.
    """
    if looks_sun_shifted(depth):
        raise DatasetError(
            f"{source}: depth declared as millimetres has the mark of a SUN RGB-D raw PNG (its values are multiples of "
            "8: millimetres rotated left by 3 bits) and would be 8 times too far; decode it: import with "
            "depth_encoding='sun_shifted', or convert with rgbxseg.data.depth.sun_png_to_mm"
        )
    median = median_valid(depth)
    low, high = PLAUSIBLE_MEDIAN_MM
    if median is not None and not low <= median <= high:
        raise DatasetError(
            f"{source}: depth declared as millimetres puts the scene at {median:g} mm (median valid value), outside "
            f"any depth sensor's range ({low / 10:g} cm to {high / 1000:g} m): is it metres or another unit? Store "
            "uint16 millimetres (metres × 1000)"
        )
    return depth


def check_sun_shifted(stored: np.ndarray, source: str) -> np.ndarray:
    """Refuse a map declared as SUN RGB-D bit-shifted that lacks the SUN mark (plain millimetres would decode to
    mostly 8 m); returns it unchanged."""
    if looks_sun_shifted(stored) is False:
        raise DatasetError(
            f"{source}: depth declared as SUN RGB-D bit-shifted lacks its mark (few values are multiples of 8, but SUN "
            "rotates millimetres left by 3 bits): it holds plain millimetres; import it with "
            "depth_encoding='metric_mm'"
        )
    return stored


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
