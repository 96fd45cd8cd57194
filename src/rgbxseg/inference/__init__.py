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
from .memory import DEFAULT_MAX_PIXELS, FrameTooLargeError
from .pipeline import OUTPUT_KINDS, PredictSummary, predict_frames, run_camera, write_outputs
from .segmenter import Prediction, PrepareModel, Segmenter
from .visualize import (
    add_legend,
    colorize_labels,
    depth_colormap,
    label_image,
    legend,
    modality_picture,
    overlay,
    prediction_panel,
    save_image,
)

__all__ = [
    "CAMERA_BACKENDS",
    "DEFAULT_MAX_PIXELS",
    "DEPTH_UNITS",
    "OUTPUT_KINDS",
    "DepthUnit",
    "FolderFrames",
    "Frame",
    "FrameTooLargeError",
    "PredictSummary",
    "Prediction",
    "PrepareModel",
    "Segmenter",
    "add_legend",
    "camera_frames",
    "colorize_labels",
    "depth_colormap",
    "depth_to_mm",
    "label_image",
    "legend",
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
