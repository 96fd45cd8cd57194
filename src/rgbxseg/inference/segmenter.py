"""``Segmenter``: raw RGB-D frames in, dataset labels out (normalisation, depth units, valid sizes, devices)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import ClassSet
from ..models.base import SegmentationModel
from ..models.factory import create_model, load_model
from ..models.layers import nearest_multiples, pad_to_multiple, resize
from ..models.optimize import optimize_for_inference
from ..normalization import Normalization
from ..runtime import autocast, resolve_device, resolve_dtype, retain_freed_memory
from ..weights import PathLike, WeightsMetadata, default_metadata
from .depth import DEPTH_UNITS, DepthUnit, depth_to_mm, resolve_depth_unit

SizePolicy = Literal["pad", "resize"]
ModelRunner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PrepareModel = Callable[[SegmentationModel], ModelRunner]
"""An inference-optimisation step applied once to the eval model on its device (e.g. ``torch.compile``)."""


@dataclass(frozen=True)
class Prediction:
    """The segmentation of one frame at its own resolution."""

    labels: np.ndarray
    """(H, W) dataset label ids 1..K (argmax + 1); 0 (void) is never predicted."""
    logits: np.ndarray | None = None
    """(K, H, W) float32 logits, when requested; logit c belongs to label c + 1."""

    def probabilities(self) -> np.ndarray:
        """(K, H, W) softmax over classes; needs ``return_logits=True``."""
        if self.logits is None:
            raise ValueError("this prediction has no logits; call predict(..., return_logits=True)")
        shifted = np.exp(self.logits - self.logits.max(axis=0, keepdims=True))
        return shifted / shifted.sum(axis=0, keepdims=True)


class Segmenter:
    """Runs a segmentation model on numpy RGB-D frames.

    Args:
        model: a :class:`SegmentationModel` or a registered model name (built with ``weights``).
        weights: checkpoint for a model given by name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA), via autocast.
        depth_unit: what the depth maps you pass hold: ``"mm"``, ``"m"``, ``"sun-shifted"`` (raw SUN RGB-D PNGs) or a
            number of millimetres per step; converted to the unit the weights were trained with.
        size_policy: how frames whose H or W are not multiples of ``model.input_multiple`` are handled.
            ``"pad"`` (default) pads bottom/right with the normalised mean (0) and crops the logits back: every pixel
            is seen at its native scale. ``"resize"`` resizes to ``input_size`` (default: the nearest valid size;
            RGB bilinear, depth nearest so invalid pixels never blend) and resizes the logits back bilinearly —
            use it with ``input_size`` to run large camera frames at the training resolution.
        normalization: overrides the weights' declared input normalisation.
        optimize: run the inference form of the model (:func:`rgbxseg.models.optimize.optimize_for_inference`:
            folded normalisations, the reordered decoder, channels-last; with ``dtype`` bf16/fp16 the model's
            half-precision-tolerant parts run in that precision instead of autocasting everything), and let the
            process reuse freed memory between frames (:func:`rgbxseg.runtime.retain_freed_memory`, process-wide).
        prepare_model: a further step applied once to the (optimised) eval model, e.g. ``torch.compile``.
    """

    def __init__(
        self,
        model: SegmentationModel | str,
        weights: PathLike | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        depth_unit: str | float | DepthUnit = "mm",
        size_policy: SizePolicy = "pad",
        input_size: tuple[int, int] | None = None,
        normalization: Normalization | None = None,
        optimize: bool = False,
        prepare_model: PrepareModel | None = None,
    ) -> None:
        if isinstance(model, str):
            model = create_model(model, weights=weights)
        elif weights is not None:
            raise ValueError("weights are only taken with a model name; load them into your model instance instead")
        if size_policy not in ("pad", "resize"):
            raise ValueError(f"size_policy must be 'pad' or 'resize', got {size_policy!r}")
        if input_size is not None:
            if size_policy != "resize":
                raise ValueError("input_size needs size_policy='resize'")
            if any(side <= 0 or side % model.input_multiple for side in input_size):
                raise ValueError(
                    f"input_size {input_size} must be positive multiples of {model.input_multiple} for "
                    f"{model.model_name}"
                )
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.eval().to(self.device)
        self.metadata: WeightsMetadata = model.weights_metadata or default_metadata(model)
        self.normalization = normalization or self.metadata.normalization
        model_unit = DEPTH_UNITS.get(self.normalization.depth_unit)
        if model_unit is None or model_unit.decode is not None:
            raise ValueError(
                f"the normalisation {self.normalization.name!r} expects depth in {self.normalization.depth_unit!r}, "
                f"which is not a linear unit of {', '.join(DEPTH_UNITS)}"
            )
        self.model_mm_per_unit = model_unit.mm_per_unit
        self.depth_unit: DepthUnit = resolve_depth_unit(depth_unit)
        self.size_policy = size_policy
        self.input_size = input_size
        self.run_model: ModelRunner = self.model
        self.autocast_dtype = self.dtype
        if optimize:
            self.run_model, self.autocast_dtype = optimize_for_inference(self.model, dtype=self.dtype), torch.float32
            if self.device.type == "cpu":
                retain_freed_memory()
        if prepare_model is not None:
            self.run_model = prepare_model(self.run_model)

    @classmethod
    def from_weights(cls, weights: PathLike, model_name: str | None = None, **kwargs: object) -> Segmenter:
        """A segmenter for a weights file; ``model_name`` is needed only for files without rgbxseg metadata."""
        return cls(load_model(weights, model_name), **kwargs)  # type: ignore[arg-type]

    @property
    def class_set(self) -> ClassSet:
        """Class names and palette (void first) of the weights."""
        return self.metadata.class_set

    def depth_in_mm(self, depth: np.ndarray, source: str = "depth") -> np.ndarray:
        """A depth map in this segmenter's ``depth_unit``, checked and converted to float32 millimetres."""
        return depth_to_mm(depth, self.depth_unit, source)

    def _network_size(self, height: int, width: int) -> tuple[int, int]:
        if self.input_size is not None:
            return self.input_size
        multiple = self.model.input_multiple
        return tuple(min(nearest_multiples(side, multiple), key=lambda v: abs(v - side)) for side in (height, width))

    def _inputs(self, rgbs: Sequence[np.ndarray], depths: Sequence[np.ndarray], sources: Sequence[str]) -> tuple:
        """Check, convert and normalise same-size frames into a batch on the device."""
        rgb_batch, depth_batch = [], []
        for rgb_frame, depth, source in zip(rgbs, depths, sources, strict=True):
            rgb = np.asarray(rgb_frame)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"{source}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
            depth_mm = self.depth_in_mm(depth, source)
            if depth_mm.shape != rgb.shape[:2]:
                raise ValueError(
                    f"{source}: depth {depth_mm.shape[1]}×{depth_mm.shape[0]} and RGB {rgb.shape[1]}×{rgb.shape[0]} "
                    "differ in size; register the depth to the colour camera (or resize it with nearest "
                    "interpolation) so that pixels correspond"
                )
            rgb_batch.append(torch.tensor(rgb).permute(2, 0, 1))  # a copy: Pillow arrays are read-only
            depth_batch.append(torch.from_numpy(depth_mm / np.float32(self.model_mm_per_unit))[None])
        rgb_tensor = self.normalization.normalize_rgb(torch.stack(rgb_batch).to(self.device))
        depth_tensor = self.normalization.normalize_depth(torch.stack(depth_batch).to(self.device))
        return rgb_tensor, depth_tensor

    @torch.inference_mode()
    def _logits(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """Network logits at the input's own H×W, whatever the model's size rule."""
        height, width = rgb.shape[-2:]
        if self.size_policy == "pad":
            rgb = pad_to_multiple(rgb, self.model.input_multiple)
            depth = pad_to_multiple(depth, self.model.input_multiple)
        else:
            size = self._network_size(height, width)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True)
            depth = F.interpolate(depth, size=size, mode="nearest-exact")
        with autocast(self.device, self.autocast_dtype):
            logits = self.run_model(rgb, depth)
        logits = logits.float()
        if self.size_policy == "pad":
            return logits[..., :height, :width]
        return resize(logits, (height, width))

    def predict(self, rgb: np.ndarray, depth: np.ndarray, *, return_logits: bool = False) -> Prediction:
        """Segment one frame: ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) in ``depth_unit``."""
        return self.predict_batch([rgb], [depth], return_logits=return_logits)[0]

    def predict_batch(
        self,
        rgbs: Sequence[np.ndarray],
        depths: Sequence[np.ndarray],
        *,
        return_logits: bool = False,
        sources: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Segment several frames; frames of equal size run as one batch. ``sources`` name them in errors."""
        if len(rgbs) != len(depths):
            raise ValueError(f"{len(rgbs)} RGB images but {len(depths)} depth maps")
        sources = sources or [f"frame {i}" for i in range(len(rgbs))]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, rgb in enumerate(rgbs):
            by_size.setdefault(np.shape(rgb), []).append(index)
        predictions: list[Prediction | None] = [None] * len(rgbs)
        label_dtype = np.uint8 if self.model.num_classes < 256 else np.uint16
        for indices in by_size.values():
            rgb, depth = self._inputs(
                [rgbs[i] for i in indices], [depths[i] for i in indices], [sources[i] for i in indices]
            )
            logits = self._logits(rgb, depth)
            labels = (logits.argmax(1) + 1).to("cpu", torch.int32).numpy().astype(label_dtype)
            cpu_logits = logits.cpu().numpy() if return_logits else None
            for position, index in enumerate(indices):
                predictions[index] = Prediction(labels[position], None if cpu_logits is None else cpu_logits[position])
        return predictions  # type: ignore[return-value]
