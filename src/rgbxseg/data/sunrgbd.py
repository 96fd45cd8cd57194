"""SUN RGB-D from the extracted ``SUNRGBD.zip`` tree and ``SUNRGBDtoolbox`` into the canonical layout.

Metadata: ``Metadata/SUNRGBDMeta.mat`` (v5; one entry per sample, in the global order that names the stems),
labels: ``Metadata/SUNRGBD2Dseg.mat`` (v7.3; one object reference per sample, arrays stored transposed),
split: ``traintestSUNRGBD/allsplit.mat`` (``alltrain`` lists the training sample directories).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import SUNRGBD_37
from .depth import SUN_MAX_MM, SUN_SHIFT_BITS, sun_png_to_mm
from .errors import DatasetError
from .images import image_size, read_image
from .layout import DatasetMeta, LabelSetSpec, ModalitySpec, check_label_range, check_same_size, label_dir
from .mat import load_mat_v5, mat_key, open_mat_v73
from .writer import PrepareSummary, SampleData, describe_file, fingerprint, write_dataset

SUNRGBD_NUM_SAMPLES = 10335
SUNRGBD_SPLIT_COUNTS = {"train": 5285, "test": 5050}
META_FILE = Path("Metadata") / "SUNRGBDMeta.mat"
SEG_FILE = Path("Metadata") / "SUNRGBD2Dseg.mat"
SPLIT_FILE = Path("traintestSUNRGBD") / "allsplit.mat"
_ROOT_COMPONENT = "SUNRGBD"


def sunrgbd_stem(index: int) -> str:
    """Sample stem of a 0-based index into ``SUNRGBDMeta``: ``00000`` … ``10334``."""
    return f"{index:05d}"


def _relative_folder(path: str, source: Path) -> str:
    """``/n/fs/sun3d/data/SUNRGBD/kv2/kinect2data/<sample>`` → ``kv2/kinect2data/<sample>``."""
    parts = str(path).rstrip("/").split("/")
    if _ROOT_COMPONENT not in parts:
        raise DatasetError(f"{source}: path {path!r} has no {_ROOT_COMPONENT!r} component; unexpected metadata")
    return "/".join(parts[parts.index(_ROOT_COMPONENT) + 1 :])


@dataclass(frozen=True)
class _Entry:
    """One ``SUNRGBDMeta`` record, reduced to what the preparation needs."""

    folder: str
    rgb_name: str
    depth_name: str
    sensor: str
    intrinsics: dict[str, float]

    @property
    def camera(self) -> str:
        """Sensor sub-path, e.g. ``kv2/kinect2data`` or ``kv1/NYUdata`` (per-camera evaluation groups by it)."""
        return "/".join(self.folder.split("/")[:2])


def _read_entries(path: Path) -> list[_Entry]:
    records = np.atleast_1d(mat_key(load_mat_v5(path, squeeze_me=True, struct_as_record=False), "SUNRGBDMeta", path))
    entries = []
    for record in records:
        matrix = np.asarray(record.K, dtype=np.float64)
        folder = _relative_folder(str(record.rgbpath), path).rsplit("/", 2)[0]  # drop image/<name>.jpg
        entries.append(
            _Entry(
                folder=folder,
                rgb_name=str(record.rgbname),
                depth_name=str(record.depthname),
                sensor=str(getattr(record, "sensorType", folder.split("/")[0])),
                intrinsics={"fx": matrix[0, 0], "fy": matrix[1, 1], "cx": matrix[0, 2], "cy": matrix[1, 2]},
            )
        )
    return entries


def _training_folders(path: Path) -> set[str]:
    alltrain = mat_key(load_mat_v5(path, squeeze_me=True), "alltrain", path)
    return {_relative_folder(str(folder), path) for folder in np.atleast_1d(alltrain)}


@dataclass
class _SunTree:
    """Reads one sample from the extracted tree and its label from ``SUNRGBD2Dseg.mat``."""

    root: Path
    entries: list[_Entry]
    seg: Any
    seg_path: Path

    def __post_init__(self) -> None:
        self.references = np.asarray(mat_key(self.seg, "SUNRGBD2Dseg", self.seg_path)["seglabel"]).ravel()
        if self.references.size != len(self.entries):
            raise DatasetError(
                f"{self.seg_path}: has {self.references.size} label maps but SUNRGBDMeta.mat has {len(self.entries)} "
                "entries; both must come from the same toolbox"
            )

    def _labels(self, index: int) -> np.ndarray:
        labels = np.asarray(self.seg[self.references[index]]).T
        source = f"{self.seg_path} entry {index}"
        if labels.size and (labels.min() < 0 or not np.array_equal(labels, np.round(labels))):
            raise DatasetError(f"{source}: labels must be integers 0..37")
        labels = labels.astype(np.int64)
        check_label_range(labels, SUNRGBD_37, source)
        return labels.astype(np.uint8)

    def sample(self, stem: str) -> SampleData:
        index = int(stem)
        entry = self.entries[index]
        folder = self.root / entry.folder
        rgb = folder / "image" / entry.rgb_name
        refined_path, raw_path = folder / "depth_bfx" / entry.depth_name, folder / "depth" / entry.depth_name
        refined = sun_png_to_mm(read_image(refined_path), refined=True, source=str(refined_path))
        raw = sun_png_to_mm(read_image(raw_path), refined=False, source=str(raw_path))
        labels = self._labels(index)
        check_same_size(
            {
                str(rgb): image_size(rgb),
                str(refined_path): refined.shape,
                str(raw_path): raw.shape,
                f"{self.seg_path} entry {index}": labels.shape,
            }
        )
        arrays = {"depth": refined, "depth_raw": raw, label_dir("37", default=True): labels}
        return SampleData(arrays=arrays, copies={"rgb": rgb})

    def info(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        info = {
            "camera": entry.camera,
            "sensor": entry.sensor,
            "folder": entry.folder,
            "intrinsics_px": entry.intrinsics,
        }
        scene = self.root / entry.folder / "scene.txt"
        if scene.is_file():
            info["scene"] = scene.read_text(encoding="utf-8").strip()
        return info


def _sunrgbd_meta(sources: list[dict[str, Any]]) -> DatasetMeta:
    shift = (
        f"PNG values rotated right by {SUN_SHIFT_BITS} bits as in the toolbox (SUN stores depth in bits 3-15; "
        "source encoding 'sun_shifted')"
    )
    depth_details = {"unit": "mm", "invalid": 0, "source_encoding": "sun_shifted"}
    return DatasetMeta(
        dataset="sunrgbd",
        modalities={
            "rgb": ModalitySpec("rgb", "rgb", ext="jpg", details={"source": "image/<rgbname>, original JPEG bytes"}),
            "depth": ModalitySpec(
                "depth",
                "metric_mm",
                details=depth_details
                | {
                    "variant": "refined (hole-filled), depth_bfx/",
                    "conversion": f"{shift}; values above {SUN_MAX_MM} mm clipped to {SUN_MAX_MM} as in the toolbox",
                },
            ),
            "depth_raw": ModalitySpec(
                "depth_raw",
                "metric_mm",
                details=depth_details
                | {
                    "variant": "raw, depth/",
                    "conversion": f"{shift}; values above {SUN_MAX_MM} mm set to 0 (invalid)",
                },
            ),
        },
        label_sets={"37": LabelSetSpec(label_dir("37", default=True), SUNRGBD_37, details={"source": str(SEG_FILE)})},
        default_label_set="37",
        sources=sources,
        camera={"model": "per sample (kv1, kv2, realsense, xtion): see samples.json"},
        notes=[
            "Stems are the 0-based index into SUNRGBDMeta.mat, zero-padded to 5 digits.",
            "A sample is train if its directory is listed in allsplit.mat 'alltrain', otherwise test (5285 / 5050).",
            "kv1/NYUdata holds the NYUv2 frames: check overlap with the NYUv2 test split before pre-training on SUN.",
        ],
        created_by={"function": "rgbxseg.data.prepare_sunrgbd"},
        fingerprint=fingerprint("sunrgbd", sources, {}),
    )


def prepare_sunrgbd(
    root: str | os.PathLike[str],
    toolbox: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
    expected_counts: dict[str, int] | None = SUNRGBD_SPLIT_COUNTS,
) -> PrepareSummary:
    """Prepare SUN RGB-D (37 classes) from the extracted ``SUNRGBD`` tree and ``SUNRGBDtoolbox`` (needs h5py, scipy).

    RGB stays the original JPEG; refined and raw depth are converted from the SUN bit-shifted PNGs to uint16 mm;
    each sample's camera, intrinsics and scene go to ``samples.json``. ``expected_counts`` guards the official
    5285/5050 split (None skips the check, e.g. for a subset). Interrupting is safe: a re-run resumes.
    """
    root, toolbox = Path(root), Path(toolbox)
    meta_path, seg_path, split_path = toolbox / META_FILE, toolbox / SEG_FILE, toolbox / SPLIT_FILE
    if not root.is_dir():
        raise DatasetError(
            f"{root}: SUN RGB-D root directory does not exist (extract SUNRGBD.zip and pass its SUNRGBD/)"
        )
    sources = [describe_file(path, progress=progress) for path in (meta_path, seg_path, split_path)]
    sources.append({"dir": str(root.resolve())})
    entries = _read_entries(meta_path)
    training = _training_folders(split_path)
    stems = {"train": [], "test": []}
    for index, entry in enumerate(entries):
        stems["train" if entry.folder in training else "test"].append(sunrgbd_stem(index))
    counts = {split: len(split_stems) for split, split_stems in stems.items()}
    if expected_counts is not None and counts != expected_counts:
        raise DatasetError(
            f"{split_path}: the split gives {counts} samples, expected {expected_counts} (official SUN RGB-D: "
            f"{SUNRGBD_NUM_SAMPLES} samples); SUNRGBDMeta.mat and allsplit.mat must come from the same toolbox"
        )
    with open_mat_v73(seg_path) as seg:
        tree = _SunTree(root, entries, seg, seg_path)
        sample_info = {sunrgbd_stem(i): tree.info(i) for i in range(len(entries))}
        return write_dataset(
            out_dir,
            _sunrgbd_meta(sources),
            stems,
            tree.sample,
            overwrite=overwrite,
            progress=progress,
            sample_info=sample_info,
        )
