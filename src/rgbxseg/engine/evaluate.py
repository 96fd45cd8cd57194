"""Evaluation: single-scale, multi-scale + flip and sliding-window inference, and dataset-level metrics.

Every protocol is described by an :class:`EvalProtocol`, which is written next to the numbers, so a result is never
ambiguous about how it was obtained.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..data.dataset import RGBXDataset, resolve_input_spec
from ..data.layout import read_meta
from ..inputs import InputSpec
from ..io import atomic_write_path, file_digest
from ..models import load_model
from ..models.aot import compile_after_runs, compile_for_inference, should_compile, stderr_log
from ..models.base import SegmentationModel
from ..models.layers import pad_to_multiple, resize_bilinear_mirrored
from ..models.quantize import Int8Calibration, int8_inference, is_int8_file, load_int8
from ..models.registry import get_input_spec
from ..runtime import resolve_device
from .metrics import ABSENT_CLASSES, ConfusionMatrix, SegmentationMetrics
from .plots import plot_confusion_matrix

Segmenter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model(rgb, x)`` → logits (B, K, H, W)."""

_SCORE_FUSIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logits": lambda logits: logits,
    "softmax": lambda logits: logits.softmax(dim=1),
}


@dataclass(frozen=True)
class EvalProtocol:
    """How predictions are made.

    Attributes:
        scales: input scales; each scaled input is padded to the model's multiple, and its scores are resized back
            to the input size and summed.
        flip: also run the horizontally flipped input and add its (un-flipped) scores.
        fusion: what is summed: ``"logits"`` (raw logits, the official AsymFormer multi-scale protocol) or
            ``"softmax"`` (probabilities).
        align_corners: for resizing scaled scores back (the official multi-scale script uses ``True``).
        window / stride: sliding-window inference with this window (H, W) and stride instead of the whole image.
        shorter_side: evaluate at another resolution (GeminiFusion: 480; KTB: its config's eval size, 480 for
            NYUv2, SUN RGB-D and MFNet, 720 for PST900, 1024 for DeLiVER): image and labels resized so that the
            shorter side has this length (each side rounded to the nearest integer), then resized again so that both
            sides are rounded up to a multiple of ``size_multiple`` (images bilinear, labels nearest); the metrics
            count the pixels of that resolution.
        resize_antialias: whether the bilinear ``shorter_side`` resizes of the images smooth when they shrink: True
            as torchvision ≥ 0.17 resizes tensors (GeminiFusion), False as torchvision < 0.17 did (KTB pins
            torchvision 0.11.1). Enlarging is the same either way.
        logit_upsampling: how the model's logits reach the input resolution: ``"bilinear"`` (the model's own
            ``forward``) or ``"bicubic"`` (from the decoder's resolution, as GeminiFusion's ``cv2.INTER_CUBIC``).
        size_floor: scaled sizes are floored to a multiple of this (DPLNet: 32) instead of rounded.
        size_ceil: scaled sizes are floored to an integer, then rounded up to a multiple of this (KTB: 32, so ×1.25 of
            480×640 runs at 608×800) instead of rounded; not with ``size_floor``.
        x_interpolation: how the X input is scaled: ``"nearest"`` (keeps depth edges) or ``"bilinear"`` (DPLNet).
        inputs_align_corners: align_corners of the bilinear input scaling (DPLNet: True).
        fuse_after_resize: take the softmax of the logits resized back to the input (DPLNet) instead of resizing
            the probabilities.
        void_predictions: for models with a void logit (DPLNet): ``"never"`` leaves that channel out of the model's
            scores (softmax fusion then normalises over the classes alone), so every labelled pixel is scored
            (rgbxseg's metric); ``"dropped"`` lets it compete and leaves out the pixels where it wins — the official
            DPLNet metric, which deletes the void row and column of its confusion matrix (slightly optimistic).
        frame_size: resize every frame (inputs and labels) to this (H, W) first and score it there (the official
            AsymFormer scripts: 480×640), with ``frame_resampling``: ``"cv2"`` (``eval.py``'s ``cv2.resize``, whose
            interpolation argument lands in ``dst``: bilinear for image, depth and labels, labels rounded) or
            ``"skimage"`` (``MS5_eval.py``: image bilinear with mirrored edges, depth and labels nearest pixel
            centre). Neither smooths before shrinking, as skimage would for frames larger than ``frame_size``.
        sizes: fixed (H, W) input sizes instead of ``scales`` (``MS5_eval.py``: 480×640, 576×768, 672×896).
        input_edges: edges of the bilinear input scaling: ``"clamp"`` (torch) or ``"mirror"`` (skimage's
            ``mode="reflect"``).
        absent_classes: ``"skip"`` leaves classes without a score out of the means (rgbxseg's metric), ``"zero"``
            counts them as 0 (the official AsymFormer metric, a mean over all classes).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    fusion: str = "logits"
    align_corners: bool = False
    window: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    shorter_side: int | None = None
    size_multiple: int = 32
    logit_upsampling: str = "bilinear"
    size_floor: int | None = None
    size_ceil: int | None = None
    x_interpolation: str = "nearest"
    inputs_align_corners: bool = False
    fuse_after_resize: bool = False
    void_predictions: str = "never"
    frame_size: tuple[int, int] | None = None
    frame_resampling: str = "cv2"
    sizes: tuple[tuple[int, int], ...] | None = None
    input_edges: str = "clamp"
    absent_classes: str = "skip"
    resize_antialias: bool = True

    def __post_init__(self) -> None:
        if self.fusion not in _SCORE_FUSIONS:
            raise ValueError(f"unknown score fusion {self.fusion!r}; choose from {', '.join(_SCORE_FUSIONS)}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive, got {self.scales}")
        if self.stride is not None and self.window is None:
            raise ValueError("a sliding-window stride needs a window size")
        if self.logit_upsampling not in LOGIT_UPSAMPLING:
            raise ValueError(f"logit_upsampling must be one of {LOGIT_UPSAMPLING}, got {self.logit_upsampling!r}")
        if (self.shorter_side is not None and self.shorter_side < 1) or self.size_multiple < 1:
            raise ValueError("shorter_side and size_multiple must be positive")
        for name, multiple in (("size_floor", self.size_floor), ("size_ceil", self.size_ceil)):
            if multiple is not None and multiple < 1:
                raise ValueError(f"{name} must be positive, got {multiple}")
        if self.size_floor is not None and self.size_ceil is not None:
            raise ValueError("size_floor and size_ceil both round the scaled sizes; give one")
        for name, value, choices in (
            ("x_interpolation", self.x_interpolation, X_INTERPOLATION),
            ("void_predictions", self.void_predictions, VOID_PREDICTIONS),
            ("frame_resampling", self.frame_resampling, FRAME_RESAMPLING),
            ("input_edges", self.input_edges, INPUT_EDGES),
            ("absent_classes", self.absent_classes, ABSENT_CLASSES),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if self.frame_size is not None and self.shorter_side is not None:
            raise ValueError("frame_size and shorter_side both set the evaluation size; give one")

    def input_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (H, W) of each run of a frame of ``height`` × ``width``: the fixed ``sizes``, or one per scale."""
        if self.sizes is not None:
            return [tuple(size) for size in self.sizes]  # type: ignore[misc]
        return [self.scaled_size(height, width, scale) for scale in self.scales]

    def scale_inputs(
        self, rgb: torch.Tensor, x: torch.Tensor, size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rgb`` and ``x`` at ``size`` with this protocol's interpolation and edges."""
        if tuple(rgb.shape[-2:]) == tuple(size):
            return rgb, x

        def bilinear(t: torch.Tensor) -> torch.Tensor:
            if self.input_edges == "mirror":
                return resize_bilinear_mirrored(t, size)
            return F.interpolate(t, size=size, mode="bilinear", align_corners=self.inputs_align_corners)

        x = bilinear(x) if self.x_interpolation == "bilinear" else F.interpolate(x, size, mode=self.x_interpolation)
        return bilinear(rgb), x

    def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        """The (H, W) of an input scaled by ``scale``: rounded, floored to a multiple of ``size_floor``, or floored
        to an integer and then rounded up to a multiple of ``size_ceil``."""
        if self.size_ceil is not None:
            m = self.size_ceil
            return max(-(-int(height * scale) // m) * m, m), max(-(-int(width * scale) // m) * m, m)
        if self.size_floor is None:
            return max(round(height * scale), 1), max(round(width * scale), 1)
        m = self.size_floor
        return max(int(height * scale // m) * m, m), max(int(width * scale // m) * m, m)

    def evaluation_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) at which a frame of ``height`` × ``width`` is evaluated."""
        if self.frame_size is not None:
            return tuple(self.frame_size)  # type: ignore[return-value]
        if self.shorter_side is None:
            return height, width
        scale = self.shorter_side / min(height, width)
        resized = round(height * scale), round(width * scale)
        return tuple(-(-side // self.size_multiple) * self.size_multiple for side in resized)  # type: ignore[return-value]

    def resize_inputs(
        self, rgb: torch.Tensor, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs and labels (void 0) at :meth:`evaluation_size`: ``frame_size`` resampled as declared, or the
        official two steps of ``shorter_side`` (shorter side, then the multiple)."""
        if self.frame_size is not None:
            return self._resize_frame(rgb, x, labels)
        if self.shorter_side is None:
            return rgb, x, labels
        height, width = rgb.shape[-2:]
        scale = self.shorter_side / min(height, width)
        for size in ((round(height * scale), round(width * scale)), self.evaluation_size(height, width)):
            if tuple(rgb.shape[-2:]) != size:
                rgb, x = (F.interpolate(t, size=size, mode="bilinear", align_corners=False,
                                        antialias=self.resize_antialias) for t in (rgb, x))  # fmt: skip
                labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return rgb, x, labels

    def _resize_frame(
        self, rgb: torch.Tensor, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = tuple(self.frame_size)  # type: ignore[arg-type]
        if tuple(rgb.shape[-2:]) == size:
            return rgb, x, labels
        stored = labels[:, None].to(torch.float64)
        if self.frame_resampling == "cv2":
            rgb, x, stored = (F.interpolate(t, size, mode="bilinear", align_corners=False) for t in (rgb, x, stored))
            stored = stored.round()  # cv2 rounds to the nearest integer (ties to even)
        else:
            rgb = resize_bilinear_mirrored(rgb, size)
            x, stored = (F.interpolate(t, size=size, mode="nearest-exact") for t in (x, stored))
        return rgb, x, stored[:, 0].long()

    def describe(self) -> dict:
        return asdict(self)


LOGIT_UPSAMPLING = ("bilinear", "bicubic")
X_INTERPOLATION = ("nearest", "nearest-exact", "bilinear")
FRAME_RESAMPLING = ("cv2", "skimage")
INPUT_EDGES = ("clamp", "mirror")
VOID_PREDICTIONS = ("never", "dropped")

SINGLE_SCALE = EvalProtocol()
OFFICIAL_MULTI_SCALE = EvalProtocol(scales=(1.0, 1.2, 1.4), align_corners=True)
"""Our form of AsymFormer's multi-scale protocol: ×1.0, 1.2, 1.4 at each frame's own resolution with torch resizing,
raw logits summed, no flip; :data:`ASYMFORMER_OFFICIAL_MS` is ``MS5_eval.py`` exactly (behind the 55.3 mIoU)."""
GEMINIFUSION_PROTOCOL = EvalProtocol(shorter_side=480, logit_upsampling="bicubic")
"""GeminiFusion's evaluation: single scale, shorter side 480 rounded up to a multiple of 32 (labels too), bicubic
logit upsampling; score its ``ens`` output (the model's prediction)."""
DPLNET_MULTI_SCALE = EvalProtocol(
    scales=(0.5, 0.75, 1.0, 1.25, 1.5),
    flip=True,
    fusion="softmax",
    align_corners=True,
    size_floor=32,
    x_interpolation="bilinear",
    inputs_align_corners=True,
    fuse_after_resize=True,
)
"""DPLNet's ``msc_evaluate`` (59.3 mIoU): ×0.5…1.5 with sizes floored to 32, RGB and depth bilinear
(align_corners=True), plus flips; the softmax of each run's logits resized back, summed. Its single-scale 58.3 is
the default protocol (NYUv2 test images are 480×640 already)."""
ASYMFORMER_OFFICIAL = EvalProtocol(frame_size=(480, 640), frame_resampling="cv2", absent_classes="zero")
"""The 2023 ``eval.py`` (54.1 mIoU with :data:`~rgbxseg.models.ASYMFORMER_NYUV2_EVAL`): every frame at 480×640
(``cv2.resize``: bilinear for image, depth and labels), single scale, a mean IoU over all 40 classes."""
ASYMFORMER_OFFICIAL_MS = EvalProtocol(
    sizes=((480, 640), (576, 768), (672, 896)),
    align_corners=True,
    frame_size=(480, 640),
    frame_resampling="skimage",
    input_edges="mirror",
    x_interpolation="nearest-exact",
    absent_classes="zero",
)
"""The 2023 ``MS5_eval.py`` (55.3 mIoU with :data:`~rgbxseg.models.ASYMFORMER_RELEASE`): every frame at 480×640, then
fixed 576×768 and 672×896 inputs resized from it with ``skimage.transform.resize`` (image bilinear with mirrored
edges, depth nearest pixel centre), the raw logits of the larger two resized back bilinearly with
``align_corners=True`` and summed with the 480×640 ones; a mean IoU over all 40 classes."""
KTB_PROTOCOL = EvalProtocol(shorter_side=480, fusion="softmax", resize_antialias=False, absent_classes="zero")
"""KTB's ``val_mm.py`` ``evaluate`` (Keep the Balance, CVPR 2025), single scale: every frame resized so that its shorter
side is the config's eval size (480 here; ``--shorter-side 720`` for PST900, 1024 for DeLiVER; each side rounded to
the nearest integer), then again so that both sides are rounded up to a multiple of 32 (images and X bilinear without
antialiasing, as the pinned torchvision 0.11 resizes tensors; labels nearest): 427×561 → 480×631 → 480×640, 720×1280
→ 736×1280, 480×640 unchanged. The metrics count that resolution's pixels. One run, softmax, arg-max; the mean IoU is
over all classes, a class that never occurs counting as 0. Not reproduced: the official code resizes 8-bit images
and rounds them back to 8 bits after each resize (at most half a grey level)."""
KTB_MULTI_SCALE = replace(
    KTB_PROTOCOL,
    scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
    flip=True,
    align_corners=True,
    size_ceil=32,
    x_interpolation="bilinear",
    inputs_align_corners=True,
    fuse_after_resize=True,
)
"""KTB's ``evaluate_msf`` (the configs' ``MSF``): the frames of :data:`KTB_PROTOCOL` (H × W), inputs (RGB and X
alike) resized to ⌈⌊s·H⌋/32⌉·32 × ⌈⌊s·W⌋/32⌉·32 for s = 0.5, 0.75, 1, 1.25, 1.5, 1.75 (bilinear, align_corners=True;
for 480×640: 256×320, 384×480, 480×640, 608×800, 736×960, 864×1120), each run's logits and those of its flipped input
(flipped back) resized to H × W (bilinear, align_corners=True), softmax, all 12 summed."""
EVAL_PROTOCOLS = {
    "default": SINGLE_SCALE,
    "asymformer-ms": OFFICIAL_MULTI_SCALE,
    "asymformer-official": ASYMFORMER_OFFICIAL,
    "asymformer-official-ms": ASYMFORMER_OFFICIAL_MS,
    "geminifusion": GEMINIFUSION_PROTOCOL,
    "dplnet-ms": DPLNET_MULTI_SCALE,
    "ktb": KTB_PROTOCOL,
    "ktb-ms": KTB_MULTI_SCALE,
}
MULTI_SCALE_OF = {"default": "asymformer-ms", "asymformer-official": "asymformer-official-ms", "ktb": "ktb-ms"}
"""The multi-scale protocol that ``rgbxseg eval --multi-scale`` gives with each ``--protocol``."""


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    last = max(size - window, 0)
    return sorted({*range(0, last, stride), last})


def _whole_image(model: Segmenter, rgb: torch.Tensor, x: torch.Tensor, multiple: int, min_size: int) -> torch.Tensor:
    h, w = rgb.shape[-2:]
    padded = (pad_to_multiple(t, multiple, min_size=min_size) for t in (rgb, x))
    return model(*padded)[..., :h, :w]


def _sliding_windows(
    model: Segmenter,
    rgb: torch.Tensor,
    x: torch.Tensor,
    multiple: int,
    min_size: int,
    window: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    h, w = rgb.shape[-2:]
    scores: torch.Tensor | None = None
    counts = torch.zeros(1, 1, h, w, device=rgb.device)
    for top, left in itertools.product(
        _window_starts(h, window[0], stride[0]), _window_starts(w, window[1], stride[1])
    ):
        region = (..., slice(top, top + window[0]), slice(left, left + window[1]))
        out = _whole_image(model, rgb[region], x[region], multiple, min_size)
        if scores is None:
            scores = torch.zeros(rgb.shape[0], out.shape[1], h, w, device=rgb.device, dtype=out.dtype)
        scores[region] += out
        counts[region] += 1
    return scores / counts


def predict_scores(
    model: Segmenter,
    rgb: torch.Tensor,
    x: torch.Tensor,
    protocol: EvalProtocol = SINGLE_SCALE,
    multiple: int = 32,
    min_size: int = 1,
) -> torch.Tensor:
    """Fused class scores (B, K, H, W) at the input resolution, following ``protocol``; inputs are padded to the
    model's size rule (``multiple``, ``min_size``) and the scores cropped back."""
    h, w = rgb.shape[-2:]
    fuse = _SCORE_FUSIONS[protocol.fusion]

    def run_raw(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        if protocol.window is None:
            return _whole_image(model, r, d, multiple, min_size)
        stride = protocol.stride or protocol.window
        return _sliding_windows(model, r, d, multiple, min_size, protocol.window, stride)

    def run(r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return fuse(run_raw(r, d))

    def back(scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[-2:] == (h, w):
            return scores
        return F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=protocol.align_corners)

    total = None
    for size in protocol.input_sizes(h, w):
        r, d = protocol.scale_inputs(rgb, x, size)
        if protocol.fuse_after_resize:
            scores = fuse(back(run_raw(r, d)))
            if protocol.flip:
                scores = scores + fuse(back(run_raw(r.flip(-1), d.flip(-1)).flip(-1)))
        else:
            scores = run(r, d)
            if protocol.flip:
                scores = scores + run(r.flip(-1), d.flip(-1)).flip(-1)
            scores = back(scores)
        total = scores if total is None else total + scores
    return total


_VOID_LOGIT_NOTES = {
    "never": "; the model's void logit never predicts (every labelled pixel is scored)",
    "dropped": "; the model's void logit competes and the pixels it wins are left out (the official DPLNet metric)",
}


def _without_void(runner: Segmenter, model: SegmentationModel) -> Segmenter:
    """``runner`` with the void channel of ``model``'s logits left out (the classes' logits only)."""

    def classes_only(rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return model.class_logits(runner(rgb, x))

    return classes_only


def _name_of(model: torch.nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)


def _rank_shard(dataset: Dataset) -> Dataset:
    """This rank's share of an evaluation set (no padding duplicates, unlike ``DistributedSampler``)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dataset
    return Subset(dataset, range(dist.get_rank(), len(dataset), dist.get_world_size()))


def dataset_modalities(x_modality: str) -> tuple[str, ...]:
    """The modalities a dataset must load for ``x_modality`` (none for ``"none"``: :func:`model_inputs` zeros it)."""
    return () if x_modality == "none" else (x_modality,)


def model_inputs(
    batch: dict, x_modality: str, device: torch.device, x_channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rgb, x) of a batch; ``x_modality="none"`` gives zeros (an RGB-only run of an RGB-X network)."""
    rgb = batch["rgb"].to(device, non_blocking=True)
    if x_modality == "none":
        return rgb, rgb.new_zeros(rgb.shape[0], x_channels, *rgb.shape[2:])
    if x_modality not in batch:
        raise KeyError(
            f"the dataset has no modality {x_modality!r}; it provides {sorted(k for k in batch if k != 'id')}"
        )
    return rgb, batch[x_modality].to(device, non_blocking=True)


def iterate_batches(dataset: Dataset, batch_size: int, workers: int, progress: bool, desc: str) -> Iterator[dict]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    yield from tqdm(loader, desc=desc, disable=not progress, leave=False)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    protocol: EvalProtocol = SINGLE_SCALE,
    x_modality: str | None = None,
    output: str | None = None,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    corrupt: Callable[[torch.Tensor, torch.Tensor, Sequence[str]], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> SegmentationMetrics:
    """Metrics of ``model`` over ``dataset`` (samples: ``rgb``, ``label`` and the X modality).

    ``x_modality``: the sample key fed as the second input (default: the model's input spec's; ``"none"``: zeros).
    ``output`` scores another named output of a :class:`SegmentationModel` than its prediction (e.g. one modality's
    head). ``corrupt(rgb, x, sample ids)`` changes the normalised inputs of each batch at the evaluated resolution
    (:mod:`rgbxseg.engine.robustness`). Under ``torch.distributed`` each rank evaluates its shard and the confusion
    matrices are summed.
    """
    x_modality = x_modality or model.input_spec.x.name
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    runner: Segmenter = model
    if output is not None or protocol.logit_upsampling != "bilinear":
        if not isinstance(model, SegmentationModel):
            raise TypeError(f"named outputs and bicubic logits need a SegmentationModel, got {type(model).__name__}")
        runner = functools.partial(model.output_logits, output=output, mode=protocol.logit_upsampling)
    void_logit = getattr(model, "void_logit", False)
    void_competes = protocol.void_predictions == "dropped"
    if void_competes and not void_logit:
        raise ValueError(f"void_predictions='dropped' needs a model with a void logit; {_name_of(model)} has none")
    if void_logit and not void_competes:
        runner = _without_void(runner, model)
    confusion = ConfusionMatrix(num_classes, device)
    started = time.perf_counter()
    for batch in iterate_batches(_rank_shard(dataset), batch_size, workers, progress, "evaluating"):
        rgb, x = model_inputs(batch, x_modality, device, model.x_channels)
        rgb, x, labels = protocol.resize_inputs(rgb, x, batch["label"].to(device))
        if corrupt is not None:
            rgb, x = corrupt(rgb, x, batch["id"])
        scores = predict_scores(runner, rgb, x, protocol, model.input_multiple, model.input_spec.min_size)
        confusion.update(scores.argmax(1) - int(void_competes), labels, void_competes)  # a void win: −1, left out
    confusion.all_reduce()
    model.train(was_training)
    metrics = confusion.compute(class_names, protocol.absent_classes)
    if progress:
        tqdm.write(f"evaluated {len(dataset)} samples in {time.perf_counter() - started:.1f} s")
    return metrics


@dataclass
class EvalReport:
    """Metrics with everything needed to reproduce them."""

    metrics: SegmentationMetrics
    protocol: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """What ``rgbxseg eval --json`` writes; its scores are fractions in [0, 1] (``metrics.units`` says so)."""
        return {"protocol": self.protocol, "metrics": self.metrics.to_dict(), "seconds": self.seconds}


@dataclass
class EvaluationSetup:
    """A weights file ready to evaluate on a dataset split: what :func:`evaluate_weights` and the robustness
    evaluation (:func:`rgbxseg.engine.robustness.robustness_weights`) share."""

    model: SegmentationModel
    dataset: RGBXDataset
    spec: InputSpec
    x_modality: str
    scored: str
    weights: str
    data_root: str
    split: str
    int8: Int8Calibration | None = None
    """The calibration of an int8 file (``rgbxseg quantize``): the prediction runs in its int8 form."""

    @property
    def output(self) -> str | None:
        """The ``output`` argument of :func:`evaluate`: None for the model's prediction."""
        return None if self.scored == self.model.prediction_output else self.scored

    def describe(self, protocol: EvalProtocol) -> dict[str, Any]:
        """How the numbers were obtained: the protocol, the input spec, the weights and their SHA-256, the data."""
        model, dataset = self.model, self.dataset
        return {
            **protocol.describe(),
            "resolution": (
                f"every frame resized to {protocol.frame_size[0]}×{protocol.frame_size[1]} ({protocol.frame_resampling}"
                " resampling, labels too), then"
                if protocol.frame_size
                else f"shorter side {protocol.shorter_side}, both sides up to a multiple of {protocol.size_multiple} "
                f"(images bilinear{'' if protocol.resize_antialias else ' without antialiasing'}, labels nearest), then"
                if protocol.shorter_side
                else "native,"
            )
            + f" padded to the model's size rule (multiple of {model.input_multiple}) and cropped back",
            "scored_output": self.scored,
            "prediction_output": model.prediction_output,
            "void_logit": model.void_logit,
            "void": "label 0 ignored; "
            + (
                "classes without a score count as 0 in the means over all classes"
                if protocol.absent_classes == "zero"
                else "classes absent from prediction and ground truth excluded from the means"
            )
            + (_VOID_LOGIT_NOTES[protocol.void_predictions] if model.void_logit else ""),
            "input_spec": self.spec.to_dict(),
            "x_modality": self.x_modality,
            "weights": self.weights,
            "weights_sha256": file_digest(self.weights),
            "model": model.model_name,
            "dataset": {
                "root": self.data_root,
                "name": dataset.dataset_meta.dataset,
                "split": self.split,
                "samples": len(dataset),
                "label_set": dataset.label_set,
            },
        }


def prepare_evaluation(
    weights: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    *,
    split: str = "test",
    model_name: str | None = None,
    output: str | None = None,
    x_modality: str | None = None,
    label_set: str | None = None,
    input_spec: str | None = None,
    channel_order: str | None = None,
    device: str = "auto",
) -> EvaluationSetup:
    """Load the model of ``weights`` and the dataset split it is evaluated on, checked against each other.

    The model and its inputs come from the weights' metadata; official checkpoints carry none, so they need
    ``model_name`` (and optionally ``input_spec``, a registered convention such as ``asymformer_nyuv2_eval``).
    ``output`` scores another named output than the model's prediction; ``x_modality`` feeds another dataset modality
    of the same encoding (e.g. ``depth_raw``), or zeros (``"none"``; the default for weights trained that way).
    ``channel_order`` (``"rgb"`` or ``"bgr"``) overrides the order in which the spec feeds the colour channels, to
    find out which order a file without metadata was trained on.
    """
    int8 = None
    if is_int8_file(weights):
        model, int8, _ = load_int8(weights)
    else:
        model = load_model(weights, model_name)
    model = model.to(resolve_device(device))
    if input_spec is not None:
        model.use_input_spec(get_input_spec(input_spec))
    if channel_order is not None:
        spec = model.input_spec
        model.use_input_spec(replace(spec, rgb=replace(spec.rgb, channel_order=channel_order)))
    scored = output or model.prediction_output
    if scored not in model.outputs:
        raise ValueError(f"{model.model_name} has no output {scored!r}; its outputs: {', '.join(model.outputs)}")
    spec = model.input_spec
    trained_on = model.weights_metadata.extra.get("x_modality") if model.weights_metadata else None
    x_modality = x_modality or ("none" if trained_on == "none" else spec.x.name)
    if x_modality not in (spec.x.name, "none"):  # another modality of the same encoding, e.g. raw depth
        meta, _ = read_meta(data_root)
        if meta.modality(x_modality).encoding != spec.x.encoding:
            raise ValueError(
                f"{weights} reads {spec.x.name!r} ({spec.x.encoding}) as its second input; {data_root} stores "
                f"{x_modality!r} as {meta.modality(x_modality).encoding}. Evaluate with a modality of the same "
                "encoding (or 'none' for zeros)"
            )
        spec = resolve_input_spec(spec, meta, x_modality)
    dataset = RGBXDataset(data_root, split, dataset_modalities(x_modality), label_set, input_spec=spec)
    if dataset.num_classes != model.num_label_classes:
        raise ValueError(
            f"{weights} predicts {model.num_label_classes} classes but {data_root} ({dataset.label_set} label set) has "
            f"{dataset.num_classes}; evaluate on the matching label set (--label-set)"
        )
    return EvaluationSetup(model, dataset, spec, x_modality, scored, str(weights), str(data_root), split, int8)


def _compiled_runner(
    setup: EvaluationSetup, protocol: EvalProtocol, mode: str, cache_dir: str | os.PathLike[str] | None
) -> torch.nn.Module:
    """The model, or its compiled inference form where ``mode`` asks for it and the protocol can use it; an int8
    file's int8 form whatever ``mode`` says."""
    model = setup.model
    device = str(next(model.parameters()).device)
    if setup.int8 is not None:
        if setup.output is not None or protocol.logit_upsampling != "bilinear" or device != "cpu":
            raise ValueError(f"{setup.weights} is an int8 model: it runs on the CPU (--device cpu) with its prediction "
                             "output and bilinear logits; drop --output and --logit-upsampling")  # fmt: skip
        return int8_inference(model, setup.int8, cache_dir=cache_dir, log=stderr_log("rgbxseg eval"))
    compile_now, why = should_compile(mode, frames=len(setup.dataset), stream=False, device=device)
    usable = setup.output is None and protocol.logit_upsampling == "bilinear"
    if compile_now and not usable and mode == "on":
        raise ValueError("--compile runs the prediction output with bilinear logits; drop --output and "
                         "--logit-upsampling, or --compile")  # fmt: skip
    if not (compile_now and usable):
        return model
    log = stderr_log("rgbxseg eval")
    log(f"compiling ({why})")
    return compile_for_inference(model, cache_dir=cache_dir, compile_after=compile_after_runs(mode), log=log)


def evaluate_weights(
    weights: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    *,
    protocol: EvalProtocol = SINGLE_SCALE,
    batch_size: int = 1,
    workers: int = 0,
    json_path: str | os.PathLike[str] | None = None,
    confusion_png: str | os.PathLike[str] | None = None,
    progress: bool = True,
    compile: str = "off",
    compile_cache: str | os.PathLike[str] | None = None,
    **load: Any,
) -> EvalReport:
    """Evaluate a weights file on a canonical dataset split and describe exactly how (``rgbxseg eval``).

    ``load``: the keyword arguments of :func:`prepare_evaluation` (split, model name, output, X modality, label set,
    input spec, channel order, device). Inference runs at each image's own resolution (or the protocol's), padded to
    the model's multiple and cropped back. ``compile`` (``auto``, ``on``, ``off``; see
    :func:`rgbxseg.models.aot.should_compile`) runs the prediction through the compiled inference form, its packages
    cached in ``compile_cache``; a size is compiled the second time it runs (``on``: the first).
    """
    setup = prepare_evaluation(weights, data_root, **load)
    model, dataset = setup.model, setup.dataset
    runner = _compiled_runner(setup, protocol, compile, compile_cache)
    started = time.perf_counter()
    metrics = evaluate(
        runner, dataset, num_classes=dataset.num_classes, class_names=dataset.class_set.names, protocol=protocol,
        x_modality=setup.x_modality, output=setup.output, batch_size=batch_size, workers=workers, progress=progress,
    )  # fmt: skip
    report = EvalReport(metrics=metrics, protocol=setup.describe(protocol), seconds=time.perf_counter() - started)
    report.protocol["compiled"] = runner is not model
    report.protocol["int8"] = setup.int8 is not None
    if json_path is not None:
        with atomic_write_path(json_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2))
    if confusion_png is not None:
        plot_confusion_matrix(metrics.confusion, dataset.class_set.names, Path(confusion_png))
    return report
