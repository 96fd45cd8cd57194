"""Importers for the dataset trees users already have, into the canonical layout.

* AsymFormer NYUv2 PNG package: ``images/ depths/ labels/ train.txt test.txt`` (depth uint16 mm, labels 0..40).
* DFormer / CMX tree: ``RGB/ Depth/ (or HHA/) Label/ train.txt test.txt``; the depth encoding must be declared:
  ``minmax_8bit`` (DFormer's per-image min-max PNGs) and ``hha`` stay their own modality because they cannot be
  turned back into metres; ``metric_mm`` and ``sun_shifted`` become canonical ``depth/``.
* MFNet (RGB-thermal): ``images/`` 4-channel PNGs (R, G, B, thermal) or ``rgb/`` + ``ther/``, ``labels/``,
  ``train.txt val.txt test.txt``. Label 0 ("unlabeled") is a real class, so labels are stored + 1.
* PST900 (RGB-thermal): ``{train,test}/{rgb,thermal,thermal_raw,labels}/``. Label 0 (background) is a real
  class, so labels are stored + 1.

Every importer checks each label map against its declared convention and that all files of a sample are aligned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import MFNET_9, NYUV2_40, PST900_5, SUNRGBD_37, ClassSet, get_class_set
from .depth import check_millimetres, check_sun_shifted, sun_png_to_mm
from .errors import DatasetError, MissingFileError
from .images import JPEG_SUFFIXES, image_size, read_image
from .layout import DatasetMeta, LabelSetSpec, ModalitySpec, check_label_range, check_same_size, label_dir
from .resources import NYUV2_SPLIT_COUNTS
from .sunrgbd import SUNRGBD_SPLIT_COUNTS
from .writer import PrepareSummary, SampleData, describe_file, fingerprint, write_dataset

Reader = Callable[[Path], np.ndarray]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_OFFICIAL_COUNTS = {NYUV2_40.name: NYUV2_SPLIT_COUNTS, SUNRGBD_37.name: SUNRGBD_SPLIT_COUNTS}
_DATASET_OF_CLASS_SET = {NYUV2_40.name: "nyuv2", SUNRGBD_37.name: "sunrgbd"}


def _read_rgb(path: Path) -> np.ndarray:
    return read_image(path, convert="RGB")


def _read_grey8(path: Path) -> np.ndarray:
    """8-bit single channel; greyscale stored as RGB(A) (matplotlib ``imsave``) converts exactly."""
    return read_image(path, convert="L")


def _read_uint16(path: Path, what: str, hint: str = "") -> np.ndarray:
    array = read_image(path)
    if array.dtype != np.uint16 or array.ndim != 2:
        raise DatasetError(f"{path}: {what} must be a 16-bit single-channel PNG, got {array.dtype} {array.shape}{hint}")
    return array


def _read_metric_mm(path: Path) -> np.ndarray:
    hint = (
        "; 8-bit depth is usually per-image min-max normalised and has lost its metric scale: declare it with "
        "depth_encoding='minmax_8bit'"
    )
    return check_millimetres(_read_uint16(path, "depth in millimetres", hint), str(path))


def _read_sun_shifted(path: Path) -> np.ndarray:
    stored = check_sun_shifted(_read_uint16(path, "SUN RGB-D depth"), str(path))
    return sun_png_to_mm(stored, refined=True, source=str(path))


def _read_thermal_raw(path: Path) -> np.ndarray:
    return _read_uint16(path, "raw thermal")


def _labels_reader(class_set: ClassSet, offset: int) -> Reader:
    """Labels as class ids (palette PNGs give their indices), range-checked, shifted by ``offset`` to canonical."""

    def read(path: Path) -> np.ndarray:
        labels = read_image(path)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(
                f"{path}: labels must be a single-channel PNG of class ids, got {labels.dtype} {labels.shape}; "
                "colour-coded label images must be converted to class ids first"
            )
        shifted = labels.astype(np.int64) + offset
        check_label_range(shifted, class_set, f"{path} (stored label + {offset})" if offset else str(path))
        return shifted.astype(np.uint8)

    return read


def _stem_of_line(line: str) -> str:
    """``0003``, ``RGB/0003.jpg`` and ``RGB/0003.jpg Label/0003.png`` all name the stem ``0003``."""
    first = line.split(maxsplit=1)[0]
    return Path(first).stem if Path(first).suffix.lower() in _IMAGE_SUFFIXES else Path(first).name


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise MissingFileError(f"{path}: split list is missing")
    return [_stem_of_line(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _locator(folder: Path, suffixes: Sequence[str] = _IMAGE_SUFFIXES) -> Callable[[str], Path]:
    def locate(stem: str) -> Path:
        for suffix in suffixes:
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                return path
        raise MissingFileError(f"{folder / stem}{'|'.join(suffixes)}: no such file, but {stem!r} is in a split list")

    return locate


def _existing_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise MissingFileError(f"{path}: directory is missing; expected the {layout} layout")
    return path


@dataclass(frozen=True)
class _SourceEntry:
    """Where one canonical entry of a sample comes from and how it is read."""

    locate: Callable[[str], Path]
    read: Reader
    keep_jpeg: bool = False  # copy JPEG sources byte for byte instead of re-encoding (RGB, HHA)


def _check_counts(splits: Mapping[str, Sequence[str]], expected: Mapping[str, int] | None, src: Path) -> None:
    counts = {split: len(stems) for split, stems in splits.items()}
    if expected is not None and {k: counts.get(k) for k in expected} != dict(expected):
        raise DatasetError(
            f"{src}: split lists give {counts} samples, expected {dict(expected)} for this dataset; "
            "pass check_counts=False (--no-count-check) to import a subset"
        )
    seen: dict[str, str] = {}
    for split, stems in splits.items():
        for stem in stems:
            if stem in seen:
                raise DatasetError(f"{src}: sample {stem!r} is in both the {seen[stem]} and the {split} split")
            seen[stem] = split


def _import_tree(
    out: str | os.PathLike[str],
    meta: DatasetMeta,
    splits: Mapping[str, Sequence[str]],
    entries: Mapping[str, _SourceEntry],
    *,
    overwrite: bool,
    progress: bool,
) -> PrepareSummary:
    stems = [stem for split in splits.values() for stem in split]
    kept = {
        name
        for name, entry in entries.items()
        if entry.keep_jpeg and all(entry.locate(stem).suffix.lower() in JPEG_SUFFIXES for stem in stems)
    }
    modalities = {k: replace(spec, ext="jpg") if spec.dir in kept else spec for k, spec in meta.modalities.items()}
    meta = replace(meta, modalities=modalities)

    def read(stem: str) -> SampleData:
        arrays, copies, sizes = {}, {}, {}
        for name, entry in entries.items():
            path = entry.locate(stem)
            if name in kept:
                copies[name], sizes[str(path)] = path, image_size(path)
            else:
                arrays[name] = entry.read(path)
                sizes[str(path)] = arrays[name].shape
        check_same_size(sizes)
        return SampleData(arrays=arrays, copies=copies)

    return write_dataset(out, meta, splits, read, overwrite=overwrite, progress=progress)


def _tree_meta(
    dataset: str,
    modalities: dict[str, ModalitySpec],
    label_set: tuple[str, LabelSetSpec],
    *,
    sources: list[dict[str, Any]],
    options: dict[str, Any],
    notes: list[str],
) -> DatasetMeta:
    return DatasetMeta(
        dataset=dataset,
        modalities=modalities,
        label_sets={label_set[0]: label_set[1]},
        default_label_set=label_set[0],
        sources=sources,
        notes=notes,
        created_by={"function": f"rgbxseg.data.{options['importer']}"},
        fingerprint=fingerprint(dataset, sources, options),
    )


def _list_sources(src: Path, splits: Sequence[str]) -> list[dict[str, Any]]:
    return [{"dir": str(src.resolve())}] + [describe_file(src / f"{split}.txt") for split in splits]


def import_asymformer(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    check_counts: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Import the official AsymFormer NYUv2 PNG package (``images/ depths/ labels/ train.txt test.txt``)."""
    src = Path(src)
    layout = "AsymFormer NYUv2 (images/ depths/ labels/ train.txt test.txt)"
    splits = {split: _read_list(src / f"{split}.txt") for split in ("train", "test")}
    _check_counts(splits, NYUV2_SPLIT_COUNTS if check_counts else None, src)
    label = (
        "40",
        LabelSetSpec(label_dir("40", default=True), NYUV2_40, details={"source_convention": "0 = void, 1..40; kept"}),
    )
    meta = _tree_meta(
        "nyuv2",
        {
            "rgb": ModalitySpec("rgb", "rgb", details={"source": "images/ (8-bit colour PNG)"}),
            "depth": ModalitySpec("depth", "metric_mm", details={"unit": "mm", "invalid": 0, "source": "depths/"}),
        },
        label,
        sources=_list_sources(src, list(splits)),
        options={"importer": "import_asymformer"},
        notes=["Imported from the AsymFormer NYUv2 PNG package; stems as in its train.txt / test.txt."],
    )
    entries = {
        "rgb": _SourceEntry(_locator(_existing_dir(src / "images", layout)), _read_rgb),
        "depth": _SourceEntry(_locator(_existing_dir(src / "depths", layout)), _read_metric_mm),
        "labels": _SourceEntry(_locator(_existing_dir(src / "labels", layout)), _labels_reader(NYUV2_40, 0)),
    }
    return _import_tree(out, meta, splits, entries, overwrite=overwrite, progress=progress)


@dataclass(frozen=True)
class _DepthSource:
    """How a declared depth encoding of a DFormer/CMX tree is read and where it lands in the canonical tree."""

    modality: str
    encoding: str
    folder: str
    read: Reader
    note: str
    keep_jpeg: bool = False


DFORMER_DEPTH_ENCODINGS: dict[str, _DepthSource] = {
    "minmax_8bit": _DepthSource(
        "depth_minmax", "minmax_8bit", "Depth", _read_grey8, "8-bit per-image min-max depth; metric scale lost"
    ),
    "hha": _DepthSource("hha", "hha", "HHA", _read_rgb, "HHA images (CMX default X modality)", keep_jpeg=True),
    "metric_mm": _DepthSource("depth", "metric_mm", "Depth", _read_metric_mm, "uint16 millimetres"),
    "sun_shifted": _DepthSource(
        "depth", "metric_mm", "Depth", _read_sun_shifted, "SUN RGB-D bit-shifted PNG: value >> 3 = mm, clipped at 8 m"
    ),
}
"""Depth encodings a DFormer/CMX tree may hold; the user declares which one (it cannot be told from the files)."""


def _first_dir(src: Path, names: Sequence[str], layout: str) -> Path:
    for name in names:
        if (src / name).is_dir():
            return src / name
    raise MissingFileError(f"{src}: has none of {list(names)}; expected the {layout} layout")


def import_dformer(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    depth_encoding: str = "minmax_8bit",
    class_set: str = NYUV2_40.name,
    check_counts: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Import a DFormer/CMX tree (``RGB/ Depth/|HHA/ Label/ train.txt test.txt``, labels 0 = void).

    ``depth_encoding`` declares what the depth folder holds (see :data:`DFORMER_DEPTH_ENCODINGS`); ``class_set`` is
    ``nyuv2_40`` (NYUDepthv2) or ``sunrgbd_37`` (SUNRGBD).
    """
    src = Path(src)
    if depth_encoding not in DFORMER_DEPTH_ENCODINGS:
        raise DatasetError(
            f"unknown depth_encoding {depth_encoding!r}; choose one of {sorted(DFORMER_DEPTH_ENCODINGS)}"
        )
    if class_set not in _DATASET_OF_CLASS_SET:
        raise DatasetError(f"class_set must be one of {sorted(_DATASET_OF_CLASS_SET)}, got {class_set!r}")
    depth, classes = DFORMER_DEPTH_ENCODINGS[depth_encoding], get_class_set(class_set)
    layout = f"DFormer/CMX (RGB/ {depth.folder}/ Label/ train.txt test.txt)"
    splits = {split: _read_list(src / f"{split}.txt") for split in ("train", "test")}
    _check_counts(splits, _OFFICIAL_COUNTS[class_set] if check_counts else None, src)
    depth_details = {"source": f"{depth.folder}/", "declared_encoding": depth_encoding, "note": depth.note}
    if depth.encoding == "metric_mm":
        depth_details |= {"unit": "mm", "invalid": 0}
    name = str(classes.num_classes)
    label = (name, LabelSetSpec(label_dir(name, default=True), classes, details={"source_convention": "0 = void"}))
    meta = _tree_meta(
        _DATASET_OF_CLASS_SET[class_set],
        {
            "rgb": ModalitySpec("rgb", "rgb", details={"source": "RGB/"}),
            depth.modality: ModalitySpec(depth.modality, depth.encoding, details=depth_details),
        },
        label,
        sources=_list_sources(src, list(splits)),
        options={"importer": "import_dformer", "depth_encoding": depth_encoding, "class_set": class_set},
        notes=[
            "Imported from a DFormer/CMX tree; DFormer checkpoints expect BGR input: record that in weight metadata."
        ],
    )
    entries = {
        "rgb": _SourceEntry(_locator(_existing_dir(src / "RGB", layout)), _read_rgb, keep_jpeg=True),
        depth.modality: _SourceEntry(
            _locator(_existing_dir(src / depth.folder, layout)), depth.read, keep_jpeg=depth.keep_jpeg
        ),
        "labels": _SourceEntry(
            _locator(_first_dir(src, ("Label", "labels", "Labels"), layout)), _labels_reader(classes, 0)
        ),
    }
    return _import_tree(out, meta, splits, entries, overwrite=overwrite, progress=progress)


_THERMAL_DETAILS = {"source_convention": "0 = a real class, stored + 1 (canonical 0 = void stays unused)"}


def _mfnet_channels(path: Path) -> np.ndarray:
    array = read_image(path)
    if array.ndim != 3 or array.shape[2] != 4 or array.dtype != np.uint8:
        raise DatasetError(
            f"{path}: MFNet images are 8-bit 4-channel PNGs (R, G, B, thermal), got {array.dtype} {array.shape}"
        )
    return array


def import_mfnet(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Import MFNet (RGB-thermal): ``images/`` (RGBA = RGB + thermal) or ``rgb/`` + ``ther/``, with ``labels/``."""
    src = Path(src)
    layout = "MFNet (images/ or rgb/ + ther/, labels/, train.txt val.txt test.txt)"
    splits = {
        split: _read_list(src / f"{split}.txt")
        for split in ("train", "val", "test")
        if (src / f"{split}.txt").is_file()
    }
    if "train" not in splits or "test" not in splits:
        raise MissingFileError(f"{src}: train.txt and test.txt are required for the {layout} layout")
    _check_counts(splits, None, src)
    if (src / "images").is_dir():
        locate = _locator(src / "images", (".png",))
        rgb = _SourceEntry(locate, lambda path: _mfnet_channels(path)[:, :, :3].copy())
        thermal = _SourceEntry(locate, lambda path: _mfnet_channels(path)[:, :, 3].copy())
    else:
        rgb = _SourceEntry(_locator(_existing_dir(src / "rgb", layout)), _read_rgb)
        thermal = _SourceEntry(_locator(_existing_dir(src / "ther", layout)), _read_grey8)
    meta = _tree_meta(
        "mfnet",
        {"rgb": ModalitySpec("rgb", "rgb"), "thermal": ModalitySpec("thermal", "thermal_8bit")},
        ("9", LabelSetSpec(label_dir("9", default=True), MFNET_9, details=_THERMAL_DETAILS)),
        sources=_list_sources(src, list(splits)),
        options={"importer": "import_mfnet"},
        notes=["Imported from MFNet; label 1 = 'unlabeled', a class counted in the MFNet mIoU."],
    )
    entries = {
        "rgb": rgb,
        "thermal": thermal,
        "labels": _SourceEntry(_locator(_existing_dir(src / "labels", layout)), _labels_reader(MFNET_9, 1)),
    }
    return _import_tree(out, meta, splits, entries, overwrite=overwrite, progress=progress)


def import_pst900(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Import PST900 (RGB-thermal): ``{train,test}/{rgb,thermal,thermal_raw,labels}/<name>.png``.

    Stems are the file names, which PST900 makes unique across splits (checked). ``thermal_raw/`` (16-bit) is
    imported when every split has it.
    """
    src = Path(src)
    layout = "PST900 ({train,test}/{rgb,thermal,labels}/)"
    splits = {
        split: sorted(path.stem for path in _existing_dir(src / split / "rgb", layout).glob("*.png"))
        for split in ("train", "test")
    }
    _check_counts(splits, None, src)
    split_of = {stem: split for split, stems in splits.items() for stem in stems}

    def located(folder: str) -> Callable[[str], Path]:
        return lambda stem: _locator(_existing_dir(src / split_of[stem] / folder, layout), (".png",))(stem)

    modalities = {"rgb": ModalitySpec("rgb", "rgb"), "thermal": ModalitySpec("thermal", "thermal_8bit")}
    entries = {"rgb": _SourceEntry(located("rgb"), _read_rgb), "thermal": _SourceEntry(located("thermal"), _read_grey8)}
    if all((src / split / "thermal_raw").is_dir() for split in splits):
        modalities["thermal_raw"] = ModalitySpec("thermal_raw", "thermal_16bit")
        entries["thermal_raw"] = _SourceEntry(located("thermal_raw"), _read_thermal_raw)
    entries["labels"] = _SourceEntry(located("labels"), _labels_reader(PST900_5, 1))
    meta = _tree_meta(
        "pst900",
        modalities,
        ("5", LabelSetSpec(label_dir("5", default=True), PST900_5, details=_THERMAL_DETAILS)),
        sources=[{"dir": str(src.resolve())}],
        options={"importer": "import_pst900", "thermal_raw": "thermal_raw" in modalities},
        notes=["Imported from PST900; the stereo depth/ folder is not imported (its unit is not documented)."],
    )
    return _import_tree(out, meta, splits, entries, overwrite=overwrite, progress=progress)
