"""What the numbers in a depth map mean: every supported unit, converted to millimetres in one table, and the checks
that a map's values fit the unit it is declared in (a wrong unit gives confident, wrong predictions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..data.depth import PLAUSIBLE_MEDIAN_MM, SUN_MAX_MM, looks_sun_shifted, median_valid, sun_unshift


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

AUTO = "auto"
"""Not a unit: the unit is chosen per map from its dtype and values (:data:`AUTO_RULES`, :func:`infer_depth_unit`)."""

_LOW_MM, _HIGH_MM = PLAUSIBLE_MEDIAN_MM
AUTO_RULES = (
    f"auto reads integer maps as mm (8-bit ones need a scale) and float maps as m when their median valid value is "
    f"below {_LOW_MM:g} (as mm: nearer than {_LOW_MM / 10:g} cm), as mm when it is above {_HIGH_MM / 1000:g} (as m: "
    f"beyond {_HIGH_MM / 1000:g} m), and refuses float maps in between (both readings possible)"
)
DEPTH_CHECKS = (
    f"every map is checked against its unit: a median valid depth outside {_LOW_MM / 10:g} cm to "
    f"{_HIGH_MM / 1000:g} m, SUN RGB-D raw values read as mm, or plain values read as sun-shifted are refused with "
    "the unit to use"
)

DepthUnitLike = DepthUnit | str | float
"""A :class:`DepthUnit`, a name in :data:`DEPTH_UNITS`, :data:`AUTO` or a number of millimetres per step."""


def resolve_depth_unit(unit: DepthUnitLike) -> DepthUnit | Literal["auto"]:
    """A :class:`DepthUnit` from a name in :data:`DEPTH_UNITS` or a scale factor to millimetres (number or string);
    ``"auto"`` stays itself, as it is decided per map (:func:`infer_depth_unit`)."""
    if isinstance(unit, DepthUnit) or unit == AUTO:
        return unit  # type: ignore[return-value]
    if isinstance(unit, str) and unit in DEPTH_UNITS:
        return DEPTH_UNITS[unit]
    try:
        scale = float(unit)
    except (TypeError, ValueError):
        raise ValueError(
            f"unknown depth unit {unit!r}; use one of {', '.join(DEPTH_UNITS)}, {AUTO} or a number of millimetres "
            "per depth step (e.g. 0.1 when the map stores 1/10 mm)"
        ) from None
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"a depth scale must be a positive number of millimetres per step, got {unit!r}")
    return DepthUnit(f"{scale:g} mm/step", f"{scale:g} millimetres per depth step", mm_per_unit=scale, allow_8bit=True)


def infer_depth_unit(depth: np.ndarray, source: str = "depth") -> DepthUnit:
    """The unit ``"auto"`` reads a map in (:data:`AUTO_RULES`): the one of mm and m in which its median valid value is
    a plausible scene depth (:data:`~rgbxseg.data.depth.PLAUSIBLE_MEDIAN_MM`); integer maps are always mm, as integer
    metres would be far too coarse. SUN RGB-D raw PNGs are never guessed: read as mm, :func:`depth_to_mm` refuses
    them."""
    median = median_valid(depth) if np.issubdtype(depth.dtype, np.floating) else None
    if median is None or median > _HIGH_MM / 1000:
        return DEPTH_UNITS["mm"]
    if median < _LOW_MM:
        return DEPTH_UNITS["m"]
    raise ValueError(
        f"{source}: depth unit {AUTO} cannot tell the unit of this float map: its median valid value {median:g} is "
        f"{median / 10:g} cm as mm or {median:g} m as m, both possible; pass depth unit 'm' or 'mm' (--depth-unit m or "
        "--depth-unit mm)"
    )


def _check_plausible(depth: np.ndarray, millimetres: np.ndarray, unit: DepthUnit, label: str, source: str) -> None:
    """Refuse values that do not fit their unit: a real scene's median depth lies within
    :data:`~rgbxseg.data.depth.PLAUSIBLE_MEDIAN_MM`, and SUN RGB-D raw PNGs carry a bit mark that plain millimetres
    lack."""
    if unit == DEPTH_UNITS["mm"] and looks_sun_shifted(depth):
        raise ValueError(
            f"{source}: these depth values have the mark of a SUN RGB-D raw PNG (multiples of 8: millimetres rotated "
            f"left by 3 bits), which read as {label} are 8 times too far; pass depth unit 'sun-shifted' (--depth-unit "
            "sun-shifted), or --depth-unit 1 if they really are millimetres in 8 mm steps"
        )
    if unit == DEPTH_UNITS["sun-shifted"] and looks_sun_shifted(depth) is False:
        raise ValueError(
            f"{source}: not a SUN RGB-D raw PNG: few of its depth values are multiples of 8 (SUN rotates millimetres "
            "left by 3 bits), so read as sun-shifted most would become 8 m; for plain millimetres pass depth unit "
            "'mm' (--depth-unit mm)"
        )
    median = median_valid(millimetres)
    if median is None or _LOW_MM <= median <= _HIGH_MM:
        return
    where = f"{median:g} mm away, nearer" if median < _LOW_MM else f"{median / 1000:g} m away, farther"
    stored = median_valid(depth)
    fits = [name for name in ("mm", "m") if _LOW_MM <= stored * DEPTH_UNITS[name].mm_per_unit <= _HIGH_MM]
    fix = (
        "its values fit " + " or ".join(f"depth unit '{name}' (--depth-unit {name})" for name in fits)
        if fits
        else "if it is depth at all (not disparity or a normalised image), pass its scale: depth unit = millimetres "
        "per step (--depth-unit N)"
    )
    raise ValueError(
        f"{source}: read as {label}, this depth map puts the scene {where} than any depth sensor measures (median "
        f"valid depth; sensors: {_LOW_MM / 10:g} cm to {_HIGH_MM / 1000:g} m); {fix}"
    )


def depth_to_mm(depth: np.ndarray, unit: DepthUnitLike, source: str = "depth") -> np.ndarray:
    """Check a depth map and convert it to float32 millimetres (H, W); NaN and ±inf become 0 (invalid).

    ``unit`` may be ``"auto"`` (:func:`infer_depth_unit`); values that do not fit the unit are refused
    (:data:`DEPTH_CHECKS`). ``source`` names the file or argument in error messages.
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
    declared = resolve_depth_unit(unit)
    unit = declared if isinstance(declared, DepthUnit) else infer_depth_unit(depth, source)
    label = unit.name if declared is unit else f"{unit.name} (chosen by {AUTO})"
    if depth.dtype == np.uint8 and not unit.allow_8bit:
        raise ValueError(
            f"{source}: an 8-bit depth map (values 0..255) cannot be in {label}; it is probably a "
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
    millimetres = unit.to_mm(depth)
    _check_plausible(depth, millimetres, unit, label, source)
    return millimetres
