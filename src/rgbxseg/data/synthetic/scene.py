"""Scene description and the procedural room generator.

Coordinates are metres in the room frame: x to the right, y up, z forward; the room spans [0, W] × [0, H] × [0, D].
The camera stands near the wall z = 0 and looks roughly along +z, so furniture goes against the other three walls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ...classes import NYUV2_40

CLASS_ID = {name: index + 1 for index, name in enumerate(NYUV2_40.names)}
DEPTH_ONLY_CLASS = "otherstructure"


class Pattern(IntEnum):
    """Procedural texture families."""

    NOISE = 0
    WOOD = 1
    TILES = 2
    STRIPES = 3
    BOOKS = 4
    MOSAIC = 5
    GLASS = 6
    SCREEN = 7


@dataclass(frozen=True)
class Material:
    """Albedo colour (0..1), texture, its period in metres and strength, and the share of failed depth pixels."""

    color: tuple[float, float, float]
    pattern: Pattern = Pattern.NOISE
    scale: float = 0.5
    contrast: float = 0.15
    seed: int = 0
    depth_dropout: float = 0.0


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in room coordinates (x right, y up, z forward; metres)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    label: int
    material: Material
    depth_only: bool = False


@dataclass(frozen=True)
class Camera:
    """Camera position and orientation (yaw about y, pitch about the camera's x axis, roll about its z axis)."""

    position: tuple[float, float, float]
    yaw: float
    pitch: float
    roll: float

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit forward, right and up vectors in room coordinates."""
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([sy * cp, sp, cy * cp])
        right = np.array([cy, 0.0, -sy])
        up = np.cross(forward, right)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        return forward, cr * right + sr * up, cr * up - sr * right


@dataclass(frozen=True)
class Scene:
    """A room of size (width x, height y, depth z), its surfaces, contents, camera and light."""

    size: tuple[float, float, float]
    walls: tuple[Material, Material, Material, Material]  # faces x = 0, x = W, z = 0, z = D
    floor: Material
    ceiling: Material
    boxes: tuple[Box, ...]
    camera: Camera
    light: tuple[float, float, float]
    ambient: float
    light_power: float
    room_type: str = ""


# --- room generation --------------------------------------------------------------------------------------------------

_PAINT = [(0.86, 0.84, 0.78), (0.80, 0.82, 0.84), (0.90, 0.87, 0.80), (0.76, 0.80, 0.72), (0.88, 0.80, 0.72),
          (0.72, 0.76, 0.84), (0.93, 0.92, 0.90), (0.82, 0.74, 0.70)]  # fmt: skip
_WOOD = [(0.55, 0.38, 0.22), (0.68, 0.50, 0.32), (0.42, 0.28, 0.18), (0.78, 0.64, 0.45), (0.30, 0.22, 0.16)]
_FABRIC = [(0.35, 0.40, 0.55), (0.60, 0.25, 0.22), (0.45, 0.50, 0.35), (0.75, 0.72, 0.65), (0.30, 0.30, 0.32),
           (0.62, 0.55, 0.40)]  # fmt: skip
_WHITE = (0.92, 0.92, 0.90)
_CARDBOARD = (0.66, 0.52, 0.36)

Rect = tuple[float, float, float, float]
"""Floor footprint (x0, z0, x1, z1)."""

LOW, HIGH, FULL = "low", "high", "full"
"""Vertical bands of a wall that a wall-mounted item occupies: items in different bands may share a stretch."""

_INWARD = {0: (1, 0), 1: (-1, 0), 2: (0, 1), 3: (0, -1)}
"""Direction (x, z) from each wall (0: x = 0, 1: x = W, 2: z = 0, 3: z = D) into the room."""


def _along(rect: Rect, wall: int, start: float, end: float) -> Rect:
    """The part of ``rect`` between fractions ``start`` and ``end`` of its extent along ``wall``."""
    x0, z0, x1, z1 = rect
    if wall < 2:
        return x0, z0 + start * (z1 - z0), x1, z0 + end * (z1 - z0)
    return x0 + start * (x1 - x0), z0, x0 + end * (x1 - x0), z1


def _against(rect: Rect, wall: int, thickness: float) -> Rect:
    """The ``thickness``-deep part of ``rect`` that touches ``wall`` (backs of sofas, headboards)."""
    x0, z0, x1, z1 = rect
    return {0: (x0, z0, x0 + thickness, z1), 1: (x1 - thickness, z0, x1, z1),
            2: (x0, z0, x1, z0 + thickness), 3: (x0, z1 - thickness, x1, z1)}[wall]  # fmt: skip


def _in_front(rect: Rect, wall: int, thickness: float) -> Rect:
    """A ``thickness``-deep slab just outside the room-facing side of ``rect`` (book spines on a shelf)."""
    x0, z0, x1, z1 = rect
    return {0: (x1, z0, x1 + thickness, z1), 1: (x0 - thickness, z0, x0, z1),
            2: (x0, z1, x1, z1 + thickness), 3: (x0, z0 - thickness, x1, z0)}[wall]  # fmt: skip


def _shrink(rect: Rect, margin: float) -> Rect:
    return rect[0] + margin, rect[1] + margin, rect[2] - margin, rect[3] - margin


@dataclass(frozen=True)
class _Placement:
    """A stretch of a wall, ``length`` long from ``start``, and the floor footprint ``depth`` deep in front of it."""

    wall: int
    start: float
    length: float
    rect: Rect


@dataclass
class _RoomBuilder:
    """Collects boxes and keeps furniture, wall-mounted items and the camera's view apart."""

    rng: np.random.Generator
    size: tuple[float, float, float]
    reserved: list[Rect]
    boxes: list[Box] = field(default_factory=list)
    wall_spans: dict[int, list[tuple[float, float, str]]] = field(default_factory=lambda: {w: [] for w in range(4)})
    next_seed: int = 1

    def material(self, colors: list[tuple[float, float, float]] | tuple[float, float, float],
                 pattern: Pattern = Pattern.NOISE, scale: float = 0.5, contrast: float = 0.12,
                 depth_dropout: float = 0.0) -> Material:  # fmt: skip
        """A material with a colour from ``colors`` (one colour, or a list to pick from), slightly varied."""
        base = np.asarray(colors[int(self.rng.integers(len(colors)))] if isinstance(colors, list) else colors)
        self.next_seed += 1
        color = tuple(float(c) for c in np.clip(base * self.rng.uniform(0.9, 1.1, 3), 0, 1))
        return Material(color, pattern, scale, contrast, self.next_seed, depth_dropout)

    def add(
        self, rect: Rect, y0: float, y1: float, label: str, material: Material, *, depth_only: bool = False
    ) -> None:
        """A box with floor footprint ``rect`` from height ``y0`` to ``y1``."""
        self.boxes.append(Box((rect[0], y0, rect[1]), (rect[2], y1, rect[3]), CLASS_ID[label], material, depth_only))

    def footprint(self, wall: int, start: float, length: float, depth: float) -> Rect:
        """Floor footprint of an item ``length`` long from ``start`` along ``wall`` and ``depth`` deep."""
        width, _, room_depth = self.size
        end = start + length
        return {0: (0.0, start, depth, end), 1: (width - depth, start, width, end),
                2: (start, 0.0, end, depth), 3: (start, room_depth - depth, end, room_depth)}[wall]  # fmt: skip

    def is_free(self, rect: Rect) -> bool:
        x0, z0, x1, z1 = rect
        return all(x1 + 0.05 <= a or c + 0.05 <= x0 or z1 + 0.05 <= b or d + 0.05 <= z0 for a, b, c, d in self.reserved)

    def _span_free(self, wall: int, start: float, end: float, band: str) -> bool:
        return all(
            end + 0.05 <= a or b + 0.05 <= start or (FULL not in (band, other) and band != other)
            for a, b, other in self.wall_spans[wall]
        )

    def against_wall(self, length: float, depth: float, band: str = LOW, *, walls: tuple[int, ...] = (0, 1, 3),
                     start: float | None = None) -> _Placement | None:  # fmt: skip
        """Reserve a free stretch of a wall (random, or at ``start`` of ``walls[0]``) with its floor footprint."""
        for _ in range(1 if start is not None else 24):
            wall = walls[0] if start is not None else int(self.rng.choice(walls))
            limit = (self.size[2] if wall < 2 else self.size[0]) - length - 0.1
            if limit <= 0.1:
                continue
            at = float(np.clip(start, 0.1, limit)) if start is not None else float(self.rng.uniform(0.1, limit))
            rect = self.footprint(wall, at, length, depth)
            if self._span_free(wall, at, at + length, band) and (band == HIGH or self.is_free(rect)):
                self.wall_spans[wall].append((at, at + length, band))
                if band != HIGH:
                    self.reserved.append(rect)
                return _Placement(wall, at, length, rect)
        return None

    def in_room(self, width: float, depth: float, margin: float = 0.7, *, reserve: bool = True) -> Rect | None:
        """A free footprint at least ``margin`` away from the walls."""
        room_w, _, room_d = self.size
        if room_w - width - 2 * margin <= 0 or room_d - depth - 2 * margin <= 0:
            return None
        for _ in range(24):
            x0 = float(self.rng.uniform(margin, room_w - width - margin))
            z0 = float(self.rng.uniform(margin, room_d - depth - margin))
            rect = (x0, z0, x0 + width, z0 + depth)
            if self.is_free(rect):
                if reserve:
                    self.reserved.append(rect)
                return rect
        return None

    def on_wall(self, place: _Placement, heights: tuple[float, float], proud: float, label: str, material: Material,
                *, depth_only: bool = False) -> None:  # fmt: skip
        """A box on the placement's wall stretch from ``heights[0]`` to ``heights[1]``, ``proud`` metres deep."""
        rect = self.footprint(place.wall, place.start, place.length, proud)
        self.add(rect, *heights, label, material, depth_only=depth_only)


def _scatter(b: _RoomBuilder, rect: Rect, y: float, count: int) -> None:
    """Small objects (books, boxes, paper, props) on a surface at height ``y``."""
    for _ in range(count):
        kind = str(b.rng.choice(["books", "box", "paper", "otherprop", "otherprop"]))
        w, d = b.rng.uniform(0.08, 0.3, 2)
        if rect[2] - rect[0] <= w + 0.02 or rect[3] - rect[1] <= d + 0.02:
            continue
        x0, z0 = b.rng.uniform(rect[0], rect[2] - w), b.rng.uniform(rect[1], rect[3] - d)
        height, material = {
            "books": (b.rng.uniform(0.04, 0.2), b.material((0.5, 0.3, 0.3), Pattern.BOOKS, scale=0.02)),
            "box": (b.rng.uniform(0.08, 0.25), b.material(_CARDBOARD, contrast=0.08)),
            "paper": (0.006, b.material(_WHITE, contrast=0.03)),
            "otherprop": (b.rng.uniform(0.05, 0.3), b.material((0.5, 0.5, 0.5), Pattern.MOSAIC, scale=0.05)),
        }[kind]
        b.add((x0, z0, x0 + w, z0 + d), y, y + height, kind, material)


def _legged(
    b: _RoomBuilder, rect: Rect, top: float, label: str, material: Material, *, thickness: float = 0.04
) -> None:
    """A top of ``thickness`` at height ``top`` on four 5 cm legs (tables, desks, chair seats)."""
    b.add(rect, top - thickness, top, label, material)
    leg = 0.05
    for x, z in (
        (rect[0], rect[1]),
        (rect[2] - leg, rect[1]),
        (rect[0], rect[3] - leg),
        (rect[2] - leg, rect[3] - leg),
    ):
        b.add((x, z, x + leg, z + leg), 0.0, top - thickness, label, material)


def _chair(b: _RoomBuilder, rect: Rect, back_wall_side: int) -> None:
    material = b.material(_WOOD + _FABRIC, contrast=0.1)
    _legged(b, rect, 0.47, "chair", material, thickness=0.05)
    b.add(_against(rect, back_wall_side, 0.05), 0.47, 0.9, "chair", material)


def _table_with_chairs(b: _RoomBuilder, height: float, label: str) -> None:
    rect = b.in_room(b.rng.uniform(0.8, 1.5), b.rng.uniform(0.6, 0.9))
    if rect is None:
        return
    _legged(b, rect, height, label, b.material(_WOOD, Pattern.WOOD, scale=0.12))
    _scatter(b, _shrink(rect, 0.05), height, int(b.rng.integers(1, 5)))
    if height < 0.6:  # a coffee table has no chairs
        return
    mid_x = (rect[0] + rect[2]) / 2
    for seat, back in (((mid_x - 0.22, rect[1] - 0.5, mid_x + 0.22, rect[1] - 0.05), 2),
                       ((mid_x - 0.22, rect[3] + 0.05, mid_x + 0.22, rect[3] + 0.5), 3)):  # fmt: skip
        if b.rng.random() < 0.7 and b.is_free(seat):
            b.reserved.append(seat)
            _chair(b, seat, back)


def _lamp(b: _RoomBuilder, rect: Rect, y: float) -> None:
    cx, cz = (rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2
    b.add(
        (cx - 0.04, cz - 0.04, cx + 0.04, cz + 0.04), y, y + 0.25, "lamp", b.material((0.6, 0.58, 0.55), contrast=0.05)
    )
    b.add((cx - 0.14, cz - 0.14, cx + 0.14, cz + 0.14), y + 0.25, y + 0.45, "lamp",
          b.material([(0.95, 0.9, 0.75), _WHITE], contrast=0.04))  # fmt: skip


def _bed(b: _RoomBuilder) -> None:
    width = b.rng.uniform(1.0, 1.8)
    place = b.against_wall(width, 2.0)
    if place is None:
        return
    b.add(place.rect, 0.0, b.rng.uniform(0.45, 0.6), "bed", b.material([*_FABRIC, _WHITE], contrast=0.08, scale=0.2))
    b.add(_against(place.rect, place.wall, 0.08), 0.0, b.rng.uniform(0.9, 1.2), "bed",
          b.material(_WOOD, Pattern.WOOD, scale=0.15))  # fmt: skip
    pillow_zone = _shrink(_against(place.rect, place.wall, 0.5), 0.08)
    for start, end in ((0.0, 0.48), (0.52, 1.0)) if width > 1.3 else ((0.1, 0.9),):
        b.add(_along(pillow_zone, place.wall, start, end), 0.55, 0.68, "pillow",
              b.material([_WHITE, *_FABRIC], contrast=0.05))  # fmt: skip
    for offset in (-0.55, width + 0.05):
        stand = b.against_wall(0.45, 0.4, walls=(place.wall,), start=place.start + offset)
        if stand is not None:
            b.add(stand.rect, 0.0, 0.55, "night stand", b.material(_WOOD, Pattern.WOOD, scale=0.1))
            _lamp(b, _shrink(stand.rect, 0.08), 0.55)


def _low_furniture(b: _RoomBuilder, label: str, height: tuple[float, float], length: tuple[float, float]) -> None:
    """Dressers, cabinets, TV stands against a wall, with a TV or objects on top."""
    place = b.against_wall(b.rng.uniform(*length), b.rng.uniform(0.4, 0.55))
    if place is None:
        return
    top = b.rng.uniform(*height)
    b.add(place.rect, 0.0, top, label, b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.2, contrast=0.08))
    if b.rng.random() < 0.5:
        screen = b.material((0.05, 0.05, 0.06), Pattern.SCREEN, depth_dropout=0.5)
        b.add(_against(_shrink(place.rect, 0.1), place.wall, 0.06), top, top + b.rng.uniform(0.35, 0.6), "television",
              screen)  # fmt: skip
    else:
        _scatter(b, _shrink(place.rect, 0.04), top, int(b.rng.integers(1, 4)))


def _tall_furniture(b: _RoomBuilder, label: str) -> None:
    """Bookshelves (with rows of books 2 cm proud of the face), wardrobes and refrigerators."""
    depth = 0.35 if label == "bookshelf" else b.rng.uniform(0.55, 0.7)
    place = b.against_wall(b.rng.uniform(0.7, 1.2), depth, band=FULL)
    if place is None:
        return
    height = b.rng.uniform(1.6, 2.1)
    if label == "refridgerator":
        material = b.material([_WHITE, (0.85, 0.85, 0.83)], scale=0.3, contrast=0.04)
    else:
        material = b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.3, contrast=0.06)
    b.add(place.rect, 0.0, height, label, material)
    if label == "bookshelf":
        spines = _along(_in_front(place.rect, place.wall, 0.02), place.wall, 0.05, 0.95)
        for row in np.arange(0.1, height - 0.3, 0.38):
            b.add(
                spines,
                row,
                row + b.rng.uniform(0.2, 0.3),
                "books",
                b.material((0.4, 0.3, 0.25), Pattern.BOOKS, scale=0.03),
            )


def _sofa(b: _RoomBuilder) -> None:
    place = b.against_wall(b.rng.uniform(1.6, 2.4), 0.9)
    if place is None:
        return
    fabric = b.material(_FABRIC, scale=0.1, contrast=0.08)
    b.add(place.rect, 0.0, 0.42, "sofa", fabric)
    b.add(_against(place.rect, place.wall, 0.22), 0.42, 0.85, "sofa", fabric)
    b.add(_along(place.rect, place.wall, 0.0, 0.09), 0.42, 0.62, "sofa", fabric)
    b.add(_along(place.rect, place.wall, 0.91, 1.0), 0.42, 0.62, "sofa", fabric)
    backrest = _against(place.rect, place.wall, 0.45)
    for start in (0.15, 0.62)[: int(b.rng.integers(1, 3))]:
        cushion = _shrink(_along(backrest, place.wall, start, start + 0.23), 0.05)
        b.add(cushion, 0.42, 0.7, "pillow", b.material([_WHITE, *_FABRIC], contrast=0.05))


def _desk(b: _RoomBuilder) -> None:
    place = b.against_wall(b.rng.uniform(1.1, 1.6), b.rng.uniform(0.6, 0.75))
    if place is None:
        return
    _legged(b, place.rect, 0.75, "desk", b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.12))
    _scatter(b, _shrink(place.rect, 0.05), 0.75, int(b.rng.integers(1, 4)))
    dx, dz = _INWARD[place.wall]
    cx, cz = (place.rect[0] + place.rect[2]) / 2 + 0.75 * dx, (place.rect[1] + place.rect[3]) / 2 + 0.75 * dz
    seat = (cx - 0.23, cz - 0.23, cx + 0.23, cz + 0.23)
    if b.is_free(seat):
        b.reserved.append(seat)
        _chair(b, seat, {0: 1, 1: 0, 2: 3, 3: 2}[place.wall])  # the back faces away from the desk


def _counter_run(b: _RoomBuilder) -> None:
    """Kitchen: base cabinets with a counter top and a sink, upper cabinets above."""
    place = b.against_wall(b.rng.uniform(1.5, 3.0), 0.6)
    if place is None:
        return
    b.add(_shrink(place.rect, 0.02), 0.0, 0.86, "cabinet", b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.3))
    b.add(place.rect, 0.86, 0.9, "counter", b.material([(0.3, 0.3, 0.3), (0.85, 0.83, 0.8)], Pattern.TILES, scale=0.6))
    sink = _along(_shrink(_against(place.rect, place.wall, 0.45), 0.05), place.wall, 0.3, 0.55)
    b.add(sink, 0.9, 0.93, "sink", b.material((0.75, 0.76, 0.78), contrast=0.03))
    upper = b.against_wall(place.length, 0.35, band=HIGH, walls=(place.wall,), start=place.start)
    if upper is not None:
        b.on_wall(upper, (1.5, 2.2), 0.35, "cabinet", b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.3))


_WALL_ITEMS = {  # label: (length range, height range, bottom edge, standing out of the wall)
    "window": ((0.8, 1.6), (1.0, 1.4), 0.9, 0.01),
    "picture": ((0.3, 1.0), (0.25, 0.7), 1.3, 0.025),
    "whiteboard": ((1.2, 1.8), (0.8, 1.1), 1.0, 0.02),
    "mirror": ((0.4, 0.8), (0.6, 1.0), 1.1, 0.02),
}


def _wall_item(b: _RoomBuilder, label: str) -> None:
    """Windows (with curtains or blinds), pictures, whiteboards and mirrors: thin boxes on a wall."""
    lengths, heights, bottom, proud = _WALL_ITEMS[label]
    length, tall = b.rng.uniform(*lengths), b.rng.uniform(*heights)
    bottom = min(bottom + b.rng.uniform(-0.1, 0.2), b.size[1] - tall - 0.15)
    margin = 0.32 if label == "window" else 0.0  # room for curtains
    place = b.against_wall(length + 2 * margin, 0.02, band=HIGH)
    if place is None:
        return
    item = _Placement(place.wall, place.start + margin, length, place.rect)
    material = {
        "window": lambda: b.material((0.7, 0.8, 0.95), Pattern.GLASS, depth_dropout=1.0),
        "picture": lambda: b.material((0.5, 0.5, 0.5), Pattern.MOSAIC, scale=b.rng.uniform(0.03, 0.12)),
        "whiteboard": lambda: b.material(_WHITE, contrast=0.02),
        "mirror": lambda: b.material((0.7, 0.72, 0.75), Pattern.GLASS, depth_dropout=0.7),
    }[label]()
    b.on_wall(item, (bottom, bottom + tall), proud, label, material)
    if label != "window":
        return
    fabric = b.material(_FABRIC, Pattern.STRIPES, scale=0.08, contrast=0.08)
    if b.rng.random() < 0.5:
        for start in (place.start, item.start + length + 0.02):
            curtain = _Placement(place.wall, start, 0.3, place.rect)
            b.on_wall(curtain, (bottom - 0.1, bottom + tall + 0.15), 0.1, "curtain", fabric)
    else:
        b.on_wall(item, (bottom + tall * b.rng.uniform(0.3, 0.7), bottom + tall), 0.05, "blinds", fabric)


def _door(b: _RoomBuilder) -> None:
    place = b.against_wall(b.rng.uniform(0.8, 0.95), 0.02, band=FULL)
    if place is not None:
        wood = b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.4)
        b.on_wall(place, (0.0, min(2.05, b.size[1] - 0.1)), 0.02, "door", wood)


def _depth_only_structures(b: _RoomBuilder, camera: Camera, walls: tuple[Material, ...]) -> None:
    """Pillars, ledges and plinths that show the colour of the wall behind them (class ``otherstructure``).

    One pillar always stands on the wall the camera faces, near the view's centre, so nearly every frame has one.
    """
    _, height, depth = b.size
    cam_x, _, cam_z = camera.position
    centre = cam_x + math.tan(camera.yaw) * (depth - cam_z)
    wide = float(b.rng.uniform(0.3, 0.6))
    start = float(centre + b.rng.uniform(-1.0, 1.0) - wide / 2)
    pillar = b.against_wall(wide, float(b.rng.uniform(0.25, 0.45)), band=FULL, walls=(3,), start=start)
    if pillar is not None:
        b.add(pillar.rect, 0.0, height, DEPTH_ONLY_CLASS, walls[3], depth_only=True)
    for _ in range(int(b.rng.integers(1, 3))):
        kind = str(b.rng.choice(["pillar", "ledge", "plinth"]))
        length = {"pillar": (0.3, 0.6), "ledge": (1.0, 2.5), "plinth": (0.6, 1.8)}[kind]
        proud = float(b.rng.uniform(0.3, 0.5))
        place = b.against_wall(float(b.rng.uniform(*length)), proud,
                               band={"pillar": FULL, "ledge": HIGH, "plinth": LOW}[kind])  # fmt: skip
        if place is None:
            continue
        y0, y1 = {"pillar": (0.0, height), "ledge": (height - b.rng.uniform(0.25, 0.4), height),
                  "plinth": (0.0, b.rng.uniform(0.2, 0.5))}[kind]  # fmt: skip
        b.on_wall(place, (y0, y1), proud, DEPTH_ONLY_CLASS, walls[place.wall], depth_only=True)


def _wall_shelves(b: _RoomBuilder) -> None:
    """One or two wall-mounted boards with objects on them."""
    place = b.against_wall(b.rng.uniform(0.6, 1.4), 0.25, band=HIGH)
    if place is None:
        return
    wood = b.material([*_WOOD, _WHITE], Pattern.WOOD, scale=0.2)
    for level in range(int(b.rng.integers(1, 3))):
        y = 1.2 + 0.35 * level
        b.on_wall(place, (y - 0.03, y), 0.25, "shelves", wood)
        _scatter(b, _shrink(place.rect, 0.02), y, int(b.rng.integers(1, 4)))


_CLUTTER = {  # label: (width, depth, height) before a random scale
    "box": (0.5, 0.4, 0.4),
    "bag": (0.35, 0.2, 0.4),
    "clothes": (0.5, 0.4, 0.08),
    "otherprop": (0.3, 0.3, 0.5),
    "otherfurniture": (0.7, 0.5, 0.8),
}


def _floor_clutter(b: _RoomBuilder) -> None:
    """A floor mat (it may lie under other things) and a few objects on the floor."""
    if b.rng.random() < 0.5:
        mat = b.in_room(b.rng.uniform(1.0, 2.0), b.rng.uniform(0.7, 1.4), margin=0.5, reserve=False)
        if mat is not None:
            b.add(mat, 0.0, 0.012, "floor mat", b.material(_FABRIC, Pattern.STRIPES, scale=0.15, contrast=0.1))
    for _ in range(int(b.rng.integers(1, 4))):
        label = str(b.rng.choice(list(_CLUTTER)))
        w, d, h = np.asarray(_CLUTTER[label]) * b.rng.uniform(0.7, 1.3)
        rect = b.in_room(w, d, margin=0.3)
        if rect is None:
            place = b.against_wall(w, d)
            rect = place.rect if place is not None else None
        if rect is not None:
            pattern = Pattern.MOSAIC if label in ("otherprop", "clothes") else Pattern.NOISE
            b.add(rect, 0.0, h, label, b.material([*_FABRIC, _CARDBOARD], pattern, scale=0.1))


_ROOM_TYPES: dict[str, tuple[Callable[[_RoomBuilder], None], ...]] = {
    "bedroom": (_bed, lambda b: _low_furniture(b, "dresser", (0.75, 1.0), (0.8, 1.4)),
                lambda b: _tall_furniture(b, "cabinet"), lambda b: _wall_item(b, "mirror")),
    "living room": (_sofa, lambda b: _table_with_chairs(b, 0.45, "table"),
                    lambda b: _low_furniture(b, "cabinet", (0.45, 0.6), (1.0, 1.8)),
                    lambda b: _tall_furniture(b, "bookshelf"), lambda b: _wall_item(b, "picture")),
    "office": (_desk, _desk, lambda b: _tall_furniture(b, "bookshelf"), lambda b: _wall_item(b, "whiteboard"),
               lambda b: _low_furniture(b, "cabinet", (0.7, 0.9), (0.6, 1.0))),
    "kitchen": (_counter_run, lambda b: _tall_furniture(b, "refridgerator"),
                lambda b: _table_with_chairs(b, 0.75, "table"),
                lambda b: _low_furniture(b, "cabinet", (0.8, 0.9), (0.8, 1.2))),
}  # fmt: skip
"""Furniture builders per room type, in placement order (large items first)."""

_EXTRA_FURNITURE: tuple[Callable[[_RoomBuilder], None], ...] = (
    lambda b: _low_furniture(b, "otherfurniture", (0.5, 1.1), (0.5, 1.2)),
    lambda b: _low_furniture(b, "cabinet", (0.6, 1.0), (0.6, 1.4)),
    lambda b: _tall_furniture(b, "bookshelf"),
    _wall_shelves,
)
"""Furniture any room may have more of."""


def build_scene(seed: int) -> Scene:
    """A random room for ``seed``: size, surfaces, camera, light, furniture, decor and depth-only structures."""
    rng = np.random.default_rng([seed, 0])
    size = (float(rng.uniform(3.2, 6.0)), float(rng.uniform(2.5, 3.1)), float(rng.uniform(3.8, 7.0)))
    camera = Camera(
        position=(float(rng.uniform(0.35, 0.65) * size[0]), float(rng.uniform(1.1, 1.6)), float(rng.uniform(0.3, 0.9))),
        yaw=float(rng.uniform(-0.5, 0.5)), pitch=float(rng.uniform(-0.35, 0.0)), roll=float(rng.uniform(-0.04, 0.04)),
    )  # fmt: skip
    cam_x, _, cam_z = camera.position
    b = _RoomBuilder(rng, size, reserved=[(cam_x - 0.7, 0.0, cam_x + 0.7, cam_z + 1.0)])
    wall_pattern = Pattern.STRIPES if rng.random() < 0.3 else Pattern.NOISE
    paint = b.material(_PAINT, wall_pattern, scale=rng.uniform(0.1, 0.3), contrast=rng.uniform(0.04, 0.1))
    accent = b.material(_PAINT, Pattern.NOISE, scale=0.8, contrast=0.05) if rng.random() < 0.3 else paint
    walls = (paint, paint, paint, accent)
    floor_kind = int(rng.integers(3))
    floor = b.material(
        [_WOOD, [(0.8, 0.78, 0.74), (0.55, 0.55, 0.58)], _FABRIC][floor_kind],
        (Pattern.WOOD, Pattern.TILES, Pattern.NOISE)[floor_kind],
        scale=float(rng.uniform(*[(0.12, 0.25), (0.3, 0.6), (0.04, 0.1)][floor_kind])),
    )
    ceiling = b.material(_WHITE, scale=1.0, contrast=0.03)
    room_type = str(rng.choice(list(_ROOM_TYPES)))
    _depth_only_structures(b, camera, walls)
    for build in _ROOM_TYPES[room_type]:
        build(b)
    for build in (_door, lambda b: _wall_item(b, "window"), lambda b: _wall_item(b, "picture")):
        if rng.random() < 0.7:
            build(b)
    for index in rng.choice(len(_EXTRA_FURNITURE), size=int(rng.integers(1, 4)), replace=False):
        _EXTRA_FURNITURE[index](b)
    _floor_clutter(b)
    light = (float(rng.uniform(0.3, 0.7) * size[0]), size[1] - 0.05, float(rng.uniform(0.4, 0.8) * size[2]))
    return Scene(size, walls, floor, ceiling, tuple(b.boxes), camera, light, ambient=float(rng.uniform(0.4, 0.6)),
                 light_power=float(rng.uniform(0.5, 0.8)), room_type=room_type)  # fmt: skip
