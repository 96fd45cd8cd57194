"""Synthetic indoor RGB-D scenes: procedural rooms, ray cast with a Kinect-like camera, NYU-40 labels.

A scene is an axis-aligned room (floor, four walls, ceiling) filled with furniture and objects made of boxes,
chosen per room type (bedroom, living room, office, kitchen). Rendering casts one ray per pixel against the room
planes and every box (vectorised numpy; each box is tested only inside its projected screen rectangle) and gives

* RGB: procedural textures (wood, tiles, wallpaper, fabric, book spines, pictures), a point light with ambient
  light, white balance and exposure changes, vignetting, blur and sensor noise;
* depth in millimetres as a Kinect v1 would measure it: z distance with noise growing with distance, disparity
  quantisation, 0.5–10 m range, holes in projector shadows beside depth discontinuities, at grazing angles, on
  glass and screens, and in speckles;
* labels: NYU-40 class ids (0 = void on a thin share of object boundaries, as in hand annotation).

Some structures (pillars, wall ledges, plinths; class ``otherstructure``) are *depth-only*: their pixels show the
colour of whatever lies behind them, so only depth reveals them and a model fusing depth can beat an RGB-only one.
Everything is deterministic in the seed.

Public API: :func:`generate_synthetic_dataset` (canonical layout on disk), :func:`render_scene` (one frame),
:func:`build_scene` and :func:`render` (the two halves, e.g. to edit a scene before rendering it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...classes import NYUV2_40
from ..layout import DatasetMeta, LabelSetSpec, ModalitySpec, label_dir
from ..writer import SampleData, fingerprint, write_dataset
from .render import MAX_RANGE_M, MIN_RANGE_M, focal_px, render
from .scene import CLASS_ID, DEPTH_ONLY_CLASS, Box, Camera, Material, Pattern, Scene, build_scene

__all__ = [
    "CLASS_ID",
    "DEPTH_ONLY_CLASS",
    "Box",
    "Camera",
    "Material",
    "Pattern",
    "Scene",
    "build_scene",
    "frame_seed",
    "generate_synthetic_dataset",
    "render",
    "render_scene",
]


def render_scene(seed: int, height: int = 240, width: int = 320) -> dict[str, np.ndarray]:
    """Build and render the scene of ``seed``: ``rgb`` uint8 H×W×3, ``depth`` uint16 mm, ``label`` uint8 NYU-40."""
    return render(build_scene(seed), height, width, seed)


def frame_seed(seed: int, split: str, index: int) -> int:
    """Seed of frame ``index`` of ``split``: independent of the frame counts, so more frames keep the first ones."""
    return int(np.random.SeedSequence([seed, ("train", "test").index(split), index]).generate_state(1)[0])


def _synthetic_meta(height: int, width: int, options: dict[str, int]) -> DatasetMeta:
    focal = focal_px(width)
    return DatasetMeta(
        dataset="synthetic",
        modalities={
            "rgb": ModalitySpec("rgb", "rgb"),
            "depth": ModalitySpec(
                "depth",
                "metric_mm",
                details={
                    "unit": "mm",
                    "invalid": 0,
                    "variant": "simulated Kinect v1: noise growing with distance, disparity steps, holes",
                },
            ),
        },
        label_sets={"40": LabelSetSpec(label_dir("40", default=True), NYUV2_40)},
        default_label_set="40",
        sources=[{"generator": "rgbxseg.data.synthetic", **options}],
        camera={
            "model": "pinhole, Kinect-v1-like",
            "intrinsics_px": {"fx": focal, "fy": focal, "cx": width / 2, "cy": height / 2},
            "depth_range_m": [MIN_RANGE_M, MAX_RANGE_M],
        },
        notes=[
            "Procedural rooms rendered by ray casting; every frame is a new room, deterministic in the seed.",
            f"'{DEPTH_ONLY_CLASS}' structures (pillars, ledges, plinths) have the colour of what is behind them: "
            "only depth shows them.",
        ],
        created_by={"function": "rgbxseg.data.synthetic.generate_synthetic_dataset"},
        fingerprint=fingerprint("synthetic", [], options),
    )


def generate_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    num_train: int = 240,
    num_test: int = 60,
    height: int = 240,
    width: int = 320,
    seed: int = 0,
    progress: bool = True,
    *,
    overwrite: bool = False,
) -> Path:
    """Render ``num_train`` + ``num_test`` frames into the canonical layout at ``out_dir``; returns the root.

    Stems are ``train_00000`` … and ``test_00000`` …; frame *i* of a split is the scene of
    :func:`frame_seed` (seed, split, i). Interrupting is safe: a re-run resumes.
    """
    if min(num_train, num_test) < 1 or min(height, width) < 8:
        raise ValueError("need at least one train and one test frame of at least 8×8 pixels")
    options = {"num_train": num_train, "num_test": num_test, "height": height, "width": width, "seed": seed}
    splits = {
        split: [f"{split}_{i:05d}" for i in range(count)] for split, count in (("train", num_train), ("test", num_test))
    }

    def read(stem: str) -> SampleData:
        split, index = stem.split("_")
        frame = render_scene(frame_seed(seed, split, int(index)), height, width)
        return SampleData(
            arrays={"rgb": frame["rgb"], "depth": frame["depth"], label_dir("40", default=True): frame["label"]}
        )

    meta = _synthetic_meta(height, width, options)
    return write_dataset(out_dir, meta, splits, read, overwrite=overwrite, progress=progress).root
