"""The canonical on-disk layout: ``meta.json`` schema, split lists, and checked reading of sample files.

::

    <root>/meta.json                 written last: its presence marks a complete dataset
    <root>/train.txt, test.txt       one stem per line (val.txt optional)
    <root>/rgb/<stem>.png|jpg        8-bit RGB
    <root>/depth/<stem>.png          uint16 millimetres, 0 = invalid (depth_raw/ for unrefined depth)
    <root>/labels/<stem>.png         uint8, 0 = void, 1..K (other label sets: labels_<name>/, e.g. labels_13/)
    <root>/<modality>/<stem>.png     further modalities (thermal/, hha/, depth_minmax/), declared in meta.json
    <root>/samples.json              optional per-sample facts (camera, intrinsics, scene)

The root is a boundary: stems, split names and the directories of ``meta.json`` are plain names
(:func:`is_plain_name`), so no list or ``meta.json`` can make rgbxseg read a file outside it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import ClassSet
from ..inputs import ENCODINGS, ChannelNormalization
from ..io import atomic_write_path
from .depth import check_millimetres
from .errors import DatasetError, IncompleteDatasetError, MissingFileError
from .images import read_image

FORMAT_VERSION = 1
META_FILE = "meta.json"
SAMPLE_INFO_FILE = "samples.json"
SPLITS = ("train", "val", "test")
DEFAULT_LABEL_DIR = "labels"


def is_plain_name(name: str) -> bool:
    """True for a name that cannot leave the folder it is joined to: not empty, ``.`` or ``..``, and without ``/``,
    ``\\`` (on any platform), NUL or a drive (``../x`` or an absolute path in a list would leave the dataset)."""
    return name not in {"", ".", ".."} and not set(name) & set("/\\\0") and Path(name).name == name


def _check_plain(name: str, what: str) -> None:
    if not is_plain_name(name):
        raise DatasetError(f"{what} {name!r} is not a plain name; it must name an entry directly inside the dataset")


@dataclass(frozen=True)
class ModalitySpec:
    """One image modality of a dataset (``rgb`` included), stored as ``<dir>/<stem>.<ext>``."""

    dir: str
    encoding: str
    ext: str = "png"
    normalization: ChannelNormalization | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise DatasetError(f"unknown modality encoding {self.encoding!r}; known: {sorted(ENCODINGS)}")
        _check_plain(self.dir, "modality directory")
        _check_plain(self.ext, "file extension")

    @property
    def dtype(self) -> str:
        return ENCODINGS[self.encoding].dtype

    @property
    def channels(self) -> int:
        return ENCODINGS[self.encoding].channels

    @property
    def channel_normalization(self) -> ChannelNormalization | None:
        """Declared normalisation, else the encoding's default (None for ``rgb`` and ``metric_mm``)."""
        return self.normalization or ENCODINGS[self.encoding].normalization

    def to_dict(self) -> dict[str, Any]:
        data = {"dir": self.dir, "ext": self.ext, "encoding": self.encoding, "dtype": self.dtype}
        data |= {"channels": self.channels, "description": ENCODINGS[self.encoding].description}
        if self.channel_normalization is not None:
            data["normalization"] = self.channel_normalization.to_dict()
        return data | dict(self.details)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalitySpec:
        known = {"dir", "ext", "encoding", "dtype", "channels", "description", "normalization"}
        normalization = data.get("normalization")
        return cls(
            dir=str(data["dir"]),
            encoding=str(data["encoding"]),
            ext=str(data.get("ext", "png")),
            normalization=ChannelNormalization.from_dict(normalization) if normalization else None,
            details={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True)
class LabelSetSpec:
    """One labelling of the samples: 0 = void, 1..K = the classes of ``class_set``."""

    dir: str
    class_set: ClassSet
    dtype: str = "uint8"
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_plain(self.dir, "label directory")

    @property
    def num_classes(self) -> int:
        return self.class_set.num_classes

    def to_dict(self) -> dict[str, Any]:
        data = {"dir": self.dir, "dtype": self.dtype, "void": 0, "num_classes": self.num_classes}
        return data | self.class_set.to_dict() | dict(self.details)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSetSpec:
        known = {"dir", "dtype", "void", "num_classes", "class_set", "names", "palette"}
        return cls(
            dir=str(data["dir"]),
            class_set=ClassSet.from_dict(data),
            dtype=str(data.get("dtype", "uint8")),
            details={k: v for k, v in data.items() if k not in known},
        )


def label_dir(name: str, *, default: bool) -> str:
    """``labels/`` for the default label set, ``labels_<name>/`` for the others."""
    return DEFAULT_LABEL_DIR if default else f"{DEFAULT_LABEL_DIR}_{name}"


@dataclass(frozen=True)
class DatasetMeta:
    """Everything ``meta.json`` declares about a canonical dataset."""

    dataset: str
    modalities: Mapping[str, ModalitySpec]
    label_sets: Mapping[str, LabelSetSpec]
    default_label_set: str
    splits: Mapping[str, int] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    sources: Sequence[Mapping[str, Any]] = ()
    camera: Mapping[str, Any] | None = None
    notes: Sequence[str] = ()
    statistics: Mapping[str, Any] = field(default_factory=dict)
    created_by: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    has_sample_info: bool = False

    def __post_init__(self) -> None:
        if "rgb" not in self.modalities:
            raise DatasetError(f"dataset {self.dataset!r} declares no 'rgb' modality")
        if self.default_label_set not in self.label_sets:
            raise DatasetError(f"default label set {self.default_label_set!r} is not among {sorted(self.label_sets)}")

    def modality(self, name: str) -> ModalitySpec:
        try:
            return self.modalities[name]
        except KeyError:
            hints = "; ".join(f"{k}: {ENCODINGS[m.encoding].description}" for k, m in self.modalities.items())
            raise DatasetError(f"dataset {self.dataset!r} has no modality {name!r} (it has {hints})") from None

    def label_set(self, name: str | None = None) -> LabelSetSpec:
        try:
            return self.label_sets[self.default_label_set if name is None else str(name)]
        except KeyError:
            raise DatasetError(
                f"dataset {self.dataset!r} has no label set {name!r}; available: {sorted(self.label_sets)}"
            ) from None

    def directories(self) -> list[str]:
        """The per-sample directories of the tree (modalities, then label sets)."""
        return [spec.dir for spec in self.modalities.values()] + [spec.dir for spec in self.label_sets.values()]

    def sample_files(self, root: str | os.PathLike[str], stem: str) -> dict[str, Path]:
        """Every file of one sample, keyed by its directory (modalities and label sets)."""
        root = Path(root)
        files = {spec.dir: root / spec.dir / f"{stem}.{spec.ext}" for spec in self.modalities.values()}
        return files | {spec.dir: root / spec.dir / f"{stem}.png" for spec in self.label_sets.values()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "rgbxseg-dataset",
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "created_by": dict(self.created_by),
            "fingerprint": self.fingerprint,
            "sources": [dict(s) for s in self.sources],
            "splits": dict(self.splits),
            "image_size": list(self.image_size) if self.image_size else None,
            "modalities": {name: spec.to_dict() for name, spec in self.modalities.items()},
            "label_sets": {name: spec.to_dict() for name, spec in self.label_sets.items()},
            "default_label_set": self.default_label_set,
            "camera": dict(self.camera) if self.camera is not None else None,
            "sample_info": SAMPLE_INFO_FILE if self.has_sample_info else None,
            "notes": list(self.notes),
            "statistics": dict(self.statistics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetMeta:
        if data.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        size = data.get("image_size")
        return cls(
            dataset=str(data["dataset"]),
            modalities={k: ModalitySpec.from_dict(v) for k, v in data["modalities"].items()},
            label_sets={k: LabelSetSpec.from_dict(v) for k, v in data["label_sets"].items()},
            default_label_set=str(data["default_label_set"]),
            splits=dict(data.get("splits", {})),
            image_size=(int(size[0]), int(size[1])) if size else None,
            sources=list(data.get("sources", [])),
            camera=data.get("camera"),
            notes=list(data.get("notes", [])),
            statistics=dict(data.get("statistics", {})),
            created_by=dict(data.get("created_by", {})),
            fingerprint=str(data.get("fingerprint", "")),
            has_sample_info=bool(data.get("sample_info")),
        )


def _is_flat(value: Any) -> bool:
    if isinstance(value, dict):
        return all(not isinstance(v, dict | list) for v in value.values())
    if isinstance(value, list):
        return all(not isinstance(v, dict) and _is_flat(v) for v in value)
    return True


def _format_json(value: Any, indent: str = "") -> str:
    """Indented JSON that keeps flat lists (palettes, pixel counts) and flat objects on one line."""
    if _is_flat(value):
        return json.dumps(value, ensure_ascii=False)
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_format_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{_format_json(v, inner)}" for v in value) + f"\n{indent}]"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (readers never see half a file)."""
    with atomic_write_path(path) as tmp:
        tmp.write_text(_format_json(data) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise MissingFileError(f"{path}: file is missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err}); re-run the preparation") from err


def write_meta(root: str | os.PathLike[str], meta: DatasetMeta) -> None:
    write_json(Path(root) / META_FILE, meta.to_dict())


def read_meta(root: str | os.PathLike[str]) -> tuple[DatasetMeta, dict[str, Any]]:
    """Parsed ``meta.json`` (typed and as plain JSON); refuses a dataset whose preparation did not finish."""
    root = Path(root)
    path = root / META_FILE
    if not path.is_file():
        if not root.is_dir():
            raise MissingFileError(f"{root}: dataset directory does not exist")
        raise IncompleteDatasetError(
            f"{root}: has no {META_FILE}, so its preparation did not finish (or it is not a prepared dataset); "
            "re-run the same 'rgbxseg prepare ...' command: it resumes where it stopped"
        )
    data = read_json(path)
    try:
        return DatasetMeta.from_dict(data), data
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f"{path}: does not follow the rgbxseg dataset schema ({err!r}); re-run the preparation"
        ) from err


def split_list_path(root: str | os.PathLike[str], split: str) -> Path:
    _check_plain(split, "split")
    return Path(root) / f"{split}.txt"


def available_splits(root: str | os.PathLike[str]) -> list[str]:
    return [split for split in SPLITS if split_list_path(root, split).is_file()]


def read_split_list(root: str | os.PathLike[str], split: str) -> list[str]:
    """Stems of one split, one per line (UTF-8, a byte-order mark allowed); blank lines ignored. Duplicates are refused,
    and so are stems that are not plain names: a list names samples of this dataset, never files elsewhere."""
    path = split_list_path(root, split)
    if not path.is_file():
        raise MissingFileError(f"{path}: split list is missing; available splits: {available_splits(root)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{path}: is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8, one stem per line"
        ) from None
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    outside = [stem for stem in stems if not is_plain_name(stem)]
    if outside:
        raise DatasetError(
            f"{path}: lists stems that are not plain names: {outside[:5]}; a stem names the files of one sample "
            "inside the dataset (rgb/<stem>.png, …): remove directories ('/', '\\', '..') and absolute paths"
        )
    duplicates = sorted(stem for stem, count in Counter(stems).items() if count > 1)
    if duplicates:
        raise DatasetError(f"{path}: lists these stems more than once: {duplicates[:10]}")
    return stems


def write_split_list(root: str | os.PathLike[str], split: str, stems: Sequence[str]) -> None:
    with atomic_write_path(split_list_path(root, split)) as tmp:
        tmp.write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8")


def _read_listed(path: Path, listed_in: str) -> np.ndarray:
    try:
        return read_image(path, match_suffix=True)
    except MissingFileError as err:
        raise MissingFileError(
            f"{path}: file is missing, but its sample is listed in {listed_in}; "
            "re-run the preparation or remove the stem from the list"
        ) from err


def _channels(array: np.ndarray) -> int:
    return 1 if array.ndim == 2 else array.shape[2]


def read_modality(root: str | os.PathLike[str], spec: ModalitySpec, stem: str, *, listed_in: str) -> np.ndarray:
    """One modality file, checked against its declared dtype and channel count."""
    path = Path(root) / spec.dir / f"{stem}.{spec.ext}"
    array = _read_listed(path, listed_in)
    if spec.encoding == "metric_mm" and array.dtype == np.uint8:
        raise DatasetError(
            f"{path}: depth is 8-bit but this dataset declares 16-bit millimetres; 8-bit depth is usually per-image "
            "min-max normalised (DFormer/CMX) and has lost its metric scale: import it with "
            "depth_encoding='minmax_8bit', or write the depth as uint16 millimetres"
        )
    if str(array.dtype) != spec.dtype or _channels(array) != spec.channels:
        raise DatasetError(
            f"{path}: is {array.dtype} with {_channels(array)} channel(s), but the {spec.dir!r} modality "
            f"({spec.encoding}) is {spec.dtype} with {spec.channels}; re-create the file"
        )
    return check_millimetres(array, str(path)) if spec.encoding == "metric_mm" else array


def read_labels(root: str | os.PathLike[str], spec: LabelSetSpec, stem: str, *, listed_in: str) -> np.ndarray:
    """One label PNG, checked for dtype and for values within 0..K."""
    path = Path(root) / spec.dir / f"{stem}.png"
    labels = _read_listed(path, listed_in)
    if labels.ndim != 2 or str(labels.dtype) != spec.dtype:
        raise DatasetError(
            f"{path}: labels must be single-channel {spec.dtype} (0 = void, 1..{spec.num_classes}), got "
            f"{labels.dtype} with shape {labels.shape}"
        )
    check_label_range(labels, spec.class_set, str(path))
    return labels


def check_label_range(labels: np.ndarray, class_set: ClassSet, source: str) -> None:
    """Refuse label values above the class count, with a hint for the usual convention mix-ups."""
    top = int(labels.max()) if labels.size else 0
    if top <= class_set.num_classes:
        return
    hint = ""
    if top == 255:
        hint = (
            " 255 usually marks ignored pixels of labels already shifted to 0..K-1 (TokenFusion/GeminiFusion style); "
            "convert them to the canonical convention: label + 1, with 255 → 0"
        )
    raise DatasetError(
        f"{source}: label values go up to {top}, but {class_set.name} has {class_set.num_classes} classes "
        f"(canonical labels: 0 = void, 1..{class_set.num_classes}).{hint}"
    )


def check_same_size(sizes: Mapping[str, tuple[int, ...]]) -> tuple[int, int]:
    """All modalities and labels of a sample (H×W keyed by file name) must share one size; returns it."""
    sizes = {name: tuple(size[:2]) for name, size in sizes.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name} is {h}×{w}" for name, (h, w) in sizes.items())
        raise DatasetError(f"sample files differ in size ({listing}); all modalities and labels must be aligned")
    height, width = next(iter(sizes.values()))
    return int(height), int(width)


def read_sample(
    root: str | os.PathLike[str],
    meta: DatasetMeta,
    stem: str,
    *,
    modalities: Sequence[str],
    label_sets: Sequence[str],
    listed_in: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Checked arrays of one sample: (modalities by name, label sets by name), all of the same H×W."""
    arrays = {name: read_modality(root, meta.modality(name), stem, listed_in=listed_in) for name in modalities}
    labels = {name: read_labels(root, meta.label_set(name), stem, listed_in=listed_in) for name in label_sets}
    check_sample_size(meta, stem, arrays, labels)
    return arrays, labels


def check_sample_size(
    meta: DatasetMeta, stem: str, arrays: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
) -> tuple[int, int]:
    """The H×W shared by the arrays of one sample (modalities and label sets by name); else an error listing each."""
    return check_same_size(
        {f"{meta.modality(n).dir}/{stem}": a.shape for n, a in arrays.items()}
        | {f"{meta.label_set(n).dir}/{stem}": a.shape for n, a in labels.items()}
    )
