"""Ray casting a :class:`~.scene.Scene` into RGB, Kinect-like depth and NYU-40 labels (vectorised numpy).

Every pixel's ray is intersected with the six room planes at once; each box is slab-tested only inside the
screen rectangle its corners project to. Depth-only boxes go to a separate hit buffer: they decide depth and label
but never colour, which is taken from the closest ordinary surface behind them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .scene import CLASS_ID, Box, Camera, Material, Pattern, Scene

KINECT_FOCAL_AT_640 = 518.86
"""Kinect v1 RGB focal length in pixels at 640 columns; scaled with the image width."""
MIN_RANGE_M, MAX_RANGE_M = 0.5, 10.0
PROJECTOR_BASELINE_M = 0.075
DISPARITY_STEP = 2.85e-3
"""Kinect v1 depth resolution: Δz ≈ 2.85e-3 · z² (metres), i.e. a constant step in inverse depth."""


# --- procedural textures -------------------------------------------------------------------------------------------


def _hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Pseudo-random value in [0, 1) per integer lattice point (and seed)."""
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + np.int64(1442695041) * seed) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFFFF).astype(np.float32) / np.float32(0x1000000)


def _value_noise(u: np.ndarray, v: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a, b = _hash(iu, iv, seed), _hash(iu + 1, iv, seed)
    c, d = _hash(iu, iv + 1, seed), _hash(iu + 1, iv + 1, seed)
    return (a + (b - a) * fu) * (1 - fv) + (c + (d - c) * fu) * fv


def _fbm(u: np.ndarray, v: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Two octaves of value noise, in [0, 1)."""
    return 0.65 * _value_noise(u, v, seed) + 0.35 * _value_noise(2.03 * u + 17.1, 2.03 * v + 3.7, seed + 7)


def _vivid(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """A saturated random colour per lattice cell (book spines, picture mosaics)."""
    return np.stack([0.15 + 0.8 * _hash(ix, iy, seed + k) for k in (11, 23, 37)], axis=-1) ** 1.5


Params = dict[str, np.ndarray]
"""Per-point material parameters: ``color`` (N×3), ``scale``, ``contrast``, ``seed``, ``row`` (N)."""


def _shaded(params: Params, factor: np.ndarray) -> np.ndarray:
    return params["color"] * factor[:, None]


def _noise_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    return _shaded(m, 1 + m["contrast"] * (2 * _fbm(u / m["scale"], v / m["scale"], m["seed"]) - 1))


def _wood_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    plank = np.floor(u / m["scale"])
    tint = 1 + m["contrast"] * (2 * _hash(plank, plank * 0, m["seed"]) - 1)
    grain = 0.07 * np.sin(2 * np.pi * (v * 6 / m["scale"] + 3 * _value_noise(u * 9, v * 0.7, m["seed"])))
    seam = np.where((u / m["scale"]) % 1.0 < 0.03, 0.7, 1.0)
    return _shaded(m, (tint + grain) * seam)


def _tile_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    su, sv = u / m["scale"], v / m["scale"]
    tint = 1 + m["contrast"] * (2 * _hash(np.floor(su), np.floor(sv), m["seed"]) - 1)
    grout = ((su % 1.0) < 0.05) | ((sv % 1.0) < 0.05)
    return _shaded(m, np.where(grout, 0.65, tint))


def _stripe_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    factor = 1 + m["contrast"] * np.sign(np.sin(2 * np.pi * u / m["scale"])) + 0.03 * _value_noise(u * 20, v * 20, 3)
    return _shaded(m, factor)


def _book_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    """Rows of spines of random colours and heights; the shelf's colour shows above them."""
    spine = np.floor(u / m["scale"])
    height = 0.75 + 0.25 * _hash(spine, spine * 0 + 5, m["seed"])
    rows = (v / m["row"]) % 1.0
    colour = _vivid(spine, spine * 0, m["seed"]) * (0.85 + 0.3 * _value_noise(u * 40, v * 3, 1))[:, None]
    return np.where((rows < height)[:, None], colour, m["color"] * 0.35)


def _mosaic_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    """Colourful blocks at two scales (pictures, props)."""
    cells = _vivid(np.floor(u / m["scale"]), np.floor(v / m["scale"]), m["seed"])
    return 0.6 * cells + 0.4 * _vivid(np.floor(u / m["scale"] / 3), np.floor(v / m["scale"] / 3), m["seed"] + 1)


def _glass_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    """A bright sky with clouds seen through a window."""
    sky = np.stack([0.62 + 0.1 * v, 0.75 + 0.08 * v, 0.92 + 0.04 * v], axis=-1)
    return np.clip(sky + 0.25 * _fbm(u * 1.5, v * 3, m["seed"])[:, None], 0, 1.2)


def _screen_texture(u: np.ndarray, v: np.ndarray, m: Params) -> np.ndarray:
    """Dark glass with a soft diagonal reflection."""
    return m["color"] + (0.08 * np.clip(1 - np.abs(u - v) * 2, 0, 1))[:, None]


_TEXTURES: dict[Pattern, Callable[[np.ndarray, np.ndarray, Params], np.ndarray]] = {
    Pattern.NOISE: _noise_texture,
    Pattern.WOOD: _wood_texture,
    Pattern.TILES: _tile_texture,
    Pattern.STRIPES: _stripe_texture,
    Pattern.BOOKS: _book_texture,
    Pattern.MOSAIC: _mosaic_texture,
    Pattern.GLASS: _glass_texture,
    Pattern.SCREEN: _screen_texture,
}
"""Albedo (N×3) of N surface points with texture coordinates (u, v) in metres."""


# --- ray casting ---------------------------------------------------------------------------------------------------


@dataclass
class _Hits:
    """Closest hits per pixel: distance t along the ray (= z in the camera frame), primitive id, axis, normal sign."""

    t: np.ndarray
    prim: np.ndarray
    axis: np.ndarray
    sign: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> _Hits:
        return cls(np.full(shape, np.inf, np.float32), np.full(shape, -1, np.int32), np.zeros(shape, np.int8),
                   np.zeros(shape, np.int8))  # fmt: skip


def focal_px(width: int) -> float:
    """Focal length in pixels of the synthetic camera at ``width`` columns (the rendering and meta.json agree)."""
    return KINECT_FOCAL_AT_640 * width / 640


def _ray_directions(camera: Camera, height: int, width: int) -> tuple[np.ndarray, float]:
    """(H, W, 3) directions with unit forward component, so the ray parameter equals camera z; and fx."""
    focal = focal_px(width)
    forward, right, up = camera.axes()
    xs = ((np.arange(width) + 0.5 - width / 2) / focal).astype(np.float32)
    ys = ((np.arange(height) + 0.5 - height / 2) / focal).astype(np.float32)
    directions = forward + xs[None, :, None] * right - ys[:, None, None] * up
    return directions.astype(np.float32), focal


def _room_hits(scene: Scene, origin: np.ndarray, directions: np.ndarray) -> _Hits:
    """The ray's exit through the room box: faces 0..5 = x=0, x=W, y=0 (floor), y=H (ceiling), z=0, z=D."""
    size = np.asarray(scene.size, np.float32)
    safe = np.where(np.abs(directions) < 1e-9, 1e-9, directions)
    bound = np.where(safe > 0, size, 0.0)
    t_axes = (bound - origin) / safe
    axis = np.argmin(t_axes, axis=-1)
    t = np.take_along_axis(t_axes, axis[..., None], axis=-1)[..., 0]
    positive = np.take_along_axis(safe, axis[..., None], axis=-1)[..., 0] > 0
    prim = (2 * axis + positive).astype(np.int32)
    return _Hits(t.astype(np.float32), prim, axis.astype(np.int8), np.where(positive, -1, 1).astype(np.int8))


def _screen_rect(
    box: Box, origin: np.ndarray, camera: Camera, focal: float, shape: tuple[int, int]
) -> tuple[slice, slice] | None:
    """Pixel rectangle that contains the box's projection (the whole image if the box reaches behind the camera)."""
    forward, right, up = camera.axes()
    corners = np.array([[x, y, z] for x in (box.lo[0], box.hi[0]) for y in (box.lo[1], box.hi[1])
                        for z in (box.lo[2], box.hi[2])]) - origin  # fmt: skip
    depth = corners @ forward
    if depth.max() <= 0:
        return None
    if depth.min() < 0.05:
        return slice(0, shape[0]), slice(0, shape[1])
    cols = corners @ right / depth * focal + shape[1] / 2
    rows = -(corners @ up) / depth * focal + shape[0] / 2
    r0, r1 = max(int(rows.min()) - 1, 0), min(math.ceil(rows.max()) + 1, shape[0])
    c0, c1 = max(int(cols.min()) - 1, 0), min(math.ceil(cols.max()) + 1, shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


@dataclass(frozen=True)
class _Rays:
    """Per-pixel ray data as separate x, y, z planes (contiguous H×W arrays are much faster than H×W×3)."""

    origin: np.ndarray
    inverse: tuple[np.ndarray, np.ndarray, np.ndarray]
    normal_sign: tuple[np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def of(cls, origin: np.ndarray, directions: np.ndarray) -> _Rays:
        components = [np.where(np.abs(d) < 1e-9, 1e-9, d) for d in np.moveaxis(directions, -1, 0)]
        inverse = tuple(np.ascontiguousarray(1 / d) for d in components)
        signs = tuple(np.ascontiguousarray(-np.sign(d)).astype(np.int8) for d in components)
        return cls(origin.astype(np.float32), inverse, signs)  # type: ignore[arg-type]


def _intersect_box(box: Box, rays: _Rays, rect: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test inside ``rect``: entry distance (inf where missed), entry axis and outward normal sign."""
    near, far = [], []
    for k in range(3):
        inverse = rays.inverse[k][rect]
        t1, t2 = (box.lo[k] - rays.origin[k]) * inverse, (box.hi[k] - rays.origin[k]) * inverse
        near.append(np.minimum(t1, t2))
        far.append(np.maximum(t1, t2))
    t_entry = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_exit = np.minimum(np.minimum(far[0], far[1]), far[2])
    axis = np.where(near[0] >= np.maximum(near[1], near[2]), 0, np.where(near[1] >= near[2], 1, 2)).astype(np.int8)
    sign = np.where(axis == 0, rays.normal_sign[0][rect], np.where(axis == 1, rays.normal_sign[1][rect],
                                                                   rays.normal_sign[2][rect]))  # fmt: skip
    return np.where((t_entry <= t_exit) & (t_entry > 1e-3), t_entry, np.inf), axis, sign


def _cast(scene: Scene, origin: np.ndarray, directions: np.ndarray, focal: float) -> tuple[_Hits, _Hits]:
    """Closest visible hits (room and ordinary boxes) and closest depth-only hits."""
    visible = _room_hits(scene, origin, directions)
    hidden = _Hits.empty(directions.shape[:2])
    rays = _Rays.of(origin, directions)
    for index, box in enumerate(scene.boxes):
        rect = _screen_rect(box, origin, scene.camera, focal, directions.shape[:2])
        if rect is None:
            continue
        t, axis, sign = _intersect_box(box, rays, rect)
        hits = hidden if box.depth_only else visible
        closer = t < hits.t[rect]
        hits.t[rect] = np.where(closer, t, hits.t[rect])
        hits.prim[rect] = np.where(closer, 6 + index, hits.prim[rect])
        hits.axis[rect] = np.where(closer, axis, hits.axis[rect])
        hits.sign[rect] = np.where(closer, sign, hits.sign[rect])
    return visible, hidden


# --- shading and sensor models ---------------------------------------------------------------------------------------


def _materials(scene: Scene) -> list[Material]:
    """Material per primitive id: the six room faces, then the boxes."""
    walls = scene.walls
    return [walls[0], walls[1], scene.floor, scene.ceiling, walls[2], walls[3], *(b.material for b in scene.boxes)]


_SURFACE_AXES = np.array([[2, 1], [0, 2], [0, 1]])
"""Texture coordinates (u, v) per normal axis: x-facing → (z, y), y-facing → (x, z), z-facing → (x, y)."""


def _albedo(points: np.ndarray, hits: _Hits, materials: list[Material]) -> np.ndarray:
    prim = hits.prim.ravel()
    table = {
        "color": np.array([m.color for m in materials], np.float32),
        "pattern": np.array([m.pattern for m in materials]),
        "scale": np.array([m.scale for m in materials], np.float32),
        "contrast": np.array([m.contrast for m in materials], np.float32),
        "seed": np.array([m.seed for m in materials], np.int64),
    }
    flat = points.reshape(-1, 3)
    uv_axes = _SURFACE_AXES[hits.axis.ravel()]
    u = np.take_along_axis(flat, uv_axes[:, :1], axis=1)[:, 0]
    v = np.take_along_axis(flat, uv_axes[:, 1:], axis=1)[:, 0]
    albedo = np.empty((prim.size, 3), np.float32)
    patterns = table["pattern"][prim]
    for pattern in np.unique(patterns):
        pick = np.flatnonzero(patterns == pattern)
        params = {key: values[prim[pick]] for key, values in table.items()}
        params["row"] = params["scale"] * 8
        albedo[pick] = _TEXTURES[Pattern(pattern)](u[pick], v[pick], params)
    return albedo.reshape(*hits.t.shape, 3)


def _normals(hits: _Hits) -> np.ndarray:
    normals = np.zeros((*hits.t.shape, 3), np.float32)
    np.put_along_axis(normals, hits.axis[..., None].astype(np.int64), hits.sign[..., None].astype(np.float32), axis=-1)
    return normals


def _blur(image: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication: the softness of a cheap sensor."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    return (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4


def _shade_rgb(scene: Scene, visible: _Hits, directions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    origin = np.asarray(scene.camera.position, np.float32)
    points = origin + visible.t[..., None] * directions
    albedo = _albedo(points, visible, _materials(scene))
    to_light = np.asarray(scene.light, np.float32) - points
    distance = np.linalg.norm(to_light, axis=-1)
    lambert = np.clip((_normals(visible) * to_light).sum(-1) / distance, 0, 1)
    light = scene.ambient + scene.light_power * lambert / (1 + (distance / 4.0) ** 2)
    height, width = visible.t.shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32),
                         indexing="ij")  # fmt: skip
    vignette = 1 - 0.09 * (xx**2 + yy**2)
    gains = (rng.uniform(0.92, 1.08, 3) * rng.uniform(0.85, 1.15) * 255).astype(np.float32)
    image = _blur(albedo * (light * vignette)[..., None] * gains)
    image += rng.standard_normal(image.shape, dtype=np.float32) * (np.float32(rng.uniform(1.5, 3.5)) + 0.015 * image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _projector_shadow(disparity: np.ndarray, max_shift: int) -> np.ndarray:
    """Pixels the IR projector cannot see: a nearer surface within ``shift`` columns to the right blocks them."""
    shadow = np.zeros(disparity.shape, bool)
    for shift in range(1, max_shift + 1):
        shadow[:, :-shift] |= disparity[:, shift:] - disparity[:, :-shift] > shift
    return shadow


def _sense_depth(
    scene: Scene, visible: _Hits, hidden: _Hits, directions: np.ndarray, focal: float, *, rng: np.random.Generator
) -> np.ndarray:
    """Kinect-v1-like measurement of the closest surface's z (millimetres, 0 = no reading)."""
    front = np.where(hidden.t < visible.t, hidden.t, visible.t)
    nearest = _Hits(front, np.where(hidden.t < visible.t, hidden.prim, visible.prim),
                    np.where(hidden.t < visible.t, hidden.axis, visible.axis),
                    np.where(hidden.t < visible.t, hidden.sign, visible.sign))  # fmt: skip
    noisy = front + rng.standard_normal(front.shape, dtype=np.float32) * (0.0012 + 0.0019 * (front - 0.4) ** 2)
    measured = 1 / (np.rint(1 / np.maximum(noisy, 1e-3) / DISPARITY_STEP) * DISPARITY_STEP)
    dropout = np.array([m.depth_dropout for m in _materials(scene)], np.float32)[nearest.prim]
    unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    grazing = np.abs((_normals(nearest) * unit).sum(-1)) < 0.12
    disparity = focal * PROJECTOR_BASELINE_M / front
    height, width = front.shape
    cell = width / 40  # hole blobs scale with the image, so every resolution looks alike
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32) / cell, np.arange(height, dtype=np.float32) / cell)
    blobs = _fbm(cols, rows, int(rng.integers(1 << 20)))
    weak_return = 0.12 * np.clip((front - 3.0) / 4.0, 0, 1)  # more holes at range
    invalid = (
        (front < MIN_RANGE_M) | (front > MAX_RANGE_M)
        | (rng.random(front.shape, dtype=np.float32) < dropout)
        | (grazing & (rng.random(front.shape, dtype=np.float32) < 0.6))
        | _projector_shadow(disparity, max_shift=max(2, width // 20))
        | (blobs > 0.88 - weak_return)
    )  # fmt: skip
    return np.where(invalid, 0, np.rint(measured * 1000)).clip(0, 65535).astype(np.uint16)


def _labels(scene: Scene, visible: _Hits, hidden: _Hits, rng: np.random.Generator) -> np.ndarray:
    labels_of_prim = np.array([CLASS_ID["wall"]] * 2 + [CLASS_ID["floor"], CLASS_ID["ceiling"]] + [CLASS_ID["wall"]] * 2
                              + [box.label for box in scene.boxes], np.uint8)  # fmt: skip
    labels = labels_of_prim[np.where(hidden.t < visible.t, hidden.prim, visible.prim)]
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    return np.where(edge & (rng.random(labels.shape, dtype=np.float32) < 0.5), 0, labels).astype(np.uint8)


def render(scene: Scene, height: int, width: int, seed: int) -> dict[str, np.ndarray]:
    """Render ``scene``: ``rgb`` uint8 H×W×3, ``depth`` uint16 mm (0 = no reading), ``label`` uint8 NYU-40."""
    directions, focal = _ray_directions(scene.camera, height, width)
    origin = np.asarray(scene.camera.position, np.float32)
    visible, hidden = _cast(scene, origin, directions, focal)
    rng = np.random.default_rng([seed, 1])
    rgb = _shade_rgb(scene, visible, directions, rng)
    depth = _sense_depth(scene, visible, hidden, directions, focal, rng=rng)
    return {"rgb": rgb, "depth": depth, "label": _labels(scene, visible, hidden, rng)}
