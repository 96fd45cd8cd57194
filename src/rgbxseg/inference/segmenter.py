"""``Segmenter``: raw RGB-X frames in, dataset labels out (input spec, depth units, valid sizes, devices)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import ClassSet
from ..inputs import ENCODINGS, InputSpec
from ..metadata import WeightsMetadata
from ..models.base import SegmentationModel
from ..models.factory import create_model, load_model
from ..models.layers import nearest_multiples, pad_to_multiple, resize, valid_size
from ..models.optimize import optimize_for_inference
from ..models.weights import PathLike, default_metadata
from ..runtime import autocast, resolve_device, resolve_dtype, retain_freed_memory
from .depth import DepthUnit, depth_to_mm, resolve_depth_unit
from .visualize import depth_colormap, modality_picture

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
    """Runs a segmentation model on numpy RGB-X frames: ``predict(rgb, x)``.

    The second input is what the model's input spec names (``segmenter.input_spec.x``): a depth map in
    ``depth_unit`` for metric-depth models, otherwise the modality's image as stored (8-bit thermal, HHA, …).

    Args:
        model: a :class:`SegmentationModel` or a registered model name (built with ``weights``).
        weights: checkpoint for a model given by name.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA), via autocast.
        depth_unit: for metric-depth models, what the depth maps you pass hold: ``"mm"``, ``"m"``, ``"sun-shifted"``
            (raw SUN RGB-D PNGs) or a number of millimetres per step; converted to millimetres.
        size_policy: how frames whose H or W are not multiples of ``model.input_multiple`` are handled.
            ``"pad"`` (default) pads bottom/right with the normalised mean (0) and crops the logits back: every pixel
            is seen at its native scale. ``"resize"`` resizes to ``input_size`` (default: the nearest valid size;
            RGB bilinear, depth nearest so invalid pixels never blend) and resizes the logits back bilinearly —
            use it with ``input_size`` to run large camera frames at the training resolution.
        input_spec: overrides the weights' declared inputs (same channels; the network's size rule is kept), e.g.
            another normalisation.
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
        input_spec: InputSpec | None = None,
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
        self.input_spec = model.adapt_input_spec(input_spec) if input_spec is not None else model.input_spec
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

    @property
    def x_is_depth(self) -> bool:
        """Whether the second input is metric depth (given in ``depth_unit``) rather than an image as stored."""
        return self.input_spec.x.encoding == "metric_mm"

    def depth_in_mm(self, depth: np.ndarray, source: str = "depth") -> np.ndarray:
        """A depth map in this segmenter's ``depth_unit``, checked and converted to float32 millimetres."""
        return depth_to_mm(depth, self.depth_unit, source)

    def stored_x(self, x: np.ndarray, source: str = "x") -> np.ndarray:
        """The second input checked and converted to the stored values the input spec normalises, (H, W, C):
        millimetres for metric depth, else the modality's image with the declared dtype and channels."""
        spec = self.input_spec.x
        if self.x_is_depth:
            return self.depth_in_mm(x, source)[:, :, None]
        expected = ENCODINGS[spec.encoding]
        x = np.asarray(x)
        x = x[:, :, None] if x.ndim == 2 else x
        if x.ndim != 3 or x.shape[2] != expected.channels or x.dtype != np.dtype(expected.dtype):
            raise ValueError(
                f"{source}: the second input ({spec.name}) must be {spec.encoding} as stored: (H, W"
                f"{', 3' if expected.channels == 3 else ''}) {expected.dtype} ({expected.description}); got "
                f"{x.shape} {x.dtype}"
            )
        return x

    def x_picture(self, x: np.ndarray, source: str = "x") -> np.ndarray:
        """The second input as an (H, W, 3) uint8 picture for panels: depth as a colour map, else as stored."""
        if self.x_is_depth:
            return depth_colormap(self.depth_in_mm(x, source))
        return modality_picture(self.stored_x(x, source))

    def _network_size(self, height: int, width: int) -> tuple[int, int]:
        if self.input_size is not None:
            return self.input_size
        multiple, min_size = self.model.input_multiple, self.input_spec.min_size
        nearest = (min(nearest_multiples(side, multiple), key=lambda v: abs(v - side)) for side in (height, width))
        return tuple(max(side, valid_size(min_size, multiple)) for side in nearest)

    def _inputs(self, rgbs: Sequence[np.ndarray], xs: Sequence[np.ndarray], sources: Sequence[str]) -> tuple:
        """Check, convert and normalise same-size frames into a batch on the device."""
        rgb_batch, x_batch = [], []
        for rgb_frame, x_frame, source in zip(rgbs, xs, sources, strict=True):
            rgb = np.asarray(rgb_frame)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"{source}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
            x = self.stored_x(x_frame, source)
            if x.shape[:2] != rgb.shape[:2]:
                raise ValueError(
                    f"{source}: {self.input_spec.x.name} {x.shape[1]}×{x.shape[0]} and RGB {rgb.shape[1]}×"
                    f"{rgb.shape[0]} differ in size; register the {self.input_spec.x.name} map to the colour camera "
                    "(or resize it with nearest interpolation) so that pixels correspond"
                )
            rgb_batch.append(torch.tensor(rgb).permute(2, 0, 1))  # a copy: Pillow arrays are read-only
            x_batch.append(torch.tensor(x).permute(2, 0, 1))
        rgb_tensor = self.input_spec.rgb.normalize(torch.stack(rgb_batch).to(self.device))
        x_tensor = self.input_spec.x.normalize(torch.stack(x_batch).to(self.device))
        return rgb_tensor, x_tensor

    @torch.inference_mode()
    def _logits(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network logits at the input's own H×W, whatever the model's size rule."""
        height, width = rgb.shape[-2:]
        if self.size_policy == "pad":
            rgb = pad_to_multiple(rgb, self.model.input_multiple, min_size=self.input_spec.min_size)
            x = pad_to_multiple(x, self.model.input_multiple, min_size=self.input_spec.min_size)
        else:
            size = self._network_size(height, width)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True)
            x = F.interpolate(x, size=size, mode="nearest-exact")
        with autocast(self.device, self.autocast_dtype):
            logits = self.run_model(rgb, x)
        logits = self.model.class_logits(logits.float())  # predictions never emit void
        if self.size_policy == "pad":
            return logits[..., :height, :width]
        return resize(logits, (height, width))

    def predict(self, rgb: np.ndarray, x: np.ndarray, *, return_logits: bool = False) -> Prediction:
        """Segment one frame: ``rgb`` (H, W, 3) uint8 and the second input ``x`` (depth (H, W) in ``depth_unit``, or
        the input spec's modality as stored)."""
        return self.predict_batch([rgb], [x], return_logits=return_logits)[0]

    def predict_batch(
        self,
        rgbs: Sequence[np.ndarray],
        xs: Sequence[np.ndarray],
        *,
        return_logits: bool = False,
        sources: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Segment several frames; frames of equal size run as one batch. ``sources`` name them in errors."""
        if len(rgbs) != len(xs):
            raise ValueError(f"{len(rgbs)} RGB images but {len(xs)} {self.input_spec.x.name} maps")
        sources = sources or [f"frame {i}" for i in range(len(rgbs))]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, rgb in enumerate(rgbs):
            by_size.setdefault(np.shape(rgb), []).append(index)
        predictions: list[Prediction | None] = [None] * len(rgbs)
        label_dtype = np.uint8 if self.model.num_classes < 256 else np.uint16
        for indices in by_size.values():
            rgb, x = self._inputs([rgbs[i] for i in indices], [xs[i] for i in indices], [sources[i] for i in indices])
            logits = self._logits(rgb, x)
            labels = (logits.argmax(1) + 1).to("cpu", torch.int32).numpy().astype(label_dtype)
            cpu_logits = logits.cpu().numpy() if return_logits else None
            for position, index in enumerate(indices):
                predictions[index] = Prediction(labels[position], None if cpu_logits is None else cpu_logits[position])
        return predictions  # type: ignore[return-value]
