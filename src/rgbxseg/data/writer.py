"""Writing a canonical dataset safely: atomic files, resumable runs, and ``meta.json`` written last.

A preparation first records its *fingerprint* (sources, options, tool version) in a state file. A re-run with the
same fingerprint skips every sample whose files are all present and readable (files are written atomically, so a
present file is complete) and continues; ``meta.json`` appears only after the whole tree has been validated, so a
tree without it is never mistaken for a finished dataset.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..io import file_digest
from ..version import __version__
from .errors import DatasetError, existing_file
from .images import copy_file, image_header, write_png
from .layout import (
    FORMAT_VERSION,
    META_FILE,
    SAMPLE_INFO_FILE,
    SPLITS,
    DatasetMeta,
    read_json,
    split_list_path,
    write_json,
    write_meta,
    write_split_list,
)
from .validate import validate_dataset

STATE_FILE = ".rgbxseg-prepare.json"
"""Present while a preparation is unfinished; holds its fingerprint and the directories it writes."""

_MODES = {("uint8", 1): {"L"}, ("uint16", 1): {"I;16", "I;16B", "I"}, ("uint8", 3): {"RGB"}}
"""Pillow modes that a complete file of each (dtype, channels) opens with."""


def describe_file(path: str | os.PathLike[str], *, progress: bool = False) -> dict[str, Any]:
    """Source-file record for ``meta.json``: name, absolute path, size and MD5."""
    path = existing_file(Path(path).resolve())
    return {
        "file": path.name,
        "path": str(path),
        "bytes": path.stat().st_size,
        "md5": file_digest(path, "md5", progress=progress),
    }


def fingerprint(dataset: str, sources: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> str:
    """Identity of a preparation: equal fingerprints produce equal trees, so a re-run may resume or skip."""
    identity = [{k: v for k, v in source.items() if k != "path"} if "md5" in source else source for source in sources]
    record = {
        "dataset": dataset,
        "sources": identity,
        "options": options,
        "format": FORMAT_VERSION,
        "tool": __version__,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class SampleData:
    """The files of one sample for :func:`write_dataset`, keyed by directory: arrays to encode, files to copy."""

    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    copies: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepareSummary:
    """Outcome of a preparation or import."""

    root: Path
    dataset: str
    counts: Mapping[str, int]
    written: int
    resumed: int
    seconds: float
    already_complete: bool = False

    def __str__(self) -> str:
        counts = ", ".join(f"{split} {count}" for split, count in self.counts.items())
        if self.already_complete:
            return f"{self.root}: {self.dataset} was already complete ({counts}); nothing to do"
        resumed = f", {self.resumed} kept from an earlier run" if self.resumed else ""
        done = f"{self.written} samples written{resumed} in {self.seconds:.1f} s"
        return f"{self.root}: {self.dataset} ready ({counts}); {done}"


def _is_plain_name(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in {".", ".."}


class DatasetWriter:
    """Owns one output directory while a preparation writes into it."""

    def __init__(self, root: str | os.PathLike[str], meta: DatasetMeta, *, overwrite: bool) -> None:
        if not meta.fingerprint:
            raise ValueError("DatasetWriter needs a meta with a fingerprint")
        self.root = Path(root)
        self.meta = meta
        self.entries = meta.directories()
        self.complete = self._claim_directory(overwrite)

    def _claim_directory(self, overwrite: bool) -> bool:
        """Decide between skip, resume, restart and refusal; returns True when the dataset is already complete."""
        meta_path, state_path = self.root / META_FILE, self.root / STATE_FILE
        if meta_path.is_file():
            existing = read_json(meta_path)
            if existing.get("fingerprint") == self.meta.fingerprint and not overwrite:
                return True
            if not overwrite:
                raise DatasetError(
                    f"{self.root}: already holds a complete {existing.get('dataset')!r} dataset made from other "
                    "sources or options; pass overwrite=True (--overwrite) to replace it, or choose another directory"
                )
            self._clear(self._entries_of(existing))
        elif state_path.is_file():
            state = read_json(state_path)
            if state.get("fingerprint") != self.meta.fingerprint and not overwrite:
                raise DatasetError(
                    f"{self.root}: holds an unfinished preparation from other sources or options; pass "
                    "overwrite=True (--overwrite) to restart it, or choose another output directory"
                )
            if overwrite:
                self._clear(state.get("entries", []))
        elif self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(
                f"{self.root}: is not empty and is not an rgbxseg dataset; choose a new output directory"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(
            state_path, {"fingerprint": self.meta.fingerprint, "dataset": self.meta.dataset, "entries": self.entries}
        )
        self._remove_stale_temporaries()
        return False

    @staticmethod
    def _entries_of(meta_json: Mapping[str, Any]) -> list[str]:
        specs = [*meta_json.get("modalities", {}).values(), *meta_json.get("label_sets", {}).values()]
        return [str(spec.get("dir", "")) for spec in specs]

    def _clear(self, entries: Sequence[str]) -> None:
        """Delete what an earlier run of ours wrote (meta.json first, so the tree stops looking complete)."""
        (self.root / META_FILE).unlink(missing_ok=True)
        for entry in entries:
            if _is_plain_name(entry) and (self.root / entry).is_dir():
                shutil.rmtree(self.root / entry)
        for split in SPLITS:
            split_list_path(self.root, split).unlink(missing_ok=True)
        (self.root / SAMPLE_INFO_FILE).unlink(missing_ok=True)
        (self.root / STATE_FILE).unlink(missing_ok=True)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a run killed without clean-up (atomic writes delete theirs otherwise)."""
        for directory in [self.root, *(self.root / entry for entry in self.entries)]:
            for tmp in directory.glob(".*.tmp") if directory.is_dir() else ():
                tmp.unlink(missing_ok=True)

    def is_done(self, stem: str) -> bool:
        """All files of the sample exist, open, have the declared pixel format and share one size."""
        sizes = set()
        formats = {spec.dir: (spec.dtype, spec.channels) for spec in self.meta.modalities.values()}
        formats |= {spec.dir: (spec.dtype, 1) for spec in self.meta.label_sets.values()}
        for entry, path in self.meta.sample_files(self.root, stem).items():
            header = image_header(path)
            if header is None or header[1] not in _MODES[formats[entry]]:
                return False
            sizes.add(header[0])
        return len(sizes) == 1

    def write(self, stem: str, sample: SampleData) -> None:
        files = self.meta.sample_files(self.root, stem)
        missing = set(files) - set(sample.arrays) - set(sample.copies)
        if missing:
            raise ValueError(f"sample {stem!r} lacks {sorted(missing)}")
        for entry, array in sample.arrays.items():
            write_png(files[entry], array)
        for entry, source in sample.copies.items():
            copy_file(source, files[entry])

    def finish(
        self,
        splits: Mapping[str, Sequence[str]],
        *,
        sample_info: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> DatasetMeta:
        """Write the lists, validate the whole tree, then write ``meta.json`` and drop the state file."""
        for split, stems in splits.items():
            write_split_list(self.root, split, stems)
        if sample_info:
            write_json(self.root / SAMPLE_INFO_FILE, sample_info)
        report = validate_dataset(self.root, meta=self.meta, progress=progress)
        final = replace(
            self.meta,
            splits=dict(report.counts),
            image_size=report.image_size,
            statistics=report.statistics(),
            has_sample_info=bool(sample_info),
            created_by=dict(self.meta.created_by)
            | {
                "version": __version__,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )
        write_meta(self.root, final)
        (self.root / STATE_FILE).unlink(missing_ok=True)
        return final


def write_dataset(
    root: str | os.PathLike[str],
    meta: DatasetMeta,
    splits: Mapping[str, Sequence[str]],
    read: Callable[[str], SampleData],
    *,
    overwrite: bool = False,
    progress: bool = True,
    sample_info: Mapping[str, Any] | None = None,
) -> PrepareSummary:
    """Write every sample of ``splits`` with ``read(stem)``, resuming an interrupted run, and finish the tree.

    Samples are visited in sorted stem order (frame order for the zero-padded stems of NYUv2 and SUN RGB-D, which
    keeps reads from large source files sequential).
    """
    started = time.perf_counter()
    writer = DatasetWriter(root, meta, overwrite=overwrite)
    stems = sorted(stem for split in splits.values() for stem in split)
    if writer.complete:
        counts = {split: len(split_stems) for split, split_stems in splits.items()}
        return PrepareSummary(writer.root, meta.dataset, counts, 0, len(stems), time.perf_counter() - started, True)
    resumed = 0
    for stem in tqdm(stems, desc=f"writing {meta.dataset}", unit="sample", disable=not progress):
        if writer.is_done(stem):
            resumed += 1
            continue
        writer.write(stem, read(stem))
    final = writer.finish(splits, sample_info=sample_info, progress=progress)
    seconds = time.perf_counter() - started
    return PrepareSummary(writer.root, meta.dataset, final.splits, len(stems) - resumed, resumed, seconds)
