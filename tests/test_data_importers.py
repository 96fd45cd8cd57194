"""Importers: round trips from the published trees into the canonical layout, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rgbxseg.data import (
    DatasetError,
    MissingFileError,
    RGBXDataset,
    import_asymformer,
    import_dformer,
    import_mfnet,
    import_pst900,
)

SIZE = (6, 8)
RNG = np.random.default_rng(5)


def _save(path: Path, array: np.ndarray, **options: object) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return array


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _asymformer_tree(src: Path, stems: dict[str, list[str]]) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {}
    src.mkdir(parents=True)
    for split, split_stems in stems.items():
        (src / f"{split}.txt").write_text("".join(f"{s}\n" for s in split_stems))
        for stem in split_stems:
            arrays[stem] = {
                "rgb": _save(src / "images" / f"{stem}.png", RNG.integers(0, 256, (*SIZE, 3), dtype=np.uint8)),
                "depth": _save(src / "depths" / f"{stem}.png", RNG.integers(0, 9000, SIZE).astype(np.uint16)),
                "labels": _save(src / "labels" / f"{stem}.png", RNG.integers(0, 41, SIZE).astype(np.uint16)),
            }
    return arrays


STEMS = {"train": ["3", "4", "5"], "test": ["1", "2"]}


def test_asymformer_round_trip(tmp_path: Path) -> None:
    arrays = _asymformer_tree(tmp_path / "src", STEMS)
    summary = import_asymformer(tmp_path / "src", tmp_path / "out", check_counts=False, progress=False)
    assert dict(summary.counts) == {"train": 3, "test": 2}
    out = tmp_path / "out"
    for stem, source in arrays.items():
        assert np.array_equal(_png(out / "rgb" / f"{stem}.png"), source["rgb"])
        assert np.array_equal(_png(out / "depth" / f"{stem}.png"), source["depth"])
        labels = _png(out / "labels" / f"{stem}.png")
        assert labels.dtype == np.uint8 and np.array_equal(labels, source["labels"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dataset"] == "nyuv2" and meta["default_label_set"] == "40"
    assert RGBXDataset(out, split="test").ids == ["1", "2"]


def test_asymformer_counts_are_checked(tmp_path: Path) -> None:
    _asymformer_tree(tmp_path / "src", STEMS)
    with pytest.raises(DatasetError, match=r"expected \{'train': 795, 'test': 654\}"):
        import_asymformer(tmp_path / "src", tmp_path / "out", progress=False)


def _break(src: Path, problem: str) -> str:
    """Damage sample 4 of an AsymFormer tree; returns the expected error pattern."""
    if problem == "missing":
        (src / "depths" / "4.png").unlink()
        return r"depths/4\.png\|\.jpg\|\.jpeg: no such file, but '4' is in a split list"
    if problem == "corrupt":
        (src / "images" / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        return r"images/4\.png: cannot be decoded"
    if problem == "truncated":
        path = src / "labels" / "4.png"
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return r"labels/4\.png: cannot be decoded"
    if problem == "size":
        _save(src / "labels" / "4.png", np.zeros((5, 8), np.uint8))
        return r"differ in size \(.*images/4\.png is 6×8, .*labels/4\.png is 5×8"
    if problem == "depth8":
        _save(src / "depths" / "4.png", np.zeros(SIZE, np.uint8))
        return r"depths/4\.png: depth in millimetres must be a 16-bit .*minmax_8bit"
    _save(src / "labels" / "4.png", np.full(SIZE, 41, np.uint8))
    return r"labels/4\.png: label values go up to 41, but nyuv2_40 has 40 classes"


@pytest.mark.parametrize("problem", ["missing", "corrupt", "truncated", "size", "depth8", "label"])
def test_asymformer_bad_input_names_the_file(tmp_path: Path, problem: str) -> None:
    _asymformer_tree(tmp_path / "src", STEMS)
    pattern = _break(tmp_path / "src", problem)
    with pytest.raises(DatasetError, match=pattern):
        import_asymformer(tmp_path / "src", tmp_path / "out", check_counts=False, progress=False)
    assert not (tmp_path / "out" / "meta.json").exists()


def _dformer_tree(src: Path, depth_folder: str = "Depth") -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {}
    src.mkdir(parents=True)
    for split, stems in STEMS.items():
        (src / f"{split}.txt").write_text("".join(f"RGB/{s}.jpg Label/{s}.png\n" for s in stems))
        for stem in stems:
            grey = RNG.integers(0, 256, SIZE, dtype=np.uint8)
            rgba = np.stack([grey, grey, grey, np.full(SIZE, 255, np.uint8)], axis=-1)  # matplotlib imsave output
            arrays[stem] = {
                "depth": grey,
                "labels": _save(src / "Label" / f"{stem}.png", RNG.integers(0, 41, SIZE, dtype=np.uint8)),
            }
            _save(src / "RGB" / f"{stem}.jpg", RNG.integers(0, 256, (*SIZE, 3), dtype=np.uint8), quality=90)
            if depth_folder == "HHA":
                _save(src / "HHA" / f"{stem}.jpg", RNG.integers(0, 256, (*SIZE, 3), dtype=np.uint8))
            else:
                _save(src / depth_folder / f"{stem}.png", rgba)
    return arrays


def test_dformer_minmax_depth_round_trip(tmp_path: Path) -> None:
    src, out = tmp_path / "NYUDepthv2", tmp_path / "out"
    arrays = _dformer_tree(src)
    import_dformer(src, out, check_counts=False, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["modalities"]) == {"rgb", "depth_minmax"} and meta["modalities"]["rgb"]["ext"] == "jpg"
    assert meta["modalities"]["depth_minmax"]["encoding"] == "minmax_8bit"
    for stem, source in arrays.items():
        assert (out / "rgb" / f"{stem}.jpg").read_bytes() == (src / "RGB" / f"{stem}.jpg").read_bytes()
        assert np.array_equal(_png(out / "depth_minmax" / f"{stem}.png"), source["depth"])
        assert np.array_equal(_png(out / "labels" / f"{stem}.png"), source["labels"])
    with pytest.raises(DatasetError, match=r"no modality 'depth'.*depth_minmax: per-image min-max"):
        RGBXDataset(out, modalities=("depth",))
    sample = RGBXDataset(out, modalities=("depth_minmax",))[0]
    expected = (arrays["3"]["depth"].astype(np.float32) / 255 - 0.48) / 0.28
    assert torch.allclose(sample["depth_minmax"][0], torch.from_numpy(expected))


def test_dformer_hha_is_kept_as_its_own_modality(tmp_path: Path) -> None:
    src, out = tmp_path / "NYUDepthv2", tmp_path / "out"
    _dformer_tree(src, depth_folder="HHA")
    import_dformer(src, out, depth_encoding="hha", check_counts=False, progress=False)
    assert (out / "hha" / "3.jpg").read_bytes() == (src / "HHA" / "3.jpg").read_bytes()
    assert RGBXDataset(out, modalities=("hha",))[0]["hha"].shape == (3, *SIZE)


def test_dformer_declared_metric_depth_refuses_8bit_files(tmp_path: Path) -> None:
    src = tmp_path / "NYUDepthv2"
    _dformer_tree(src)
    with pytest.raises(DatasetError, match=r"Depth/1\.png: depth in millimetres must be a 16-bit"):
        import_dformer(src, tmp_path / "out", depth_encoding="metric_mm", check_counts=False, progress=False)
    with pytest.raises(DatasetError, match="unknown depth_encoding"):
        import_dformer(src, tmp_path / "out", depth_encoding="jet", progress=False)


def test_dformer_shifted_labels_get_a_hint(tmp_path: Path) -> None:
    src = tmp_path / "NYUDepthv2"
    _dformer_tree(src)
    _save(src / "Label" / "2.png", np.full(SIZE, 255, np.uint8))
    with pytest.raises(DatasetError, match=r"up to 255.*label \+ 1, with 255 → 0"):
        import_dformer(src, tmp_path / "out", check_counts=False, progress=False)


def test_mfnet_round_trip_shifts_labels(tmp_path: Path) -> None:
    src, out = tmp_path / "ir_seg_dataset", tmp_path / "out"
    splits = {"train": ["00001D", "00002N"], "val": ["00003D"], "test": ["00004N"]}
    arrays = {}
    for split, stems in splits.items():
        (src / f"{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (src / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            rgba = _save(src / "images" / f"{stem}.png", RNG.integers(0, 256, (*SIZE, 4), dtype=np.uint8))
            labels = _save(src / "labels" / f"{stem}.png", RNG.integers(0, 9, SIZE, dtype=np.uint8))
            arrays[stem] = (rgba, labels)
    import_mfnet(src, out, progress=False)
    for stem, (rgba, labels) in arrays.items():
        assert np.array_equal(_png(out / "rgb" / f"{stem}.png"), rgba[:, :, :3])
        assert np.array_equal(_png(out / "thermal" / f"{stem}.png"), rgba[:, :, 3])
        assert np.array_equal(_png(out / "labels" / f"{stem}.png"), labels + 1)
    dataset = RGBXDataset(out, split="val", modalities=("thermal",))
    assert dataset.num_classes == 9 and dataset.class_set.names[0] == "unlabeled"
    sample = dataset[0]
    assert torch.allclose(sample["thermal"][0], torch.from_numpy(arrays["00003D"][0][:, :, 3] / np.float32(255)))
    assert torch.equal(sample["label"], torch.from_numpy(arrays["00003D"][1].astype(np.int64) + 1))


def test_mfnet_wrong_channel_count_is_named(tmp_path: Path) -> None:
    src = tmp_path / "mfnet"
    for split in ("train", "test"):
        (src / "images").mkdir(parents=True, exist_ok=True)
        (src / f"{split}.txt").write_text(f"{split}1\n")
        _save(src / "images" / f"{split}1.png", np.zeros((*SIZE, 3), np.uint8))
        _save(src / "labels" / f"{split}1.png", np.zeros(SIZE, np.uint8))
    with pytest.raises(DatasetError, match=r"images/test1\.png: MFNet images are 8-bit 4-channel"):
        import_mfnet(src, tmp_path / "out", progress=False)


def _pst900_tree(src: Path, names: dict[str, list[str]]) -> dict[str, tuple[np.ndarray, ...]]:
    arrays = {}
    for split, stems in names.items():
        for stem in stems:
            arrays[stem] = (
                _save(src / split / "rgb" / f"{stem}.png", RNG.integers(0, 256, (*SIZE, 3), dtype=np.uint8)),
                _save(src / split / "thermal" / f"{stem}.png", RNG.integers(0, 256, SIZE, dtype=np.uint8)),
                _save(src / split / "thermal_raw" / f"{stem}.png", RNG.integers(0, 65535, SIZE).astype(np.uint16)),
                _save(src / split / "labels" / f"{stem}.png", RNG.integers(0, 5, SIZE, dtype=np.uint8)),
            )
    return arrays


def test_pst900_round_trip(tmp_path: Path) -> None:
    names = {"train": ["31_bag1a_rect_rgb_frame0000000007", "31_bag1a_rect_rgb_frame0000000009"],
             "test": ["45_bag3_rect_rgb_frame0000000001"]}  # fmt: skip
    arrays = _pst900_tree(tmp_path / "PST900_RGBT_Dataset", names)
    import_pst900(tmp_path / "PST900_RGBT_Dataset", tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert (out / "train.txt").read_text().split() == names["train"]
    for stem, (rgb, thermal, thermal_raw, labels) in arrays.items():
        assert np.array_equal(_png(out / "rgb" / f"{stem}.png"), rgb)
        assert np.array_equal(_png(out / "thermal" / f"{stem}.png"), thermal)
        assert np.array_equal(_png(out / "thermal_raw" / f"{stem}.png"), thermal_raw)
        assert np.array_equal(_png(out / "labels" / f"{stem}.png"), labels + 1)
    sample = RGBXDataset(out, split="test", modalities=("thermal", "thermal_raw"))[0]
    assert sample["thermal_raw"].shape == (1, *SIZE) and float(sample["thermal_raw"].max()) <= 1.0


def test_pst900_name_clash_between_splits_is_refused(tmp_path: Path) -> None:
    _pst900_tree(tmp_path / "pst", {"train": ["a", "b"], "test": ["b"]})
    with pytest.raises(DatasetError, match="'b' is in both the train and the test split"):
        import_pst900(tmp_path / "pst", tmp_path / "out", progress=False)


def test_missing_tree_parts_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"train\.txt: split list is missing"):
        import_asymformer(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(MissingFileError, match=r"train/rgb: directory is missing"):
        import_pst900(tmp_path, tmp_path / "out", progress=False)
