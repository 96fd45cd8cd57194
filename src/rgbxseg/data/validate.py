"""Check a canonical dataset tree: split lists against files, sizes, dtypes, label range; collect statistics."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .errors import DatasetError
from .layout import DatasetMeta, available_splits, read_meta, read_sample, read_split_list


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
        return f"{self.root}: {counts} samples; sizes {sizes}"


def _check_lists(root: Path, meta: DatasetMeta, stems_by_split: dict[str, list[str]]) -> None:
    if not stems_by_split:
        raise DatasetError(f"{root}: has no split lists (train.txt, test.txt)")
    owner: dict[str, str] = {}
    for split, stems in stems_by_split.items():
        if not stems:
            raise DatasetError(f"{root / f'{split}.txt'}: is empty")
        for stem in stems:
            if stem in owner:
                raise DatasetError(f"{root}: stem {stem!r} is listed in both {owner[stem]}.txt and {split}.txt")
            owner[stem] = split
        declared = meta.splits.get(split)
        if declared is not None and declared != len(stems):
            raise DatasetError(f"{root / f'{split}.txt'}: lists {len(stems)} stems, meta.json declares {declared}")


def validate_dataset(
    root: str | os.PathLike[str], *, meta: DatasetMeta | None = None, progress: bool = False
) -> ValidationReport:
    """Read every listed sample and check it against ``meta.json`` (or ``meta`` when given, as preparers do).

    Raises :class:`DatasetError` naming the first offending file; returns a :class:`ValidationReport`.
    """
    root = Path(root)
    meta = meta if meta is not None else read_meta(root)[0]
    stems_by_split = {split: read_split_list(root, split) for split in available_splits(root)}
    _check_lists(root, meta, stems_by_split)
    report = ValidationReport(root, {split: len(stems) for split, stems in stems_by_split.items()})
    depth_names = [name for name, spec in meta.modalities.items() if spec.encoding == "metric_mm"]
    total = sum(report.counts.values())
    with tqdm(total=total, desc=f"validating {root.name}", unit="sample", disable=not progress) as bar:
        for split, stems in stems_by_split.items():
            histograms = {name: np.zeros(spec.num_classes + 1, np.int64) for name, spec in meta.label_sets.items()}
            depth_stats = {name: _DepthAccumulator() for name in depth_names}
            for stem in stems:
                arrays, labels = read_sample(
                    root,
                    meta,
                    stem,
                    modalities=list(meta.modalities),
                    label_sets=list(meta.label_sets),
                    listed_in=f"{split}.txt",
                )
                size = arrays["rgb"].shape[:2]
                if meta.image_size is not None and tuple(size) != tuple(meta.image_size):
                    raise DatasetError(
                        f"{root}: sample {stem!r} is {size[0]}×{size[1]}, meta.json declares "
                        f"{meta.image_size[0]}×{meta.image_size[1]}"
                    )
                report.image_sizes[(int(size[0]), int(size[1]))] += 1
                for name, label in labels.items():
                    histograms[name] += np.bincount(label.ravel(), minlength=histograms[name].size)
                for name, accumulator in depth_stats.items():
                    accumulator.add(arrays[name])
                bar.update()
            for name, histogram in histograms.items():
                report.pixel_counts.setdefault(name, {})[split] = histogram.tolist()
            for name, accumulator in depth_stats.items():
                report.depth_mm.setdefault(name, {})[split] = accumulator.summary()
    return report
