"""HHA encoding of metric depth (Gupta et al., ECCV 2014): horizontal disparity, height above ground, angle with
gravity, as three 8-bit channels that an ImageNet-style backbone can take like colour.

The method and its constants follow the authors' code (rcnn-depth: ``saveHHA.m``, ``processDepthImage.m``; rgbdutils:
``computeNormalsSquareSupport.m``, ``getYDir.m``), re-implemented here with numpy:

* **Channel order** (as the original writes its image files, and as HHA PNGs of CMX/DFormer trees read in RGB
  order): R = horizontal disparity, G = height above ground, B = angle with gravity.
* **Disparity**: ``31000 / max(depth_cm, 100)``: depth is the z coordinate, floored at 1 m so near pixels do not
  explode; the channel saturates at 255 for depth up to 1.22 m.
* **Height**: centimetres above the lowest pixel of the frame, taken to be the floor, along the estimated gravity.
  Where that lowest pixel lies less than 90 cm below the camera (no floor in view), the floor is assumed 130 cm below
  the camera instead. Heights above 2.55 m saturate at 255.
* **Angle**: degrees between the surface normal and gravity, stored as ``angle + 38`` (the original's
  ``angle + 128 - 90``). Normals point away from the camera and gravity points down, so floors and table tops read 0°
  (38), walls 90° (128) and ceilings 180° (218).
* **Gravity** is estimated from the depth itself (no accelerometer): starting from the camera's down axis, it is
  refined to the direction most parallel to near-horizontal surfaces and most perpendicular to near-vertical ones
  (:func:`estimate_gravity`).
* **Quantisation**: to the nearest integer (halves up) and clipped to 0..255, as MATLAB's ``uint8`` does.
* **Invalid depth** (0, negative, NaN, inf) is ignored by the normals and the gravity estimate, and such a pixel is
  0 in all three channels. No valid pixel has disparity 0 (depth would have to exceed 620 m), so ``R == 0`` marks
  them. A pixel with depth that ``valid`` excludes (in-painted depth, like NYUv2's refined ``depths`` where the raw
  map has 0) keeps the disparity and height of its depth, and its normal is fitted from the valid pixels around it;
  where those are too few (inside a hole wider than the normal window) the normal is fitted from the depth as given.
  The original leaves such pixels at 180° (B = 218) instead, through MATLAB's handling of NaN. A pixel whose window
  has too few pixels with depth for any plane (an isolated reading) has no angle: B = 0.

Units: depth in millimetres in, centimetres and degrees in the channels. Camera coordinates: x right, y down, z
forward (the image's axes); intrinsics in pixels with (0, 0) the centre of the top-left pixel. The original counts
pixels from 1 (MATLAB): given cx, cy lowered by 1 and no ``valid`` mask, this module reproduces its output image of
the Depth2HHA-python demo frame (NYUv2) exactly, but for 2 of 307,200 height values off by one (rounding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .depth import check_millimetres

DISPARITY_SCALE = 31000.0
MIN_DISPARITY_DEPTH_CM = 100.0
ANGLE_OFFSET_DEG = 128.0 - 90.0
FLOOR_MIN_DEPTH_CM = 90.0
ASSUMED_CAMERA_HEIGHT_CM = 130.0
"""See the module docstring: the original's constants."""

NORMAL_RADIUS = 3
GRAVITY_RADIUS = 10
"""Half-widths of the square windows that normals are fitted over: 7×7 for the angle channel, 21×21 (smoother) for
the gravity estimate, as in the original."""

GRAVITY_THRESHOLDS_DEG = (45.0, 15.0)
GRAVITY_ITERATIONS = 5
CAMERA_DOWN = (0.0, 1.0, 0.0)
"""The original's gravity search: 5 rounds with normals within 45° of parallel or perpendicular, then 5 within 15°,
from the camera's down axis (right for a camera held level)."""

GRAVITY_TIE_SHARE = 0.01
"""Directions whose fit differs by less than this share of the normals used (a mean squared cosine of 0.01, about
6°) fit equally well: with one wall alone in view, every direction along it does."""

MIN_WINDOW_SPREAD_PX4 = 0.01
"""Least determinant (px⁴) of the covariance of the pixel positions used in a window: below it they are (nearly)
collinear and fix no plane. Three pixels in an L give 0.04, a full 7×7 window 16."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels at one image size; (0, 0) is the centre of the top-left pixel."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)) or min(self.fx, self.fy) <= 0:
            raise ValueError(f"intrinsics must be finite with fx, fy > 0 (pixels); got {self}")

    @classmethod
    def of(cls, intrinsics: CameraIntrinsics | Mapping[str, float]) -> CameraIntrinsics:
        """Intrinsics as given, or from a mapping with ``fx``, ``fy``, ``cx``, ``cy`` (as meta.json stores them)."""
        if isinstance(intrinsics, CameraIntrinsics):
            return intrinsics
        missing = sorted({"fx", "fy", "cx", "cy"} - set(intrinsics))
        if missing:
            raise ValueError(f"intrinsics lack {missing}; pass fx, fy, cx, cy in pixels")
        return cls(*(float(intrinsics[key]) for key in ("fx", "fy", "cx", "cy")))

    def scaled(self, from_size: Sequence[int], to_size: Sequence[int]) -> CameraIntrinsics:
        """The same camera for the image resized from ``from_size`` to ``to_size`` (both (height, width))."""
        sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)


@dataclass(frozen=True, eq=False)
class HHAChannels:
    """HHA before quantisation: (H, W) float maps, NaN where undefined, and the gravity they were computed with."""

    disparity: np.ndarray
    """``31000 / max(depth_cm, 100)``; NaN without depth."""
    height: np.ndarray
    """Centimetres above the floor (see the module docstring); NaN without depth."""
    angle: np.ndarray
    """Degrees between the surface normal and gravity, 0..180; NaN without depth or without a normal."""
    gravity: np.ndarray
    """(3,) unit vector pointing down, in camera coordinates (x right, y down, z forward)."""

    def to_image(self) -> np.ndarray:
        """(H, W, 3) uint8 in the original's channel order and scaling; undefined values become 0."""
        stack = np.stack([self.disparity, self.height, self.angle + ANGLE_OFFSET_DEG], axis=-1)
        image = np.floor(np.clip(stack, 0.0, 255.0) + 0.5)
        return np.nan_to_num(image, nan=0.0).astype(np.uint8)


def _checked_depth(depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth as float64 mm with NaN where invalid, and the mask of valid pixels; refuses what cannot be mm depth."""
    depth = np.asarray(depth_mm)
    if depth.ndim != 2:
        raise ValueError(
            f"depth must be one (H, W) map in millimetres; got shape {depth.shape}: pass a single frame with one "
            "channel (e.g. depth[..., 0])"
        )
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise ValueError(f"depth must be integer or float millimetres (e.g. uint16); got dtype {depth.dtype}")
    metric = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(metric) & (metric > 0)
    if not valid.any():
        raise ValueError("depth has no valid pixel (all are 0, negative, NaN or inf): there is nothing to encode")
    check_millimetres(depth, "depth given for HHA")
    metric[~valid] = np.nan
    return metric, valid


def _intrinsics_for(
    intrinsics: CameraIntrinsics | Mapping[str, float], intrinsics_size: Sequence[int] | None, shape: Sequence[int]
) -> CameraIntrinsics:
    """Intrinsics at the depth map's size; refuses ones whose principal point lies outside the map (another size)."""
    camera = CameraIntrinsics.of(intrinsics)
    if intrinsics_size is not None and tuple(intrinsics_size) != tuple(shape):
        camera = camera.scaled(intrinsics_size, shape)
    if not (0 <= camera.cx <= shape[1] and 0 <= camera.cy <= shape[0]):
        raise ValueError(
            f"principal point ({camera.cx:g}, {camera.cy:g}) lies outside the {shape[0]}×{shape[1]} depth map: the "
            "intrinsics are for another image size; pass intrinsics_size=(height, width) that they are given for"
        )
    return camera


def _rays(shape: Sequence[int], camera: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """x/z of each column (W,) and y/z of each row (H,): a pixel's point is ``depth × (x, y, 1)``."""
    return (np.arange(shape[1]) - camera.cx) / camera.fx, (np.arange(shape[0]) - camera.cy) / camera.fy


def _box_sum(stack: np.ndarray, radius: int) -> np.ndarray:
    """Sums of (C, H, W) maps over the (2r+1)² window centred on each pixel, with zeros outside the image (windows
    at the border are cut). Running sums along one axis at a time keep the cost independent of the radius."""
    size = 2 * radius + 1
    padded = np.cumsum(np.pad(stack, ((0, 0), (radius + 1, radius), (0, 0))), axis=1)
    stack = padded[:, size:] - padded[:, :-size]
    padded = np.cumsum(np.pad(stack, ((0, 0), (0, 0), (radius + 1, radius))), axis=2)
    return padded[:, :, size:] - padded[:, :, :-size]


def _fit_normals(depth: np.ndarray, used: np.ndarray, camera: CameraIntrinsics, radius: int) -> np.ndarray:
    """Unit normals (H, W, 3) of the plane fitted to the ``used`` pixels of each window, NaN where none fits.

    A plane ``n·p = d`` seen along the ray ``(x, y, 1)`` has inverse depth ``1/z = (n/d)·(x, y, 1)``: linear in the
    ray, so ``n/d`` is an ordinary least-squares fit of inverse depth on (x, y) per window (the original's
    formulation; a structured-light sensor's depth noise grows with depth squared, so inverse depth has about even
    noise and needs no weights). ``d > 0`` makes the normal point away from the camera.
    """
    xs, ys = _rays(depth.shape, camera)
    x, y = np.broadcast_to(xs[None, :], depth.shape), np.broadcast_to(ys[:, None], depth.shape)
    weight = used.astype(np.float64)
    inverse = np.where(used, 1.0 / np.where(used, depth, 1.0), 0.0)
    wx, wy = weight * x, weight * y
    sums = _box_sum(np.stack([weight, wx, wy, wx * x, wx * y, wy * y, inverse, inverse * x, inverse * y]), radius)
    count, sx, sy, sxx, sxy, syy, sq, sxq, syq = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my, mq = sx / count, sy / count, sq / count
        cxx, cxy, cyy = sxx / count - mx * mx, sxy / count - mx * my, syy / count - my * my
        cxq, cyq = sxq / count - mx * mq, syq / count - my * mq
        det = cxx * cyy - cxy * cxy
        a, b = (cyy * cxq - cxy * cyq) / det, (cxx * cyq - cxy * cxq) / det
        normals = np.stack([a, b, mq - a * mx - b * my], axis=-1)
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    fits = (count >= 3) & (det * (camera.fx * camera.fy) ** 2 >= MIN_WINDOW_SPREAD_PX4) & np.isfinite(normals).all(-1)
    facing = np.sign(normals[..., 0] * x + normals[..., 1] * y + normals[..., 2])
    normals *= np.where(facing < 0, -1.0, 1.0)[..., None]
    normals[~fits] = np.nan
    return normals


def _measured(depth_valid: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        return depth_valid
    valid = np.asarray(valid)
    if valid.shape != depth_valid.shape:
        raise ValueError(f"valid has shape {valid.shape}, the depth map {depth_valid.shape}: pass one mask per pixel")
    measured = depth_valid & valid.astype(bool)
    if not measured.any():
        raise ValueError(
            "valid excludes every pixel with depth: there is no measured pixel to estimate gravity from; pass a mask "
            "that is True where the depth was measured (e.g. raw depth > 0), or none"
        )
    return measured


def point_cloud(
    depth_mm: np.ndarray,
    intrinsics: CameraIntrinsics | Mapping[str, float],
    *,
    intrinsics_size: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W, 3) camera-frame points in millimetres (x right, y down, z = depth), NaN where depth is invalid.

    Every HHA channel is geometry in this frame. ``intrinsics_size`` is the (height, width) the intrinsics are given
    for; when it differs from the map's they are scaled to it (omit it only when they match the map).
    """
    depth, _ = _checked_depth(depth_mm)
    xs, ys = _rays(depth.shape, _intrinsics_for(intrinsics, intrinsics_size, depth.shape))
    return depth[..., None] * np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.ones(1)), axis=-1)


def surface_normals(
    depth_mm: np.ndarray,
    intrinsics: CameraIntrinsics | Mapping[str, float],
    *,
    radius: int = NORMAL_RADIUS,
    valid: np.ndarray | None = None,
    intrinsics_size: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W, 3) unit surface normals, pointing away from the camera (the original's convention), NaN where no plane
    fits (fewer than three non-collinear valid pixels in the window).

    Each is the least-squares plane through the valid pixels of the (2·radius+1)² window around the pixel: a square
    support is cheap (running sums) and, unlike a difference of neighbours, averages out depth noise. Invalid depth
    and pixels outside ``valid`` are left out, so holes do not bend the planes around them.
    """
    if radius < 1:
        raise ValueError(f"radius must be at least 1 pixel, got {radius}")
    depth, depth_valid = _checked_depth(depth_mm)
    camera = _intrinsics_for(intrinsics, intrinsics_size, depth.shape)
    return _fit_normals(depth, _measured(depth_valid, valid), camera, radius)


def estimate_gravity(
    normals: np.ndarray,
    *,
    thresholds_deg: Sequence[float] = GRAVITY_THRESHOLDS_DEG,
    iterations: int = GRAVITY_ITERATIONS,
    initial: Sequence[float] = CAMERA_DOWN,
) -> np.ndarray:
    """Unit gravity vector (pointing down) in camera coordinates, from surface normals (..., 3); NaN ones ignored.

    Indoor scenes are mostly horizontal (floor, tables) and vertical (walls) surfaces. Starting from ``initial``,
    each round takes the normals within the threshold of parallel and of perpendicular to the current estimate and
    picks the direction that is most parallel to the first and most perpendicular to the second (the least
    eigenvector of ``Σ n⊥n⊥ᵀ − Σ n∥n∥ᵀ``), keeping the sign of the estimate. Where that direction is not unique
    (e.g. only one wall in view) the current estimate is projected onto the directions that fit equally well, rather
    than an arbitrary one taken; a round with no normal near either keeps the estimate.
    """
    flat = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    flat = flat[np.isfinite(flat).all(axis=1)]
    if not len(flat):
        raise ValueError("no surface normal to estimate gravity from: the depth map has too few valid pixels")
    outer = (flat[:, :, None] * flat[:, None, :]).reshape(-1, 9)  # n nᵀ of each normal, for one product a round
    gravity = np.asarray(initial, dtype=np.float64)
    gravity = gravity / np.linalg.norm(gravity)
    for threshold in np.radians(thresholds_deg):
        for _ in range(iterations):
            cosine = np.abs(flat @ gravity)
            along, across = cosine > np.cos(threshold), cosine < np.sin(threshold)
            used = int(along.sum() + across.sum())
            if not used:
                break
            values, vectors = np.linalg.eigh(((across.astype(np.float64) - along) @ outer).reshape(3, 3))
            tied = values - values[0] <= GRAVITY_TIE_SHARE * used
            candidate = vectors[:, tied] @ (vectors[:, tied].T @ gravity)
            if np.linalg.norm(candidate) < 1e-6:
                candidate = vectors[:, 0]
            candidate /= np.linalg.norm(candidate)
            gravity = candidate if candidate @ gravity >= 0 else -candidate
    return gravity


def hha_channels(
    depth_mm: np.ndarray,
    intrinsics: CameraIntrinsics | Mapping[str, float],
    *,
    valid: np.ndarray | None = None,
    intrinsics_size: Sequence[int] | None = None,
) -> HHAChannels:
    """Disparity, height and angle as floats (before :meth:`HHAChannels.to_image`), and the estimated gravity.

    ``depth_mm``: (H, W) millimetres (uint16 or float; 0, negative, NaN and inf are invalid). ``valid``: optional
    (H, W) mask of measured pixels, when ``depth_mm`` is hole-filled: only they shape normals and gravity (see the
    module docstring). ``intrinsics``: fx, fy, cx, cy in pixels, for the map's size or for ``intrinsics_size``
    (height, width), from which they are scaled.
    """
    depth, depth_valid = _checked_depth(depth_mm)
    camera = _intrinsics_for(intrinsics, intrinsics_size, depth.shape)
    measured = _measured(depth_valid, valid)
    gravity = estimate_gravity(_fit_normals(depth, measured, camera, GRAVITY_RADIUS))
    normals = _fit_normals(depth, measured, camera, NORMAL_RADIUS)
    unfitted = depth_valid & np.isnan(normals[..., 0])
    if valid is not None and unfitted.any():
        normals[unfitted] = _fit_normals(depth, depth_valid, camera, NORMAL_RADIUS)[unfitted]
    depth_cm = depth / 10.0
    xs, ys = _rays(depth.shape, camera)
    above_camera = -depth_cm * (gravity[0] * xs[None, :] + gravity[1] * ys[:, None] + gravity[2])
    lowest = float(np.nanmin(above_camera))
    floor = lowest if lowest <= -FLOOR_MIN_DEPTH_CM else -ASSUMED_CAMERA_HEIGHT_CM
    angle = np.degrees(np.arccos(np.clip(normals @ gravity, -1.0, 1.0)))
    angle[~depth_valid] = np.nan
    return HHAChannels(
        disparity=DISPARITY_SCALE / np.maximum(depth_cm, MIN_DISPARITY_DEPTH_CM),
        height=above_camera - floor,
        angle=angle,
        gravity=gravity,
    )


def compute_hha(
    depth_mm: np.ndarray,
    intrinsics: CameraIntrinsics | Mapping[str, float],
    *,
    valid: np.ndarray | None = None,
    intrinsics_size: Sequence[int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 HHA image of a metric depth map: R disparity, G height, B angle (see the module docstring).

    Arguments as :func:`hha_channels`. Raises ``ValueError`` for a map that is not (H, W) integer or float, holds
    no valid pixel, or is not in millimetres (a median depth under 5 cm: metres, multiply by 1000).
    """
    return hha_channels(depth_mm, intrinsics, valid=valid, intrinsics_size=intrinsics_size).to_image()
