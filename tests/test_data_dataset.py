"""RGBXDataset over the canonical layout: normalisation, batching, and a clear error for each bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rgbxseg.data import (
    DatasetError,
    IncompleteDatasetError,
    MissingFileError,
    RGBXDataset,
    TrainAugmentation,
    validate_dataset,
)
from rgbxseg.data.depth import metres_to_mm
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.inputs import NYUV2_DEPTH_MEAN_M, NYUV2_DEPTH_STD_M
from rgbxseg.models import ASYMFORMER_NYUV2_EVAL

SIZE = (48, 64)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return generate_synthetic_dataset(root, num_train=4, num_test=2, height=SIZE[0], width=SIZE[1], progress=False)


@pytest.fixture
def copy(prepared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared, tmp_path / "copy"))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_sample_is_normalised_from_the_stored_files(prepared: Path) -> None:
    dataset = RGBXDataset(prepared, split="test", input_spec=ASYMFORMER_NYUV2_EVAL)
    sample = dataset[1]
    stem = dataset.ids[1]
    bgr = _png(prepared / "rgb" / f"{stem}.png")[..., ::-1].astype(np.float32) / 255  # the spec feeds B, G, R
    rgb_norm = ASYMFORMER_NYUV2_EVAL.rgb.normalization
    mean, std = np.array(rgb_norm.mean), np.array(rgb_norm.std)
    expected_rgb = ((bgr - mean) / std).transpose(2, 0, 1)
    depth = _png(prepared / "depth" / f"{stem}.png").astype(np.float32) / 1000
    assert sample["id"] == stem == "test_00001"
    assert sample["rgb"].dtype == torch.float32 and torch.allclose(
        sample["rgb"], torch.from_numpy(expected_rgb).float(), atol=1e-5
    )
    expected_depth = (depth - NYUV2_DEPTH_MEAN_M) / NYUV2_DEPTH_STD_M
    assert torch.allclose(sample["depth"][0], torch.from_numpy(expected_depth).float(), atol=1e-5)
    assert sample["label"].dtype == torch.int64
    assert torch.equal(sample["label"], torch.from_numpy(_png(prepared / "labels" / f"{stem}.png").astype(np.int64)))
    assert dataset.class_set.name == "nyuv2_40" and dataset.meta["dataset"] == "synthetic"


def test_batches_collate(prepared: Path) -> None:
    dataset = RGBXDataset(prepared, transform=TrainAugmentation(crop_size=(32, 48)))
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["rgb"].shape == (3, 3, 32, 48) and batch["depth"].shape == (3, 1, 32, 48)
    assert batch["label"].shape == (3, 32, 48) and batch["id"] == ["train_00000", "train_00001", "train_00002"]
    assert int(batch["label"].min()) >= 0 and int(batch["label"].max()) <= 40


def test_rgb_only_dataset(prepared: Path) -> None:
    assert set(RGBXDataset(prepared, modalities=())[0]) == {"rgb", "label", "id"}


def _damage(root: Path, problem: str) -> str:
    """Damage sample train_00001 of a canonical tree; returns the expected error pattern."""
    stem = "train_00001"
    if problem == "missing":
        (root / "depth" / f"{stem}.png").unlink()
        return rf"depth/{stem}\.png: file is missing, but its sample is listed in train\.txt"
    if problem == "corrupt":
        (root / "rgb" / f"{stem}.png").write_bytes(b"not a png at all")
        return rf"rgb/{stem}\.png: cannot be decoded"
    if problem == "size":
        Image.fromarray(np.zeros((SIZE[0], SIZE[1] - 1), np.uint8)).save(root / "labels" / f"{stem}.png")
        return rf"differ in size .*labels/{stem} is 48×63"
    if problem == "depth8":
        Image.fromarray(np.zeros(SIZE, np.uint8)).save(root / "depth" / f"{stem}.png")
        return rf"depth/{stem}\.png: depth is 8-bit but this dataset declares 16-bit millimetres"
    if problem == "label":
        Image.fromarray(np.full(SIZE, 41, np.uint8)).save(root / "labels" / f"{stem}.png")
        return rf"labels/{stem}\.png: label values go up to 41, but nyuv2_40 has 40 classes"
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / "labels" / f"{stem}.png")
    return rf"labels/{stem}\.png: labels must be single-channel uint8"


@pytest.mark.parametrize("problem", ["missing", "corrupt", "size", "depth8", "label", "colour_label"])
def test_bad_sample_files_are_named(copy: Path, problem: str) -> None:
    pattern = _damage(copy, problem)
    dataset = RGBXDataset(copy)
    dataset[0]  # the undamaged sample still loads
    with pytest.raises(DatasetError, match=pattern):
        dataset[1]
    with pytest.raises(DatasetError, match=pattern):
        validate_dataset(copy)


def test_missing_file_is_also_a_file_not_found_error(copy: Path) -> None:
    _damage(copy, "missing")
    with pytest.raises(FileNotFoundError):
        RGBXDataset(copy)[1]


def test_tree_level_errors(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(
        MissingFileError, match=r"val\.txt: split list is missing; available splits: \['train', 'test'\]"
    ):
        RGBXDataset(copy, split="val")
    with pytest.raises(DatasetError, match=r"no label set '13'; available: \['40'\]"):
        RGBXDataset(copy, label_set="13")
    with pytest.raises(DatasetError, match=r"no modality 'thermal' \(it has rgb: .*depth: metric depth"):
        RGBXDataset(copy, modalities=("thermal",))
    with pytest.raises(DatasetError, match="'rgb' is always loaded"):
        RGBXDataset(copy, modalities=("rgb", "depth"))
    with pytest.raises(MissingFileError, match="dataset directory does not exist"):
        RGBXDataset(tmp_path / "nowhere")
    (copy / "test.txt").write_text("train_00000\n")
    with pytest.raises(DatasetError, match=r"'train_00000' is listed in both train\.txt and test\.txt"):
        validate_dataset(copy)
    (copy / "meta.json").write_text("{ truncated")
    with pytest.raises(DatasetError, match=r"meta\.json: not valid JSON"):
        RGBXDataset(copy)
    (copy / "meta.json").unlink()
    with pytest.raises(IncompleteDatasetError, match=r"has no meta\.json, so its preparation did not finish"):
        RGBXDataset(copy)


def test_validation_reports_counts_and_statistics(prepared: Path) -> None:
    report = validate_dataset(prepared)
    assert report.counts == {"train": 4, "test": 2} and report.image_size == SIZE
    assert sum(report.pixel_counts["40"]["train"]) == 4 * SIZE[0] * SIZE[1]
    assert 500 < report.depth_mm["depth"]["test"]["mean"] < 10000


@pytest.mark.parametrize(
    ("metres", "message"),
    [(np.array([1.0, np.nan]), "NaN"), (np.array([1.0, -0.5]), "negative"), (np.array([70.0]), "does not fit")],
)
def test_metric_depth_conversion_refuses_bad_values(metres: np.ndarray, message: str) -> None:
    with pytest.raises(DatasetError, match=rf"frame 3 depths: depth .*{message}"):
        metres_to_mm(metres, "frame 3 depths")
    assert metres_to_mm(np.array([0.0, 1.2344, 1.2346]), "ok").tolist() == [0, 1234, 1235]
