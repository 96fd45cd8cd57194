"""SUN RGB-D preparation from a miniature tree with the real metadata file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_helpers import write_sun_sample, write_sun_toolbox
from rgbxseg.data import DatasetError, MissingFileError, RGBXDataset, TrainAugmentation, prepare_sunrgbd

FOLDERS = [
    "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize",
    "kv1/NYUdata/NYU0001",
    "realsense/lg/2014_10_24-16_15_35-1311000073",
    "xtion/xtion_align_data/2014_12_b/s1",
    "kv1/b3dodata/img_0063",
    "kv2/align_kv2/2014-12-10_14-44-42_094959634447_rgbf000031-resize",
]
SIZES = [(10, 14), (12, 16), (10, 14), (9, 11), (12, 16), (10, 14)]
TRAIN = FOLDERS[:3] + FOLDERS[5:]


def _make_tree(base: Path, labels_override: dict[int, np.ndarray] | None = None) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(3)
    sources: dict[str, list[np.ndarray]] = {"millimetres": [], "labels": []}
    for folder, (height, width) in zip(FOLDERS, SIZES, strict=True):
        millimetres = rng.integers(400, 12000, (height, width)).astype(np.uint16)  # includes values above 8192
        stored = (millimetres << 3) | (millimetres >> 13)  # as SUN stores depth: rotated left by 3 bits
        write_sun_sample(
            base / "SUNRGBD", folder, rng.integers(0, 256, (height, width, 3), dtype=np.uint8), stored, stored
        )
        sources["millimetres"].append(millimetres)
        sources["labels"].append(rng.integers(0, 38, (height, width)))
    labels = [*sources["labels"]]
    for index, label in (labels_override or {}).items():
        labels[index] = label
    write_sun_toolbox(base / "SUNRGBDtoolbox", FOLDERS, labels, TRAIN)
    return sources


EXPECTED = {"train": 4, "test": 2}


def _prepare(base: Path) -> None:
    prepare_sunrgbd(base / "SUNRGBD", base / "SUNRGBDtoolbox", base / "out", progress=False, expected_counts=EXPECTED)


@pytest.fixture(scope="module")
def sun(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, list[np.ndarray]]]:
    base = tmp_path_factory.mktemp("sun")
    sources = _make_tree(base)
    out = base / "prepared"
    summary = prepare_sunrgbd(base / "SUNRGBD", base / "SUNRGBDtoolbox", out, progress=False, expected_counts=EXPECTED)
    assert dict(summary.counts) == EXPECTED
    return base, out, sources


def test_samples_equal_an_independent_conversion(sun: tuple[Path, Path, dict[str, list[np.ndarray]]]) -> None:
    base, out, sources = sun
    for index, folder in enumerate(FOLDERS):
        stem = f"{index:05d}"
        name = folder.rsplit("/", 1)[-1]
        assert (out / "rgb" / f"{stem}.jpg").read_bytes() == (
            base / "SUNRGBD" / folder / "image" / f"{name}.jpg"
        ).read_bytes()
        millimetres = sources["millimetres"][index]
        refined = np.asarray(Image.open(out / "depth" / f"{stem}.png"))
        raw = np.asarray(Image.open(out / "depth_raw" / f"{stem}.png"))
        assert refined.dtype == np.uint16 and np.array_equal(refined, np.minimum(millimetres, 8000))
        assert np.array_equal(raw, np.where(millimetres > 8000, 0, millimetres))
        assert np.array_equal(np.asarray(Image.open(out / "labels" / f"{stem}.png")), sources["labels"][index])


def test_split_cameras_and_meta(sun: tuple[Path, Path, dict[str, list[np.ndarray]]]) -> None:
    _, out, _ = sun
    assert (out / "train.txt").read_text().split() == ["00000", "00001", "00002", "00005"]
    assert (out / "test.txt").read_text().split() == ["00003", "00004"]
    samples = json.loads((out / "samples.json").read_text())
    assert samples["00001"]["camera"] == "kv1/NYUdata" and samples["00003"]["sensor"] == "xtion"
    assert samples["00000"]["intrinsics_px"] == {"fx": 520.0, "fy": 521.0, "cx": 7.0, "cy": 5.0}
    assert samples["00000"]["scene"] == "bedroom"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["image_size"] is None  # sizes vary by sensor
    assert meta["label_sets"]["37"]["num_classes"] == 37 and meta["modalities"]["rgb"]["ext"] == "jpg"
    assert meta["modalities"]["depth"]["source_encoding"] == "sun_shifted"
    assert "clipped to 8000" in meta["modalities"]["depth"]["conversion"]


def test_dataset_crops_varying_sizes_to_one(sun: tuple[Path, Path, dict[str, list[np.ndarray]]]) -> None:
    dataset = RGBXDataset(sun[1], modalities=("depth",), transform=TrainAugmentation(crop_size=(8, 12), seed=0))
    assert dataset.num_classes == 37 and dataset.sample_info["00000"]["camera"] == "kv2/kinect2data"
    shapes = {tuple(dataset[i]["label"].shape) for i in range(len(dataset))}
    assert shapes == {(8, 12)}


def test_official_counts_are_checked_by_default(
    sun: tuple[Path, Path, dict[str, list[np.ndarray]]], tmp_path: Path
) -> None:
    base = sun[0]
    with pytest.raises(DatasetError, match=r"allsplit\.mat: the split gives \{'train': 4, 'test': 2\}.*5285"):
        prepare_sunrgbd(base / "SUNRGBD", base / "SUNRGBDtoolbox", tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({2: np.full((10, 14), 40)}, r"SUNRGBD2Dseg\.mat entry 2: label values go up to 40, but sunrgbd_37 has 37"),
        ({4: np.zeros((11, 16))}, r"differ in size .*SUNRGBD2Dseg\.mat entry 4 is 11×16"),
    ],
)
def test_bad_labels_name_the_file(tmp_path: Path, override: dict[int, np.ndarray], message: str) -> None:
    _make_tree(tmp_path, override)
    with pytest.raises(DatasetError, match=message):
        _prepare(tmp_path)


def test_missing_sample_file_is_named(tmp_path: Path) -> None:
    _make_tree(tmp_path)
    missing = tmp_path / "SUNRGBD" / FOLDERS[3] / "depth_bfx" / "s1.png"
    missing.unlink()
    with pytest.raises(MissingFileError, match=str(missing)):
        _prepare(tmp_path)
