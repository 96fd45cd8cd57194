"""Synthetic indoor scenes: determinism, label statistics, the depth-only structures and the sensor model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rgbxseg.classes import NYUV2_40
from rgbxseg.data import RGBXDataset, TrainAugmentation
from rgbxseg.data.synthetic import (
    CLASS_ID,
    DEPTH_ONLY_CLASS,
    Camera,
    Material,
    Scene,
    build_scene,
    generate_synthetic_dataset,
    render,
    render_scene,
)

SEEDS = range(16)
DEPTH_ONLY = CLASS_ID[DEPTH_ONLY_CLASS]


@pytest.fixture(scope="module")
def frames() -> list[dict[str, np.ndarray]]:
    return [render_scene(seed, 60, 80) for seed in SEEDS]


def test_frames_are_deterministic_and_typed(frames: list[dict[str, np.ndarray]]) -> None:
    again = render_scene(3, 60, 80)
    for key, dtype, shape in (
        ("rgb", np.uint8, (60, 80, 3)),
        ("depth", np.uint16, (60, 80)),
        ("label", np.uint8, (60, 80)),
    ):
        assert again[key].dtype == dtype and again[key].shape == shape
        assert np.array_equal(again[key], frames[3][key])
    assert not np.array_equal(frames[3]["rgb"], frames[4]["rgb"])


def test_label_statistics_are_sensible(frames: list[dict[str, np.ndarray]]) -> None:
    counts = np.sum([np.bincount(f["label"].ravel(), minlength=41) for f in frames], axis=0)
    shares = counts / counts.sum()
    assert counts.size == 41  # nothing above the 40 NYU classes
    assert (counts[1:] > 0).sum() >= 15
    assert shares[1:].max() < 0.5 and np.argmax(shares[1:]) + 1 == CLASS_ID["wall"]
    assert shares[CLASS_ID["floor"]] > 0.05 and 0.0 < shares[0] < 0.1  # some void, as on hand-labelled edges
    assert min(np.count_nonzero(np.bincount(f["label"].ravel())[1:]) for f in frames) >= 4


def test_depth_looks_like_a_kinect(frames: list[dict[str, np.ndarray]]) -> None:
    for frame in frames:
        depth = frame["depth"]
        valid = depth[depth > 0]
        assert valid.min() >= 500 and valid.max() <= 10000
        assert 0.001 < (depth == 0).mean() < 0.4


def test_depth_only_structures_change_depth_and_labels_but_not_rgb() -> None:
    visible_share = []
    for seed in range(6):
        scene = build_scene(seed)
        assert any(box.depth_only and box.label == DEPTH_ONLY for box in scene.boxes)
        without = replace(scene, boxes=tuple(box for box in scene.boxes if not box.depth_only))
        with_structures, plain = render(scene, 60, 80, seed), render(without, 60, 80, seed)
        assert np.array_equal(with_structures["rgb"], plain["rgb"])
        region = with_structures["label"] == DEPTH_ONLY
        visible_share.append(region.mean())
        assert not np.any(plain["label"] == DEPTH_ONLY)
        both_valid = region & (with_structures["depth"] > 0) & (plain["depth"] > 0)
        nearer, behind = with_structures["depth"][both_valid], plain["depth"][both_valid]
        assert np.all(nearer <= behind) and np.mean(nearer < behind) > 0.7  # equal only where a side meets the wall
    assert np.mean(np.array(visible_share) > 0.005) >= 0.8


def _wall_at(distance: float) -> Scene:
    """A huge room whose front wall fills the view at ``distance`` metres, without boxes."""
    grey = Material((0.5, 0.5, 0.5))
    camera = Camera(position=(20.0, 20.0, 40.0 - distance), yaw=0.0, pitch=0.0, roll=0.0)
    return Scene((40.0, 40.0, 40.0), (grey,) * 4, grey, grey, (), camera, (20.0, 39.0, 20.0), 0.5, 0.5)


def test_depth_noise_grows_with_distance() -> None:
    spreads = []
    for distance in (1.0, 4.0):
        depth = render(_wall_at(distance), 60, 80, seed=0)["depth"]
        valid = depth[depth > 0].astype(np.float64)
        assert abs(np.median(valid) - distance * 1000) < 0.01 * distance * 1000
        spreads.append(valid.std())
    assert spreads[1] > 3 * spreads[0]


def test_generated_dataset_is_canonical_and_reproducible(tmp_path: Path) -> None:
    root = generate_synthetic_dataset(
        tmp_path / "a", num_train=4, num_test=2, height=48, width=64, seed=7, progress=False
    )
    other = generate_synthetic_dataset(
        tmp_path / "b", num_train=5, num_test=2, height=48, width=64, seed=7, progress=False
    )
    assert root == tmp_path / "a"
    for folder in ("rgb", "depth", "labels"):
        for path in sorted((root / folder).iterdir()):
            assert (other / folder / path.name).read_bytes() == path.read_bytes()  # more frames keep the first ones
    meta = json.loads((root / "meta.json").read_text())
    assert meta["dataset"] == "synthetic" and meta["splits"] == {"train": 4, "test": 2}
    assert meta["label_sets"]["40"]["names"] == list(NYUV2_40.names)
    assert meta["modalities"]["depth"]["unit"] == "mm"
    assert meta["camera"]["intrinsics_px"] == {"fx": pytest.approx(518.86 / 10), "fy": pytest.approx(518.86 / 10),
                                               "cx": 32.0, "cy": 24.0}  # fmt: skip
    dataset = RGBXDataset(root, transform=TrainAugmentation(crop_size=(32, 32), seed=0))
    sample = dataset[1]
    assert sample["rgb"].shape == (3, 32, 32) and sample["depth"].shape == (1, 32, 32)
    assert dataset.num_classes == 40 and sample["id"] == "train_00001"
