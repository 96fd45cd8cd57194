"""The NYUv2 split and class-mapping files shipped with the package (``data/resources/``), read lazily."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSet, voc_palette
from .errors import DatasetError
from .mat import load_mat_v5, mat_key

NYUV2_SPLITS = "splits.mat"
NYUV2_MAPPING_40 = "classMapping40.mat"
NYUV2_MAPPING_13 = "class13Mapping.mat"

RESOURCE_MD5 = {
    NYUV2_SPLITS: "08e3c3aea27130ac7c01ffd739a4535f",
    NYUV2_MAPPING_40: "e377c88729dd63af81205ac9a8634a19",
    NYUV2_MAPPING_13: "d62deeb2e5bc7aad038724cb95d36314",
}
"""Checksums of the official files (identical to the copies in the NYU toolbox and nicr-scene-analysis-datasets)."""

NYUV2_NUM_FRAMES = 1449
NYUV2_SPLIT_COUNTS = {"train": 795, "test": 654}


def resource_path(name: str) -> Path:
    """Path of a packaged resource file."""
    return Path(str(files("rgbxseg").joinpath("data", "resources", name)))


@dataclass(frozen=True)
class NYUv2Resources:
    """Split indices (0-based frame indices) and look-up tables that include void: ``lut[0] == 0``."""

    train_indices: np.ndarray
    test_indices: np.ndarray
    lut_894_to_40: np.ndarray
    lut_40_to_13: np.ndarray
    names_894: tuple[str, ...]


def _cell_strings(cells: Any) -> tuple[str, ...]:
    return tuple("".join(str(part) for part in np.asarray(cell).ravel()) for cell in np.asarray(cells).ravel())


def _lut_with_void(values: Any, num_source: int, num_target: int, path: Path) -> np.ndarray:
    mapping = np.asarray(values).ravel()
    if mapping.size != num_source or mapping.min() < 1 or mapping.max() > num_target:
        raise DatasetError(f"{path}: expected {num_source} class ids in 1..{num_target}; the file is damaged")
    return np.concatenate([[0], mapping]).astype(np.uint8)


def _split_indices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    splits = load_mat_v5(path)
    train = np.asarray(mat_key(splits, "trainNdxs", path), dtype=np.int64).ravel() - 1
    test = np.asarray(mat_key(splits, "testNdxs", path), dtype=np.int64).ravel() - 1
    counts = {"train": train.size, "test": test.size}
    union = np.union1d(train, test)
    if (
        counts != NYUV2_SPLIT_COUNTS
        or union.size != NYUV2_NUM_FRAMES
        or not np.array_equal(union, np.arange(union.size))
    ):
        raise DatasetError(f"{path}: expected disjoint 795/654 indices covering 1..1449, got {counts}")
    return train, test


@functools.cache
def nyuv2_resources() -> NYUv2Resources:
    """Load the three packaged NYUv2 files (needs scipy) and check their content."""
    train, test = _split_indices(resource_path(NYUV2_SPLITS))
    path_40 = resource_path(NYUV2_MAPPING_40)
    mapping_40 = load_mat_v5(path_40)
    path_13 = resource_path(NYUV2_MAPPING_13)
    mapping_13 = mat_key(load_mat_v5(path_13), "classMapping13", path_13)[0, 0]
    return NYUv2Resources(
        train_indices=train,
        test_indices=test,
        lut_894_to_40=_lut_with_void(mat_key(mapping_40, "mapClass", path_40), 894, 40, path_40),
        lut_40_to_13=_lut_with_void(mapping_13["labels13"], 40, 13, path_13),
        names_894=_cell_strings(mat_key(mapping_40, "allClassName", path_40)),
    )


@functools.cache
def nyuv2_894() -> ClassSet:
    """The 894 raw NYUv2 classes, names from ``allClassName`` of the packaged ``classMapping40.mat`` (needs scipy)."""
    names = nyuv2_resources().names_894
    return ClassSet("nyuv2_894", names, tuple(voc_palette(len(names) + 1)))
