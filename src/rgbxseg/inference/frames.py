"""Reading RGB-X frames: image pairs, matched folders, videos / image sequences, and OpenCV depth cameras.

Images go through Pillow (16-bit PNGs stay lossless); videos and cameras need OpenCV, the ``camera`` extra.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.images import image_header, read_image
from ..errors import some_of
from ..runtime import require

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"})


@dataclass
class Frame:
    """One RGB-X input: ``rgb`` (H, W, 3) uint8 and ``x``, the second modality as stored (a depth map's unit is
    given separately)."""

    name: str
    rgb: np.ndarray
    x: np.ndarray
    source: str = ""
    """Where the frame came from (files, stream and index), for error messages."""


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (alpha dropped, greyscale and palette images expanded)."""
    header = image_header(path)
    if header is not None and (header[1].startswith("I") or header[1] == "F"):
        raise ValueError(f"{path} is a {header[1]} single-channel image (a depth map?), expected an RGB image")
    return read_image(path, convert="RGB")


def read_modality(path: str | Path) -> np.ndarray:
    """A second-modality map (depth, thermal, HHA…) as stored: 16-bit PNG → uint16, 8-bit → uint8, float TIFF →
    float32, ``.npy`` → its array (no unit or normalisation applied)."""
    path = Path(path)
    if path.suffix != ".npy":
        return read_image(path)
    if not path.is_file():
        raise FileNotFoundError(f"map not found: {path}")
    return np.load(path, allow_pickle=False)


def pair_frames(rgb_path: str | Path, x_path: str | Path) -> list[Frame]:
    return [Frame(Path(rgb_path).stem, read_rgb(rgb_path), read_modality(x_path), f"{rgb_path} + {x_path}")]


def _files_by_stem(folder: Path, suffixes: frozenset[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    paths = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes]
    files = {p.stem: p for p in paths}
    if len(files) < len(paths):
        twins = sorted(p.name for p in paths if files[p.stem] != p)
        raise ValueError(f"{what} folder {folder} has several files per name, e.g. {', '.join(twins[:3])}; keep one")
    if not files:
        raise FileNotFoundError(f"{what} folder {folder} holds no image ({', '.join(sorted(suffixes))})")
    return files


def folder_pairs(rgb_dir: str | Path, x_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, rgb file, second-modality file) for every RGB image, matched to the map with the same file stem."""
    rgb_files = _files_by_stem(Path(rgb_dir), IMAGE_SUFFIXES, "RGB")
    x_files = _files_by_stem(Path(x_dir), IMAGE_SUFFIXES | {".npy"}, "second-modality")
    unmatched = [name for name in rgb_files if name not in x_files]
    if unmatched:
        raise FileNotFoundError(
            f"{len(unmatched)} RGB images in {rgb_dir} have no map with the same name in {x_dir}: "
            f"{some_of(unmatched, 5)}"
        )
    return [(name, path, x_files[name]) for name, path in rgb_files.items()]


class FolderFrames(Sequence[Frame]):
    """Frames of two folders matched by file stem (``rgb/0001.jpg`` ↔ ``depth/0001.png``), read on access."""

    def __init__(self, rgb_dir: str | Path, x_dir: str | Path) -> None:
        self.pairs = folder_pairs(rgb_dir, x_dir)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Frame:  # type: ignore[override]
        name, rgb_path, x_path = self.pairs[index]
        return Frame(name, read_rgb(rgb_path), read_modality(x_path), f"{rgb_path} + {x_path}")


def _video_frames(path: Path, colour: bool) -> Iterator[np.ndarray]:
    cv2 = require("cv2", "camera", "reading videos")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"cannot open video {path}")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if colour:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif frame.ndim == 3 and (frame == frame[:, :, :1]).all():
                yield frame[:, :, 0]  # grey video decoded as three equal channels
            else:
                yield frame
    finally:
        capture.release()


def _sequence_frames(pattern: str, colour: bool) -> Iterator[np.ndarray]:
    """Files named by a printf pattern (``depth/%06d.png``), from index 0 or 1, until the first gap."""
    start = 0 if Path(pattern % 0).is_file() else 1
    if not Path(pattern % start).is_file():
        raise FileNotFoundError(f"image sequence {pattern!r}: neither {pattern % 0} nor {pattern % 1} exists")
    for index in itertools.count(start):
        path = Path(pattern % index)
        if not path.is_file():
            return
        yield read_rgb(path) if colour else read_modality(path)


def _stream(spec: str | Path, colour: bool) -> Iterator[np.ndarray]:
    spec = str(spec)
    if "%" in spec:
        return _sequence_frames(spec, colour)
    path = Path(spec)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(
            f"{spec}: expected a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a pattern like rgb/%06d.png"
        )
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    return _video_frames(path, colour)


def sequence_frames(rgb: str | Path, x: str | Path) -> Iterator[Frame]:
    """Frames of a video or image-sequence pair, read in lock step; named by index.

    Lossy video codecs cannot carry 16-bit depth: store depth as a PNG sequence (``depth/%06d.png``); an 8-bit depth
    video is accepted only with an explicit depth scale.
    """
    sentinel = object()
    for index, (rgb_frame, x_frame) in enumerate(
        itertools.zip_longest(_stream(rgb, True), _stream(x, False), fillvalue=sentinel)
    ):
        if rgb_frame is sentinel or x_frame is sentinel:
            shorter = "RGB" if rgb_frame is sentinel else "second-modality"
            warnings.warn(f"the {shorter} stream ended after {index} frames; the rest is ignored", stacklevel=2)
            return
        yield Frame(f"{index:06d}", rgb_frame, x_frame, f"frame {index} of {rgb} + {x}")


def open_frames(rgb: str | Path, x: str | Path) -> Iterable[Frame]:
    """Frames from two paths of the same kind: image files, folders, videos or printf-pattern image sequences."""
    rgb_path, x_path = Path(rgb), Path(x)
    if rgb_path.is_dir() or x_path.is_dir():
        return FolderFrames(rgb_path, x_path)
    if rgb_path.suffix.lower() in IMAGE_SUFFIXES and "%" not in str(rgb):
        return pair_frames(rgb_path, x_path)
    return sequence_frames(rgb, x)


# --- depth cameras -----------------------------------------------------------------------------------------------

CAMERA_BACKENDS: dict[str, tuple[str, str, str]] = {
    "openni2": ("CAP_OPENNI2", "CAP_OPENNI_BGR_IMAGE", "CAP_OPENNI_DEPTH_MAP"),
    "realsense": ("CAP_REALSENSE", "CAP_INTELPERC_IMAGE", "CAP_INTELPERC_DEPTH_MAP"),
    "orbbec": ("CAP_OBSENSOR", "CAP_OBSENSOR_BGR_IMAGE", "CAP_OBSENSOR_DEPTH_MAP"),
}
"""OpenCV capture API and the retrieve flags of its colour and depth (uint16 mm) streams, by backend name."""


def open_camera(device: int | str, backend: str = "openni2") -> Any:
    """An opened ``cv2.VideoCapture`` of an RGB-D device through one of :data:`CAMERA_BACKENDS`."""
    cv2 = require("cv2", "camera", "the camera loop")
    if backend not in CAMERA_BACKENDS:
        raise ValueError(f"unknown camera backend {backend!r}; choose one of {', '.join(CAMERA_BACKENDS)}")
    capture = cv2.VideoCapture(device, getattr(cv2, CAMERA_BACKENDS[backend][0]))
    if not capture.isOpened():
        raise OSError(
            f"cannot open RGB-D camera {device!r} with the {backend} backend; check that the device is connected "
            f"and that your OpenCV build includes {backend} (cv2.getBuildInformation())"
        )
    return capture


def camera_frames(
    device: int | str = 0, backend: str = "openni2", max_frames: int | None = None, capture: Any = None
) -> Iterator[Frame]:
    """Frames grabbed from an RGB-D camera (or an already opened ``capture``): colour + registered depth map."""
    cv2 = require("cv2", "camera", "the camera loop")
    capture = capture if capture is not None else open_camera(device, backend)
    color_flag, depth_flag = (getattr(cv2, name) for name in CAMERA_BACKENDS[backend][1:])
    try:
        for index in itertools.count() if max_frames is None else range(max_frames):
            if not capture.grab():
                return
            ok_color, bgr = capture.retrieve(flag=color_flag)
            ok_depth, depth = capture.retrieve(flag=depth_flag)
            if not ok_depth or depth is None:
                raise OSError(
                    f"camera {device!r} gives no depth map; rgbxseg needs RGB + depth (OpenNI2, RealSense or "
                    "Orbbec devices through --camera-backend)"
                )
            if not ok_color or bgr is None:
                raise OSError(f"camera {device!r} gives no colour image")
            yield Frame(f"{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth, f"camera {device!r} frame {index}")
    finally:
        capture.release()
