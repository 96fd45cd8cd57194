"""NYUv2 from the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 / HDF5) into the canonical layout.

The file is streamed frame by frame (it is 2.8 GB). MATLAB stores arrays column-major, so h5py returns every
array with its axes reversed: ``images`` is (N, 3, W, H) and ``depths``/``rawDepths``/``labels`` are (N, W, H).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import NYUV2_13, NYUV2_40
from .depth import metres_to_mm
from .errors import DatasetError
from .hha import compute_hha
from .layout import DatasetMeta, LabelSetSpec, ModalitySpec, label_dir
from .mat import mat_key, open_mat_v73, read_char_reference
from .resources import (
    NYUV2_MAPPING_13,
    NYUV2_MAPPING_40,
    NYUV2_NUM_FRAMES,
    NYUV2_SPLITS,
    NYUv2Resources,
    nyuv2_894,
    nyuv2_resources,
    resource_path,
)
from .writer import PrepareSummary, SampleData, describe_file, fingerprint, write_dataset

NYUV2_RAW_CLASSES = 894

KINECT_V1_RGB_INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
"""At 480×640, from the NYU Depth V2 toolbox ``camera_params.m`` (widely used; not re-derived by rgbxseg)."""
KINECT_V1_SIZE = (480, 640)
"""(height, width) that :data:`KINECT_V1_RGB_INTRINSICS` are given for."""
KINECT_V1_RGB_INTRINSICS_0_BASED = {
    **KINECT_V1_RGB_INTRINSICS,
    "cx": KINECT_V1_RGB_INTRINSICS["cx"] - 1,
    "cy": KINECT_V1_RGB_INTRINSICS["cy"] - 1,
}
"""The same camera for pixel coordinates counted from 0: the toolbox's principal point is MATLAB's, counted from 1
(its ``meshgrid(1:640, 1:480)``), so the HHA of the published MATLAB code is reproduced."""

HHA_DETAILS = {
    "source": "computed by rgbxseg.data.compute_hha from the refined depth ('depths'); pixels where 'rawDepths' is 0 "
    "shape neither the surface normals nor the gravity estimate, as in Gupta et al.'s saveHHA.m",
    "channel_order": "R horizontal disparity 31000/max(depth_cm, 100), G height above the lowest point in cm, "
    "B angle between surface normal and gravity in degrees + 38",
    "gravity": "estimated from the depth of each frame",
}


def nyuv2_stem(index: int) -> str:
    """Sample stem of a 0-based frame index: ``0000`` … ``1448``."""
    return f"{index:04d}"


@dataclass
class _LabelledFile:
    """Frame-wise reader over an open ``nyu_depth_v2_labeled.mat`` with the axis order fixed."""

    mat: Any
    path: Path
    resources: NYUv2Resources
    hha: bool = False

    def __post_init__(self) -> None:
        self.images = mat_key(self.mat, "images", self.path)
        self.depths = mat_key(self.mat, "depths", self.path)
        self.raw_depths = mat_key(self.mat, "rawDepths", self.path)
        self.labels = mat_key(self.mat, "labels", self.path)
        shape = self.images.shape
        if len(shape) != 4 or shape[1] != 3 or self.images.dtype != np.uint8:
            raise DatasetError(f"{self.path}: 'images' is {self.images.dtype} {shape}, expected uint8 (N, 3, W, H)")
        for name, array in (("depths", self.depths), ("rawDepths", self.raw_depths), ("labels", self.labels)):
            if array.shape != (shape[0], shape[2], shape[3]):
                raise DatasetError(f"{self.path}: '{name}' has shape {array.shape}, expected {(shape[0], *shape[2:])}")
        if shape[0] != NYUV2_NUM_FRAMES:
            raise DatasetError(
                f"{self.path}: holds {shape[0]} frames, the labelled NYUv2 file has {NYUV2_NUM_FRAMES}; "
                "pass nyu_depth_v2_labeled.mat (not the raw-sequence or a custom file)"
            )
        self.image_size = (int(shape[3]), int(shape[2]))

    def sample(self, stem: str) -> SampleData:
        index = int(stem)
        where = f"{self.path} frame {index}"
        labels_894 = np.asarray(self.labels[index]).T
        if labels_894.size and (labels_894.min() < 0 or labels_894.max() > NYUV2_RAW_CLASSES):
            raise DatasetError(f"{where}: raw labels span {labels_894.min()}..{labels_894.max()}, expected 0..894")
        labels_894 = labels_894.astype(np.uint16)
        labels_40 = self.resources.lut_894_to_40[labels_894]
        arrays = {
            "rgb": np.transpose(self.images[index], (2, 1, 0)),
            "depth": metres_to_mm(np.asarray(self.depths[index]).T, f"{where} ('depths')"),
            "depth_raw": metres_to_mm(np.asarray(self.raw_depths[index]).T, f"{where} ('rawDepths')"),
            label_dir("40", default=True): labels_40,
            label_dir("13", default=False): self.resources.lut_40_to_13[labels_40],
            label_dir("894", default=False): labels_894,
        }
        if self.hha:
            arrays["hha"] = self._hha(arrays["depth"], arrays["depth_raw"] > 0, where)
        return SampleData(arrays=arrays)

    @staticmethod
    def _hha(depth: np.ndarray, measured: np.ndarray, where: str) -> np.ndarray:
        """HHA of the refined depth; as in the original, pixels without raw depth shape neither normals nor gravity."""
        try:
            return compute_hha(depth, KINECT_V1_RGB_INTRINSICS_0_BASED, valid=measured, intrinsics_size=KINECT_V1_SIZE)
        except ValueError as error:
            raise DatasetError(f"{where}: cannot compute HHA: {error}") from error

    def scene_types(self) -> dict[str, dict[str, str]]:
        """Per-frame scene type (``sceneTypes``: a cell array of strings behind object references), if present."""
        if "sceneTypes" not in self.mat:
            return {}
        references = np.asarray(self.mat["sceneTypes"]).ravel()
        return {nyuv2_stem(i): {"scene_type": read_char_reference(self.mat, ref)} for i, ref in enumerate(references)}


def _nyuv2_meta(sources: list[dict[str, Any]], image_size: tuple[int, int], options: dict[str, Any]) -> DatasetMeta:
    depth_details = {"unit": "mm", "invalid": 0, "m_to_mm": "round to nearest"}
    mapping_40 = f"raw 894-class labels mapped with mapClass of {NYUV2_MAPPING_40} (0 stays void)"
    modalities = {
        "rgb": ModalitySpec("rgb", "rgb"),
        "depth": ModalitySpec(
            "depth", "metric_mm", details=depth_details | {"variant": "refined (in-painted), 'depths'"}
        ),
        "depth_raw": ModalitySpec("depth_raw", "metric_mm", details=depth_details | {"variant": "raw, 'rawDepths'"}),
    }
    if options.get("hha"):
        modalities["hha"] = ModalitySpec("hha", "hha", details=HHA_DETAILS)
    return DatasetMeta(
        dataset="nyuv2",
        modalities=modalities,
        label_sets={
            "40": LabelSetSpec(label_dir("40", default=True), NYUV2_40, details={"source": mapping_40}),
            "13": LabelSetSpec(
                label_dir("13", default=False),
                NYUV2_13,
                details={"source": f"40-class labels mapped with labels13 of {NYUV2_MAPPING_13}"},
            ),
            "894": LabelSetSpec(
                label_dir("894", default=False),
                nyuv2_894(),
                dtype="uint16",
                details={"source": "'labels' of the .mat as stored; names from allClassName"},
            ),
        },
        default_label_set="40",
        sources=sources,
        camera={
            "model": "Microsoft Kinect v1 (depth registered to the RGB camera)",
            "intrinsics_px_at_480x640": KINECT_V1_RGB_INTRINSICS,
            "intrinsics_source": "NYU Depth V2 toolbox camera_params.m, as widely used; not verified by rgbxseg",
        },
        notes=[
            "Stems are the 0-based frame index in nyu_depth_v2_labeled.mat, zero-padded to 4 digits.",
            f"Split from {NYUV2_SPLITS} (795 train / 654 test); its 1-based MATLAB indices are converted to 0-based.",
            f"Frames are {image_size[0]}×{image_size[1]} as stored in the .mat (MATLAB axis order reversed on read).",
        ],
        created_by={"function": "rgbxseg.data.prepare_nyuv2"},
        fingerprint=fingerprint("nyuv2", sources, options),
    )


def prepare_nyuv2(
    mat_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
    hha: bool = False,
) -> PrepareSummary:
    """Prepare NYUv2 from ``nyu_depth_v2_labeled.mat`` into ``out_dir`` (canonical layout; needs h5py and scipy).

    Writes RGB, refined and raw depth (uint16 mm), labels for 40 classes (default, ``labels/``), 13 classes
    (``labels_13/``) and the 894 raw classes (``labels_894/``, uint16), the 795/654 split and ``meta.json``.
    ``hha=True`` adds the modality ``hha`` (``hha/``, 8-bit RGB PNGs, see :mod:`rgbxseg.data.hha`).
    Interrupting is safe: a re-run resumes; ``overwrite=True`` restarts from scratch.
    """
    resources = nyuv2_resources()
    mat_path = Path(mat_path)
    sources = [describe_file(mat_path, progress=progress)]
    sources += [describe_file(resource_path(name)) for name in (NYUV2_SPLITS, NYUV2_MAPPING_40, NYUV2_MAPPING_13)]
    with open_mat_v73(mat_path) as mat:
        frames = _LabelledFile(mat, mat_path, resources, hha=hha)
        # Only a preparation with HHA names it: trees prepared without it keep their fingerprint and still resume.
        meta = _nyuv2_meta(sources, frames.image_size, {"hha": True} if hha else {})
        splits = {
            "train": [nyuv2_stem(i) for i in resources.train_indices],
            "test": [nyuv2_stem(i) for i in resources.test_indices],
        }
        return write_dataset(
            out_dir,
            meta,
            splits,
            frames.sample,
            overwrite=overwrite,
            progress=progress,
            sample_info=frames.scene_types(),
        )
