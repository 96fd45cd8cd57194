"""Inference on your own RGB-X frames: :class:`Segmenter`, frame reading, depth units, visualisation."""

from .depth import DEPTH_UNITS, DepthUnit, depth_to_mm, resolve_depth_unit
from .frames import (
    CAMERA_BACKENDS,
    FolderFrames,
    Frame,
    camera_frames,
    open_camera,
    open_frames,
    read_modality,
    read_rgb,
)
from .pipeline import OUTPUT_KINDS, PredictSummary, predict_frames, run_camera, write_outputs
from .segmenter import Prediction, PrepareModel, Segmenter
from .visualize import (
    colorize_labels,
    depth_colormap,
    label_image,
    modality_picture,
    overlay,
    prediction_panel,
    save_image,
)

__all__ = [
    "CAMERA_BACKENDS",
    "DEPTH_UNITS",
    "OUTPUT_KINDS",
    "DepthUnit",
    "FolderFrames",
    "Frame",
    "PredictSummary",
    "Prediction",
    "PrepareModel",
    "Segmenter",
    "camera_frames",
    "colorize_labels",
    "depth_colormap",
    "depth_to_mm",
    "label_image",
    "modality_picture",
    "open_camera",
    "open_frames",
    "overlay",
    "predict_frames",
    "prediction_panel",
    "read_modality",
    "read_rgb",
    "resolve_depth_unit",
    "run_camera",
    "save_image",
    "write_outputs",
]
