"""Writers of miniature raw dataset files in the real formats (MATLAB v7.3 via h5py, v5 via scipy), for the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
from PIL import Image

MATLAB_V73_HEADER = (
    (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Jan  1 00:00:00 2013 HDF5 schema 1.00 .").ljust(116)
    + bytes(8)
    + b"\x00\x02IM"
)


def write_matlab_v73(path: Path, build: Callable[[h5py.File], None]) -> Path:
    """An HDF5 file with MATLAB's 512-byte user block and header text, as ``save -v7.3`` writes it."""
    with h5py.File(path, "w", userblock_size=512) as mat:
        build(mat)
    with path.open("r+b") as stream:
        stream.write(MATLAB_V73_HEADER)
    return path


def _matlab_array(mat: h5py.File, name: str, data: np.ndarray, matlab_class: str) -> None:
    mat.create_dataset(name, data=data).attrs["MATLAB_class"] = np.bytes_(matlab_class)


def _char_reference(mat: h5py.File, name: str, text: str) -> Any:
    codes = np.array([[ord(c)] for c in text], dtype=np.uint16)  # MATLAB char arrays: (len, 1) uint16 codes
    dataset = mat.create_dataset(f"#refs#/{name}", data=codes)
    dataset.attrs["MATLAB_class"] = np.bytes_("char")
    return dataset.ref


def make_nyuv2_arrays(height: int, width: int, seed: int = 0, frames: int = 1449) -> dict[str, np.ndarray]:
    """Frames in (N, H, W[, 3]) order, as a user would see them after transposition."""
    rng = np.random.default_rng(seed)
    depths = rng.uniform(0.5, 9.9, (frames, height, width)).astype(np.float32)
    raw = np.where(rng.random((frames, height, width)) < 0.2, 0, depths + 0.01).astype(np.float32)
    return {
        "images": rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        "depths": depths,
        "rawDepths": raw,
        "labels": rng.integers(0, 895, (frames, height, width), dtype=np.uint16),
        "scenes": np.array([f"scene_{i % 27}" for i in range(frames)]),
    }


def write_nyuv2_mat(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``nyu_depth_v2_labeled.mat`` layout: MATLAB's column-major order makes h5py see every axis reversed."""

    def build(mat: h5py.File) -> None:
        _matlab_array(mat, "images", arrays["images"].transpose(0, 3, 2, 1), "uint8")  # (N, 3, W, H)
        _matlab_array(mat, "depths", arrays["depths"].transpose(0, 2, 1), "single")  # (N, W, H)
        _matlab_array(mat, "rawDepths", arrays["rawDepths"].transpose(0, 2, 1), "single")
        _matlab_array(mat, "labels", arrays["labels"].transpose(0, 2, 1), "uint16")
        refs = [_char_reference(mat, f"s{i}", str(name)) for i, name in enumerate(arrays["scenes"])]
        scene_types = mat.create_dataset("sceneTypes", (1, len(refs)), dtype=h5py.ref_dtype)
        scene_types[0, :] = refs
        scene_types.attrs["MATLAB_class"] = np.bytes_("cell")

    return write_matlab_v73(path, build)


SUN_PREFIX = "/n/fs/sun3d/data/SUNRGBD"


def write_sun_sample(root: Path, folder: str, rgb: np.ndarray, refined: np.ndarray, raw: np.ndarray) -> None:
    """One sample folder of the extracted ``SUNRGBD.zip``: image/*.jpg, depth/*.png, depth_bfx/*.png, scene.txt."""
    sample = root / folder
    name = folder.rsplit("/", 1)[-1]
    for sub in ("image", "depth", "depth_bfx"):
        (sample / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(sample / "image" / f"{name}.jpg", quality=95)
    Image.fromarray(raw).save(sample / "depth" / f"{name}.png")
    Image.fromarray(refined).save(sample / "depth_bfx" / f"{name}.png")
    (sample / "scene.txt").write_text("bedroom")


def write_sun_toolbox(
    toolbox: Path, folders: Sequence[str], labels: Sequence[np.ndarray], train_folders: Sequence[str]
) -> None:
    """``SUNRGBDMeta.mat`` (v5 struct array), ``SUNRGBD2Dseg.mat`` (v7.3, references) and ``allsplit.mat`` (v5)."""
    (toolbox / "Metadata").mkdir(parents=True)
    (toolbox / "traintestSUNRGBD").mkdir(parents=True)
    fields = ["sequenceName", "groundtruth3DBB", "Rtilt", "K", "depthpath", "rgbpath", "anno_extrinsics",
              "depthname", "rgbname", "sensorType", "valid"]  # fmt: skip
    meta = np.empty((1, len(folders)), dtype=[(f, "O") for f in fields])
    for i, folder in enumerate(folders):
        name = folder.rsplit("/", 1)[-1]
        height, width = labels[i].shape
        meta[0, i] = (
            folder, np.zeros((0, 0)), np.eye(3), np.array([[520.0, 0, width / 2], [0, 521.0, height / 2], [0, 0, 1]]),
            f"{SUN_PREFIX}/{folder}/depth/{name}.png", f"{SUN_PREFIX}/{folder}/image/{name}.jpg", np.eye(3),
            f"{name}.png", f"{name}.jpg", folder.split("/")[0], 1,
        )  # fmt: skip
    scipy.io.savemat(toolbox / "Metadata" / "SUNRGBDMeta.mat", {"SUNRGBDMeta": meta}, do_compression=True)

    def build(mat: h5py.File) -> None:
        refs = []
        for i, label in enumerate(labels):
            dataset = mat.create_dataset(f"#refs#/l{i}", data=label.T.astype(np.float64))  # stored (W, H), double
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
            refs.append(dataset.ref)
        seglabel = mat.create_dataset("SUNRGBD2Dseg/seglabel", (len(refs), 1), dtype=h5py.ref_dtype)
        seglabel[:, 0] = refs

    write_matlab_v73(toolbox / "Metadata" / "SUNRGBD2Dseg.mat", build)
    train = np.array([f"{SUN_PREFIX}/{f}" for f in train_folders], dtype=object)
    test = np.array([f"{SUN_PREFIX}/{f}" for f in folders if f not in set(train_folders)], dtype=object)
    scipy.io.savemat(toolbox / "traintestSUNRGBD" / "allsplit.mat", {"alltrain": train, "alltest": test})
