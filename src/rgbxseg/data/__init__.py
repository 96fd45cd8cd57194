"""Data: dataset preparers, importers, the canonical-layout dataset, transforms and synthetic scenes."""

from .classes import CLASS_SETS, MFNET_9, NYUV2_13, NYUV2_40, PST900_5, SUNRGBD_37, ClassSet, get_class_set
from .dataset import RGBXDataset
from .errors import DatasetError, IncompleteDatasetError, MissingFileError
from .importers import import_asymformer, import_dformer, import_mfnet, import_pst900
from .layout import DatasetMeta, read_meta
from .nyuv2 import prepare_nyuv2
from .sunrgbd import prepare_sunrgbd
from .synthetic import generate_synthetic_dataset
from .transforms import Compose, Resize, TrainAugmentation
from .validate import ValidationReport, validate_dataset
from .writer import PrepareSummary

__all__ = [
    "CLASS_SETS",
    "MFNET_9",
    "NYUV2_13",
    "NYUV2_40",
    "PST900_5",
    "SUNRGBD_37",
    "ClassSet",
    "Compose",
    "DatasetError",
    "DatasetMeta",
    "IncompleteDatasetError",
    "MissingFileError",
    "PrepareSummary",
    "RGBXDataset",
    "Resize",
    "TrainAugmentation",
    "ValidationReport",
    "generate_synthetic_dataset",
    "get_class_set",
    "import_asymformer",
    "import_dformer",
    "import_mfnet",
    "import_pst900",
    "prepare_nyuv2",
    "prepare_sunrgbd",
    "read_meta",
    "validate_dataset",
]
