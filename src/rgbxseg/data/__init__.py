"""Data: dataset preparers, importers, the canonical-layout dataset, transforms and synthetic scenes."""

from .dataset import RGBXDataset, resolve_input_spec
from .errors import DatasetError, IncompleteDatasetError, InvalidDatasetError, MissingFileError
from .hha import (
    CameraIntrinsics,
    HHAChannels,
    compute_hha,
    estimate_gravity,
    hha_channels,
    point_cloud,
    surface_normals,
)
from .importers import import_asymformer, import_dformer, import_mfnet, import_pst900
from .layout import DatasetMeta, read_meta
from .nyuv2 import prepare_nyuv2
from .resources import nyuv2_894
from .sunrgbd import prepare_sunrgbd
from .synthetic import generate_synthetic_dataset
from .transforms import Compose, Resize, TrainAugmentation
from .validate import ValidationReport, validate_dataset
from .writer import PrepareSummary

__all__ = [
    "CameraIntrinsics",
    "Compose",
    "DatasetError",
    "DatasetMeta",
    "HHAChannels",
    "IncompleteDatasetError",
    "InvalidDatasetError",
    "MissingFileError",
    "PrepareSummary",
    "RGBXDataset",
    "Resize",
    "TrainAugmentation",
    "ValidationReport",
    "compute_hha",
    "estimate_gravity",
    "generate_synthetic_dataset",
    "hha_channels",
    "import_asymformer",
    "import_dformer",
    "import_mfnet",
    "import_pst900",
    "nyuv2_894",
    "point_cloud",
    "prepare_nyuv2",
    "prepare_sunrgbd",
    "read_meta",
    "resolve_input_spec",
    "surface_normals",
    "validate_dataset",
]
