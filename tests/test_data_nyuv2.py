"""NYUv2 preparation from a miniature ``nyu_depth_v2_labeled.mat`` in the real HDF5 (v7.3) layout."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_helpers import make_nyuv2_arrays, write_nyuv2_mat
from rgbxseg.classes import NYUV2_13, NYUV2_40
from rgbxseg.data import (
    DatasetError,
    IncompleteDatasetError,
    RGBXDataset,
    nyuv2_894,
    prepare_nyuv2,
    validate_dataset,
    writer,
)
from rgbxseg.data.resources import RESOURCE_MD5, resource_path

HEIGHT, WIDTH = 12, 16


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def nyu_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = make_nyuv2_arrays(HEIGHT, WIDTH, seed=1)
    return write_nyuv2_mat(tmp_path_factory.mktemp("raw") / "nyu_depth_v2_labeled.mat", arrays), arrays


@pytest.fixture(scope="module")
def prepared(nyu_source: tuple[Path, dict[str, np.ndarray]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nyuv2") / "nyuv2"
    summary = prepare_nyuv2(nyu_source[0], out, progress=False)
    assert dict(summary.counts) == {"train": 795, "test": 654}
    assert summary.written == 1449 and summary.resumed == 0
    return out


def test_packaged_mapping_files_are_the_official_ones() -> None:
    for name, md5 in RESOURCE_MD5.items():
        assert hashlib.md5(resource_path(name).read_bytes()).hexdigest() == md5


def test_class_names_match_the_packaged_mapping_files() -> None:
    mapping_40 = scipy.io.loadmat(resource_path("classMapping40.mat"))
    assert tuple(str(c[0]) for c in mapping_40["className"][0]) == NYUV2_40.names
    mapping_13 = scipy.io.loadmat(resource_path("class13Mapping.mat"))["classMapping13"][0, 0]
    assert tuple(str(c[0]) for c in mapping_13["classNames"][0]) == NYUV2_13.names
    names_894 = nyuv2_894()
    assert names_894.num_classes == 894
    assert names_894.names == tuple(str(c[0]) for c in mapping_40["allClassName"][0])


def test_split_follows_splits_mat(prepared: Path) -> None:
    splits = scipy.io.loadmat(resource_path("splits.mat"))
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        expected = [f"{int(i) - 1:04d}" for i in splits[key].ravel()]
        assert (prepared / f"{split}.txt").read_text().split() == expected
    assert "0000" in (prepared / "test.txt").read_text().split()  # MATLAB index 1 → frame 0 → test


def test_every_frame_equals_an_independent_conversion(
    nyu_source: tuple[Path, dict[str, np.ndarray]], prepared: Path
) -> None:
    arrays = nyu_source[1]
    map_class = scipy.io.loadmat(resource_path("classMapping40.mat"))["mapClass"].ravel().astype(np.int64)
    labels13 = scipy.io.loadmat(resource_path("class13Mapping.mat"))["classMapping13"][0, 0]["labels13"].ravel()
    for index in range(1449):
        stem = f"{index:04d}"
        raw = arrays["labels"][index].astype(np.int64)
        expected_40 = np.where(raw == 0, 0, map_class[np.maximum(raw, 1) - 1])
        expected_13 = np.where(expected_40 == 0, 0, labels13[np.maximum(expected_40, 1) - 1])
        assert np.array_equal(_png(prepared / "rgb" / f"{stem}.png"), arrays["images"][index])
        for folder, metres in (("depth", arrays["depths"]), ("depth_raw", arrays["rawDepths"])):
            depth = _png(prepared / folder / f"{stem}.png")
            assert depth.dtype == np.uint16
            assert np.array_equal(depth, np.round(metres[index].astype(np.float64) * 1000))
        assert np.array_equal(_png(prepared / "labels" / f"{stem}.png"), expected_40)
        assert np.array_equal(_png(prepared / "labels_13" / f"{stem}.png"), expected_13)
        labels_894 = _png(prepared / "labels_894" / f"{stem}.png")
        assert labels_894.dtype == np.uint16 and np.array_equal(labels_894, raw)


def test_meta_declares_conventions_and_sources(prepared: Path, nyu_source: tuple[Path, dict[str, np.ndarray]]) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["dataset"] == "nyuv2" and meta["image_size"] == [HEIGHT, WIDTH]
    assert meta["splits"] == {"train": 795, "test": 654}
    assert meta["default_label_set"] == "40" and meta["label_sets"]["40"]["dir"] == "labels"
    assert meta["label_sets"]["40"]["names"] == list(NYUV2_40.names)
    assert meta["label_sets"]["40"]["palette"][0] == [0, 0, 0]
    assert meta["label_sets"]["894"]["dtype"] == "uint16" and meta["label_sets"]["13"]["dir"] == "labels_13"
    assert meta["modalities"]["depth"]["unit"] == "mm" and meta["modalities"]["depth"]["encoding"] == "metric_mm"
    md5 = {source["file"]: source["md5"] for source in meta["sources"]}
    assert md5["nyu_depth_v2_labeled.mat"] == hashlib.md5(nyu_source[0].read_bytes()).hexdigest()
    assert {name: md5[name] for name in RESOURCE_MD5} == RESOURCE_MD5
    counts = meta["statistics"]["pixel_counts"]["40"]
    assert sum(counts["train"]) + sum(counts["test"]) == 1449 * HEIGHT * WIDTH
    samples = json.loads((prepared / "samples.json").read_text())
    assert samples["0028"] == {"scene_type": "scene_1"}


def test_dataset_reads_all_label_sets(prepared: Path) -> None:
    for label_set, classes in ((None, 40), ("13", 13), ("894", 894)):
        dataset = RGBXDataset(prepared, split="test", modalities=("depth", "depth_raw"), label_set=label_set)
        sample = dataset[0]
        assert len(dataset) == 654 and dataset.num_classes == classes and sample["id"] == "0000"
        assert sample["label"].shape == (HEIGHT, WIDTH) and int(sample["label"].max()) <= classes


def test_rerun_on_a_complete_dataset_does_nothing(
    prepared: Path, nyu_source: tuple[Path, dict[str, np.ndarray]]
) -> None:
    summary = prepare_nyuv2(nyu_source[0], prepared, progress=False)
    assert summary.already_complete and summary.written == 0


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, files: int) -> None:
    """Make the preparation stop with KeyboardInterrupt when it is about to write file number ``files + 1``."""
    original, calls = writer.write_png, {"count": 0}

    def interrupted_write_png(path: Path, array: np.ndarray) -> None:
        calls["count"] += 1
        if calls["count"] > files:
            raise KeyboardInterrupt
        original(path, array)

    monkeypatch.setattr(writer, "write_png", interrupted_write_png)


def test_interrupted_preparation_is_refused_then_resumed(
    nyu_source: tuple[Path, dict[str, np.ndarray]], prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "nyuv2"
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, 6 * 100 + 3)  # the 101st frame is cut after three of its six files
        with pytest.raises(KeyboardInterrupt):
            prepare_nyuv2(nyu_source[0], out, progress=False)
    assert not (out / "meta.json").exists()
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(IncompleteDatasetError, match="preparation did not finish"):
        RGBXDataset(out)
    with pytest.raises(IncompleteDatasetError):
        validate_dataset(out)

    summary = prepare_nyuv2(nyu_source[0], out, progress=False)
    assert (summary.resumed, summary.written) == (100, 1349)
    for folder in ("rgb", "depth", "labels", "labels_894"):
        for path in sorted((prepared / folder).iterdir())[95:105]:
            assert (out / folder / path.name).read_bytes() == path.read_bytes()


def test_other_source_is_refused_unless_overwrite(
    nyu_source: tuple[Path, dict[str, np.ndarray]], prepared: Path, tmp_path: Path
) -> None:
    changed = Path(shutil.copy(nyu_source[0], tmp_path / "changed.mat"))
    with h5py.File(changed, "r+") as mat:
        mat["labels"][0, 0, 0] = 1 + int(mat["labels"][0, 0, 0]) % 894
    with pytest.raises(DatasetError, match="complete 'nyuv2' dataset made from other sources"):
        prepare_nyuv2(changed, prepared, progress=False)

    out = tmp_path / "nyuv2"
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after(patch, 60)
        with pytest.raises(KeyboardInterrupt):
            prepare_nyuv2(nyu_source[0], out, progress=False)
    with pytest.raises(DatasetError, match="unfinished preparation from other sources"):
        prepare_nyuv2(changed, out, progress=False)
    summary = prepare_nyuv2(changed, out, progress=False, overwrite=True)
    assert (summary.written, summary.resumed) == (1449, 0)
    raw = nyu_source[1]["labels"][0, 0, 0]
    assert np.asarray(Image.open(out / "labels_894" / "0000.png"))[0, 0] == 1 + int(raw) % 894
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty and is not an rgbxseg dataset"):
        prepare_nyuv2(changed, foreign, progress=False, overwrite=True)


def _damaged_copy(source: Path, tmp_path: Path, edit: str) -> Path:
    path = Path(shutil.copy(source, tmp_path / "damaged.mat"))
    with h5py.File(path, "r+") as mat:
        if edit == "nan":
            mat["depths"][7, 3, 2] = np.nan
        elif edit == "negative":
            mat["rawDepths"][7, 3, 2] = -1.0
        else:
            del mat[edit]
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("nan", r"frame 7 \('depths'\): depth contains NaN"),
        ("negative", r"frame 7 \('rawDepths'\): depth contains negative"),
        ("labels", "has no variable 'labels'"),
    ],
)
def test_bad_mat_content_names_the_file(
    nyu_source: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, edit: str, message: str
) -> None:
    damaged = _damaged_copy(nyu_source[0], tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as caught:
        prepare_nyuv2(damaged, tmp_path / "out", progress=False)
    assert "damaged.mat" in str(caught.value)


def test_wrong_files_are_refused(tmp_path: Path) -> None:
    small = write_nyuv2_mat(tmp_path / "small.mat", make_nyuv2_arrays(4, 5, frames=10))
    with pytest.raises(DatasetError, match="holds 10 frames"):
        prepare_nyuv2(small, tmp_path / "a", progress=False)
    v5 = tmp_path / "v5.mat"
    scipy.io.savemat(v5, {"images": np.zeros((2, 2))})
    with pytest.raises(DatasetError, match=r"v5\.mat: not a MATLAB v7\.3"):
        prepare_nyuv2(v5, tmp_path / "b", progress=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        prepare_nyuv2(tmp_path / "absent.mat", tmp_path / "c", progress=False)
