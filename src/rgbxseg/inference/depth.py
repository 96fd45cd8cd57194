"""What the numbers in a depth map mean: every supported unit, converted to millimetres in one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data.depth import SUN_MAX_MM, sun_unshift


@dataclass(frozen=True)
class DepthUnit:
    """A depth encoding: optional ``decode`` of a raw sensor format, then a linear scale to millimetres."""

    name: str
    description: str
    mm_per_unit: float = 1.0
    decode: Callable[[np.ndarray], np.ndarray] | None = None
    allow_8bit: bool = False
    """8-bit maps hold 0..255: never millimetres or metres, only a quantised depth with an explicit scale."""

    def to_mm(self, depth: np.ndarray) -> np.ndarray:
        """Raw values in this unit → float32 millimetres (0 stays 0 = invalid)."""
        values = self.decode(depth) if self.decode is not None else depth
        return values.astype(np.float32) * np.float32(self.mm_per_unit)


def _decode_sun_shifted(depth: np.ndarray) -> np.ndarray:
    """SUN RGB-D raw PNG → mm: the toolbox's 3-bit circular right shift of the uint16 value, clipped at 8 m."""
    if depth.dtype != np.uint16:
        raise ValueError(
            f"sun-shifted depth must be the raw uint16 SUN RGB-D PNG, got {depth.dtype}; "
            "pass already-decoded depth with depth unit 'mm'"
        )
    return np.minimum(sun_unshift(depth), SUN_MAX_MM)


DEPTH_UNITS: dict[str, DepthUnit] = {
    unit.name: unit
    for unit in (
        DepthUnit("mm", "millimetres: NYUv2 PNGs, OpenNI/RealSense/Kinect 16-bit depth with a 1 mm scale"),
        DepthUnit("m", "metres: float depth maps (e.g. ROS 32FC1 images, depth estimators)", mm_per_unit=1000.0),
        DepthUnit(
            "sun-shifted",
            "SUN RGB-D raw 16-bit PNGs (depth in bits 3-15): 3-bit circular right shift to mm, clipped at 8 m",
            decode=_decode_sun_shifted,
        ),
    )
}
"""Named depth units. A number instead of a name is a scale to millimetres (e.g. 0.1 for 1/10 mm steps)."""


def resolve_depth_unit(unit: str | float | DepthUnit) -> DepthUnit:
    """A :class:`DepthUnit` from a name in :data:`DEPTH_UNITS` or a scale factor to millimetres (number or string)."""
    if isinstance(unit, DepthUnit):
        return unit
    if isinstance(unit, str) and unit in DEPTH_UNITS:
        return DEPTH_UNITS[unit]
    try:
        scale = float(unit)
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown depth unit {unit!r}; use one of {', '.join(DEPTH_UNITS)} or a number of millimetres per "
            "depth step (e.g. 0.1 when the map stores 1/10 mm)"
        ) from None
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"a depth scale must be a positive number of millimetres per step, got {unit!r}")
    return DepthUnit(f"{scale:g} mm/step", f"{scale:g} millimetres per depth step", mm_per_unit=scale, allow_8bit=True)


def depth_to_mm(depth: np.ndarray, unit: DepthUnit, source: str = "depth") -> np.ndarray:
    """Check a depth map and convert it to float32 millimetres (H, W); NaN and ±inf become 0 (invalid).

    ``source`` names the file or argument in error messages.
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        hint = (
            " — a colour image: is this a colour-mapped depth visualisation or the RGB file?"
            if depth.ndim == 3 and depth.shape[2] in (3, 4)
            else ""
        )
        raise ValueError(f"{source}: depth must be one channel (H, W), got shape {depth.shape}{hint}")
    if depth.dtype == np.uint8 and not unit.allow_8bit:
        raise ValueError(
            f"{source}: an 8-bit depth map (values 0..255) cannot be in {unit.name}; it is probably a "
            "visualisation or a quantised export. Use the 16-bit depth PNG, or state the scale: "
            "depth unit = millimetres per step (e.g. --depth-unit 39.2 for 0..10 m in 255 steps)"
        )
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise ValueError(f"{source}: depth must be integer or float, got {depth.dtype}")
    if np.issubdtype(depth.dtype, np.floating):
        depth = np.where(np.isfinite(depth), depth, 0)
    if depth.size and depth.min() < 0:
        raise ValueError(
            f"{source}: depth has negative values (min {depth.min():g}); depth maps store distances ≥ 0 with 0 as "
            "invalid. Is this a disparity or a normalised image?"
        )
    return unit.to_mm(depth)
