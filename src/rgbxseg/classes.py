"""Class sets (names and colours) of the supported datasets. Label 0 is always void and drawn black.

A ground-floor module: models (weights metadata), data (preparation) and inference (colours) all use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def voc_palette(num_colors: int) -> list[tuple[int, int, int]]:
    """PASCAL-VOC bit-pattern colours: id 0 → black, 1 → (128, 0, 0), 2 → (0, 128, 0), 3 → (128, 128, 0), …"""
    colors = []
    for i in range(num_colors):
        r = g = b = 0
        value = i
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return colors


@dataclass(frozen=True)
class ClassSet:
    """Names of labels 1..K (label 0 is void) and a palette of K + 1 colours (index 0 = void = black)."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.names) + 1:
            raise ValueError(f"{self.name}: palette needs {len(self.names) + 1} colours (void first)")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette_array(self) -> np.ndarray:
        """(K + 1, 3) uint8 lookup table indexed by dataset label."""
        return np.asarray(self.palette, dtype=np.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {"class_set": self.name, "names": list(self.names), "palette": [list(c) for c in self.palette]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassSet:
        """Inverse of :meth:`to_dict` (as stored in a dataset's ``meta.json``)."""
        palette = tuple((int(r), int(g), int(b)) for r, g, b in data["palette"])
        return cls(str(data["class_set"]), tuple(str(n) for n in data["names"]), palette)


def _with_voc_palette(name: str, names: Sequence[str]) -> ClassSet:
    return ClassSet(name, tuple(names), tuple(voc_palette(len(names) + 1)))


NYUV2_40 = _with_voc_palette(
    "nyuv2_40",
    (
        "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
        "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
        "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
        "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
        "otherfurniture", "otherprop",
    ),
)  # fmt: skip
"""NYUv2 40 classes, names exactly as in ``classMapping40.mat`` (including the original "refridgerator")."""

NYUV2_13 = _with_voc_palette(
    "nyuv2_13",
    ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table", "tv", "wall",
     "window"),
)  # fmt: skip

SUNRGBD_37 = ClassSet("sunrgbd_37", NYUV2_40.names[:37], NYUV2_40.palette[:38])
"""SUN RGB-D 37 classes: the first 37 NYUv2-40 names in the same order (and the same colours)."""

MFNET_9 = _with_voc_palette(
    "mfnet_9", ("unlabeled", "car", "person", "bike", "curve", "car stop", "guardrail", "color cone", "bump")
)
"""MFNet classes. The release's label 0 ("unlabeled") is a real class counted in mIoU, so it is stored as 1 here."""

PST900_5 = _with_voc_palette("pst900_5", ("background", "fire-extinguisher", "backpack", "hand-drill", "survivor"))
"""PST900 classes. The release's label 0 ("background") is a real class, so it is stored as 1 here."""

CLASS_SETS: dict[str, ClassSet] = {c.name: c for c in (NYUV2_40, NYUV2_13, SUNRGBD_37, MFNET_9, PST900_5)}
"""Class sets defined in code. The NYUv2-894 set is read from a packaged file: :func:`rgbxseg.data.nyuv2_894`."""


def get_class_set(name: str) -> ClassSet:
    """Class set by name (``nyuv2_40``, ``nyuv2_13``, ``sunrgbd_37``, ``mfnet_9``, ``pst900_5``)."""
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise KeyError(
            f"unknown class set {name!r}; known: {', '.join(sorted(CLASS_SETS))} "
            "(nyuv2_894 comes from the packaged NYUv2 mapping: rgbxseg.data.nyuv2_894())"
        ) from None
