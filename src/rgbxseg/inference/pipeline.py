"""Batch prediction over frame sources with progress, writing label PNGs, overlays and panels; the camera loop."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import some_of
from ..io import OutputExistsError, lock_directory, remove_stale_temporaries
from ..runtime import BackendUnavailableError, require
from .frames import Frame
from .segmenter import Prediction, Segmenter
from .visualize import add_legend, label_image, overlay, prediction_panel, save_image

OUTPUT_KINDS = ("labels", "overlay", "panel")
"""``labels/NAME.png``: palette PNG of dataset labels; ``overlay/NAME.EXT``: colours over the RGB;
``panel/NAME.EXT``: RGB | second modality (depth as a colour map) | prediction. Overlays and panels end with a
legend of the classes present (:func:`~rgbxseg.inference.visualize.add_legend`)."""


@dataclass
class PredictSummary:
    """What a prediction run wrote."""

    out_dir: Path
    frames: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def write_outputs(
    frame: Frame,
    prediction: Prediction,
    segmenter: Segmenter,
    out_dir: Path,
    outputs: Sequence[str] = OUTPUT_KINDS,
    image_suffix: str = ".jpg",
    alpha: float = 0.5,
) -> list[Path]:
    """Write the requested outputs of one frame under ``out_dir/<kind>/<frame name>``."""
    labels, classes, palette = prediction.labels, segmenter.class_set, segmenter.class_set.palette_array()
    renderers = {
        "labels": lambda: (label_image(labels, palette), ".png"),
        "overlay": lambda: (add_legend(overlay(frame.rgb, labels, palette, alpha), labels, classes), image_suffix),
        "panel": lambda: (
            add_legend(
                prediction_panel(frame.rgb, segmenter.x_picture(frame.x, frame.source), labels, palette),
                labels,
                classes,
            ),
            image_suffix,
        ),
    }
    written = []
    for kind in outputs:
        image, suffix = renderers[kind]()
        written.append(save_image(image, out_dir / kind / f"{frame.name}{suffix}"))
    return written


@contextlib.contextmanager
def _claim_output_dir(out_dir: Path, kinds: Sequence[str], overwrite: bool) -> Iterator[None]:
    """Own ``out_dir`` while a run writes ``kinds`` there, so that no file of an earlier run is replaced by surprise.

    A lock makes a second run into the folder fail at once (two runs would leave a per-file mix); the temporary files
    of a run killed mid-write are removed; earlier outputs of these kinds are refused unless ``overwrite``.
    """
    with lock_directory(out_dir):
        for kind in OUTPUT_KINDS:
            remove_stale_temporaries(out_dir / kind)
        earlier = [f"{kind}/{path.name}" for kind in kinds if (out_dir / kind).is_dir()
                   for path in sorted((out_dir / kind).iterdir())]  # fmt: skip
        if earlier and not overwrite:
            raise OutputExistsError(
                f"{out_dir} already holds outputs ({some_of(earlier, 1)}); pass --overwrite "
                "(overwrite=True) to replace them, or choose another output folder"
            )
        yield


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    iterator = iter(frames)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def predict_frames(
    segmenter: Segmenter,
    frames: Iterable[Frame],
    out_dir: str | Path,
    *,
    batch_size: int = 4,
    outputs: Sequence[str] = OUTPUT_KINDS,
    image_suffix: str = ".jpg",
    alpha: float = 0.5,
    total: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PredictSummary:
    """Segment every frame (``batch_size`` at a time) and write its outputs; shows a progress bar.

    ``out_dir`` is locked for the run (a second run into it fails at once) and earlier outputs there are refused
    unless ``overwrite``.
    """
    unknown = sorted(set(outputs) - set(OUTPUT_KINDS))
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; choose from {', '.join(OUTPUT_KINDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    summary = PredictSummary(Path(out_dir))
    start = time.perf_counter()
    total = total if total is not None else (len(frames) if isinstance(frames, Sequence) else None)
    with (
        _claim_output_dir(summary.out_dir, outputs, overwrite),
        tqdm(total=total, unit="frame", desc="predict", disable=not progress) as bar,
    ):
        for batch in _batches(frames, batch_size):
            predictions = segmenter.predict_batch(
                [f.rgb for f in batch], [f.x for f in batch], sources=[f.source or f.name for f in batch]
            )
            for frame, prediction in zip(batch, predictions, strict=True):
                summary.files += write_outputs(
                    frame, prediction, segmenter, summary.out_dir, outputs, image_suffix, alpha
                )
            summary.frames += len(batch)
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - start
    return summary


def _gui_opencv() -> Any:
    """OpenCV with a window system; the ``camera`` extra installs the headless build, which cannot show frames."""
    cv2 = require("cv2", "camera", "the camera loop")
    try:
        cv2.namedWindow("rgbxseg")
    except cv2.error as err:
        raise BackendUnavailableError(
            "showing frames needs OpenCV with GUI support (pip install opencv-python, instead of the headless build "
            "that rgbxseg[camera] installs); or write the frames with --out"
        ) from err
    return cv2


def run_camera(
    segmenter: Segmenter,
    frames: Iterable[Frame],
    *,
    show: bool = True,
    out_dir: str | Path | None = None,
    image_suffix: str = ".jpg",
    progress: bool = True,
    overwrite: bool = False,
) -> PredictSummary:
    """Live loop: segment each camera frame, show the panel in a window (q or Esc quits) and/or write it (to an
    ``out_dir`` held as :func:`predict_frames` holds it)."""
    if not show and out_dir is None:
        raise ValueError("the camera loop needs somewhere to put frames: show them, or give an output folder")
    cv2 = _gui_opencv() if show else None
    summary = PredictSummary(Path(out_dir) if out_dir else Path())
    start = time.perf_counter()
    palette = segmenter.class_set.palette_array()
    claim = (
        _claim_output_dir(summary.out_dir, ("panel",), overwrite) if out_dir is not None else contextlib.nullcontext()
    )
    with claim, tqdm(unit="frame", desc="camera", disable=not progress) as bar:
        for frame in frames:
            prediction = segmenter.predict(frame.rgb, frame.x)
            panel = prediction_panel(frame.rgb, segmenter.x_picture(frame.x, frame.source), prediction.labels, palette)
            panel = add_legend(panel, prediction.labels, segmenter.class_set)
            if out_dir is not None:
                summary.files.append(save_image(panel, summary.out_dir / "panel" / f"{frame.name}{image_suffix}"))
            summary.frames += 1
            bar.update(1)
            if cv2 is not None:
                cv2.imshow("rgbxseg", np.ascontiguousarray(panel[:, :, ::-1]))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    if cv2 is not None:
        cv2.destroyAllWindows()
    summary.seconds = time.perf_counter() - start
    return summary
