"""Check a canonical dataset tree: split lists against files, sizes, dtypes, label range; collect statistics."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .errors import DatasetError, InvalidDatasetError, MissingFileError, printable
from .layout import (
    SAMPLE_INFO_FILE,
    DatasetMeta,
    available_splits,
    check_sample_size,
    read_json,
    read_labels,
    read_meta,
    read_modality,
    read_split_list,
    split_list_path,
)


@dataclass
class _DepthAccumulator:
    """Streaming mean/std of valid (non-zero) depth in millimetres."""

    total: float = 0.0
    total_sq: float = 0.0
    valid: int = 0
    pixels: int = 0

    def add(self, depth: np.ndarray) -> None:
        values = depth[depth > 0].astype(np.float64)
        self.total += float(values.sum())
        self.total_sq += float(np.square(values).sum())
        self.valid += values.size
        self.pixels += depth.size

    def summary(self) -> dict[str, float]:
        mean = self.total / self.valid if self.valid else 0.0
        variance = max(self.total_sq / self.valid - mean**2, 0.0) if self.valid else 0.0
        return {"mean": mean, "std": variance**0.5, "valid_fraction": self.valid / max(self.pixels, 1)}


@dataclass
class ValidationReport:
    """What :func:`validate_dataset` found: counts, sizes, per-class pixel counts and depth statistics."""

    root: Path
    counts: dict[str, int]
    image_sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    pixel_counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    depth_mm: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The common H×W, or None when sizes vary (SUN RGB-D)."""
        return next(iter(self.image_sizes)) if len(self.image_sizes) == 1 else None

    def statistics(self) -> dict[str, Any]:
        return {"pixel_counts": self.pixel_counts, "depth_mm": self.depth_mm}

    def __str__(self) -> str:
        counts = ", ".join(f"{split} {count}" for split, count in self.counts.items())
        sizes = ", ".join(f"{h}×{w} ({n})" for (h, w), n in self.image_sizes.most_common(5))
        return f"{printable(self.root)}: {counts} samples; sizes {sizes}"


def _read_list(root: Path, meta: DatasetMeta, split: str) -> list[str]:
    """One split list: present when ``meta.json`` declares it, readable and not empty."""
    path = split_list_path(root, split)
    if split in meta.splits and not path.is_file():
        raise MissingFileError(
            f"{path}: split list is missing, but meta.json declares {meta.splits[split]} {split!r} samples; restore "
            "it or re-run the preparation"
        )
    stems = read_split_list(root, split)
    if not stems:
        raise DatasetError(f"{path}: is empty; list one stem per line or delete the file")
    return stems


def _read_lists(root: Path, meta: DatasetMeta, problems: list[str]) -> dict[str, list[str]]:
    """Every split list present or declared in ``meta.json``; each bad one (and a stem in two lists) is a problem."""
    stems_by_split: dict[str, list[str]] = {}
    for split in dict.fromkeys([*available_splits(root), *meta.splits]):
        try:
            stems_by_split[split] = stems = _read_list(root, meta, split)
        except DatasetError as err:
            problems.append(str(err))
            continue
        if meta.splits.get(split, len(stems)) != len(stems):
            problems.append(
                f"{split_list_path(root, split)}: lists {len(stems)} stems, meta.json declares {meta.splits[split]}; "
                "restore the list or re-run the preparation"
            )
    if not stems_by_split and not problems:
        problems.append(f"{root}: has no split lists (train.txt, test.txt); write one stem per line")
    owner: dict[str, str] = {}
    for split, stems in stems_by_split.items():
        for stem in stems:
            if owner.setdefault(stem, split) != split:
                problems.append(f"{root}: stem {stem!r} is listed in both {owner[stem]}.txt and {split}.txt")
    return stems_by_split


def _check_directories(root: Path, meta: DatasetMeta, problems: list[str]) -> set[str]:
    """Declared directories that are missing (one problem each, not one per file); a file name that is not UTF-8,
    which no split list can name, is a problem too."""
    missing = set()
    for directory in meta.directories():
        folder = root / directory
        if not folder.is_dir():
            problems.append(
                f"{printable(folder)}: directory is missing, but meta.json declares it; re-run the preparation"
            )
            missing.add(directory)
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if printable(entry.name) != entry.name:  # bytes that are not UTF-8 decode to surrogates
                    problems.append(
                        f"{printable(entry.path)}: file name is not UTF-8, so no split list can name it; rename it"
                    )
    return missing


def _collect(problems: list[str], into: dict[str, np.ndarray], name: str, read: Callable[[], np.ndarray]) -> None:
    """``into[name] = read()``, or the error as one more problem."""
    try:
        into[name] = read()
    except DatasetError as err:
        problems.append(str(err))


def _check_sample(
    root: Path, meta: DatasetMeta, stem: str, listed_in: str, skip: set[str], problems: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """Every file of one sample (but those in ``skip`` directories), each bad one a problem; None when any was."""
    found = len(problems)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for name, spec in meta.modalities.items():
        if spec.dir not in skip:
            _collect(problems, arrays, name, partial(read_modality, root, spec, stem, listed_in=listed_in))
    for name, spec in meta.label_sets.items():
        if spec.dir not in skip:
            _collect(problems, labels, name, partial(read_labels, root, spec, stem, listed_in=listed_in))
    if len(problems) > found or skip:
        return None
    try:
        height, width = check_sample_size(meta, stem, arrays, labels)
        if meta.image_size is not None and (height, width) != tuple(meta.image_size):
            raise DatasetError(
                f"{root}: sample {stem!r} is {height}×{width}, meta.json declares "
                f"{meta.image_size[0]}×{meta.image_size[1]}; re-create its files or re-run the preparation"
            )
    except DatasetError as err:
        problems.append(str(err))
        return None
    return arrays, labels


def validate_dataset(
    root: str | os.PathLike[str], *, meta: DatasetMeta | None = None, progress: bool = False
) -> ValidationReport:
    """Read every listed sample and check it against ``meta.json`` (or ``meta`` when given, as preparers do).

    Checks every split list that is present or declared, then every file of every listed sample, and raises
    :class:`InvalidDatasetError` listing every bad file (each problem names its file and the fix). Returns a
    :class:`ValidationReport` when all is well.
    """
    root = Path(root)
    meta = meta if meta is not None else read_meta(root)[0]
    problems: list[str] = []
    stems_by_split = _read_lists(root, meta, problems)
    missing_dirs = _check_directories(root, meta, problems)
    if meta.has_sample_info:
        try:
            read_json(root / SAMPLE_INFO_FILE)
        except DatasetError as err:
            problems.append(str(err))
    report = ValidationReport(root, {split: len(stems) for split, stems in stems_by_split.items()})
    depth_names = [name for name, spec in meta.modalities.items() if spec.encoding == "metric_mm"]
    total = sum(report.counts.values())
    with tqdm(total=total, desc=f"validating {root.name}", unit="sample", disable=not progress) as bar:
        for split, stems in stems_by_split.items():
            histograms = {name: np.zeros(spec.num_classes + 1, np.int64) for name, spec in meta.label_sets.items()}
            depth_stats = {name: _DepthAccumulator() for name in depth_names}
            for stem in stems:
                sample = _check_sample(root, meta, stem, f"{split}.txt", missing_dirs, problems)
                bar.update()
                if sample is None:
                    continue
                arrays, labels = sample
                size = arrays["rgb"].shape[:2]
                report.image_sizes[(int(size[0]), int(size[1]))] += 1
                for name, label in labels.items():
                    histograms[name] += np.bincount(label.ravel(), minlength=histograms[name].size)
                for name, accumulator in depth_stats.items():
                    accumulator.add(arrays[name])
            for name, histogram in histograms.items():
                report.pixel_counts.setdefault(name, {})[split] = histogram.tolist()
            for name, accumulator in depth_stats.items():
                report.depth_mm.setdefault(name, {})[split] = accumulator.summary()
    if problems:
        raise InvalidDatasetError(root, problems)
    return report
