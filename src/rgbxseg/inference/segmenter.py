"""``Segmenter``: raw RGB-X frames in, dataset labels out (input spec, depth units, valid sizes, devices)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import ClassSet
from ..inputs import ENCODINGS, InputSpec
from ..metadata import WeightsMetadata
from ..models.aot import compile_for_inference, stderr_log
from ..models.base import SegmentationModel
from ..models.factory import create_model, load_model
from ..models.layers import nearest_multiples, pad_to_multiple, resize, valid_size
from ..models.optimize import optimize_for_inference
from ..models.quantize import Int8Calibration, int8_inference, load_int8
from ..models.weights import PathLike, default_metadata
from ..runtime import autocast, resolve_device, resolve_dtype, retain_freed_memory
from .depth import DepthUnit, DepthUnitLike, depth_to_mm, resolve_depth_unit
from .memory import DEFAULT_MAX_PIXELS, FrameTooLargeError, available_memory, estimate_bytes, format_bytes
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
            (raw SUN RGB-D PNGs), a number of millimetres per step, or ``"auto"`` (chosen per map:
            :data:`~rgbxseg.inference.depth.AUTO_RULES`); converted to millimetres. ``predict(..., depth_unit=)``
            overrides it per call. Maps whose values do not fit their unit are refused
            (:data:`~rgbxseg.inference.depth.DEPTH_CHECKS`): a wrong unit would give confident, wrong labels.
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
        compile: run the inference form compiled ahead of time with frozen weights, one package per input shape,
            cached across processes (:func:`rgbxseg.models.aot.compile_for_inference`): the first frame of a new shape
            compiles (a minute or more, announced on stderr), later processes load the package in about a second.
            Implies ``optimize``. Equal to the eager model within float rounding.
        compile_cache: the package folder (default: ``$RGBXSEG_COMPILE_CACHE`` or ``~/.cache/rgbxseg/compiled``).
        compile_after: compile a shape the n-th time it runs (1: at once; 2: a one-off shape, such as a folder's last
            partial batch, runs uncompiled); a shape with a cached package is loaded at once.
        int8: run the model's int8 form with this calibration (:mod:`rgbxseg.models.quantize`; usually through
            :meth:`from_int8`): each input shape quantised and compiled ahead of time, cached like ``compile``'s
            packages (``compile_cache``). CPU only, float32 ``dtype``.
        prepare_model: a further step applied once to the (optimised) eval model, e.g. ``torch.compile``.
        max_pixels: the memory guard. A frame with more pixels at the network's input size (default 4096×4096), or
            whose prediction would need more memory than was free when the segmenter started (estimated from
            measurements: :mod:`rgbxseg.inference.memory`), is refused before anything is allocated, so a huge
            frame fails at once instead of exhausting the machine; frames of one size run in batches that fit.
            ``None`` lifts the guard.
    """

    def __init__(
        self,
        model: SegmentationModel | str,
        weights: PathLike | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        depth_unit: DepthUnitLike = "mm",
        size_policy: SizePolicy = "pad",
        input_size: tuple[int, int] | None = None,
        input_spec: InputSpec | None = None,
        optimize: bool = False,
        compile: bool = False,
        compile_cache: PathLike | None = None,
        compile_after: int = 1,
        int8: Int8Calibration | None = None,
        prepare_model: PrepareModel | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
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
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, or None for no limit; got {max_pixels}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = model.eval().to(self.device)
        self.metadata: WeightsMetadata = model.weights_metadata or default_metadata(model)
        self.input_spec = model.adapt_input_spec(input_spec) if input_spec is not None else model.input_spec
        self.depth_unit: DepthUnit | Literal["auto"] = resolve_depth_unit(depth_unit)
        self.size_policy = size_policy
        self.input_size = input_size
        self.run_model = self._inference_form(optimize, compile, compile_cache, compile_after, int8)
        self.autocast_dtype = self.dtype if self.run_model is self.model else torch.float32  # the forms cast inside
        if (optimize or compile or int8 is not None) and self.device.type == "cpu":
            retain_freed_memory()
        if prepare_model is not None:
            self.run_model = prepare_model(self.run_model)
        self.max_pixels = max_pixels
        self.memory_available = available_memory(self.device) if max_pixels is not None else None  # the guard's budget

    def _inference_form(
        self,
        optimize: bool,
        compile: bool,
        compile_cache: PathLike | None,
        compile_after: int,
        int8: Int8Calibration | None,
    ) -> ModelRunner:
        """The form of the model that runs: int8, compiled, optimised, or the model itself."""
        if int8 is not None:
            if self.device.type != "cpu" or self.dtype != torch.float32:
                raise ValueError("the int8 form runs on the CPU (oneDNN int8 kernels) with dtype fp32")
            return int8_inference(self.model, int8, cache_dir=compile_cache, log=stderr_log("rgbxseg"))
        if compile:
            return compile_for_inference(
                self.model,
                dtype=self.dtype,
                cache_dir=compile_cache,
                compile_after=compile_after,
                log=stderr_log("rgbxseg"),
            )
        return optimize_for_inference(self.model, dtype=self.dtype) if optimize else self.model

    @classmethod
    def from_weights(cls, weights: PathLike, model_name: str | None = None, **kwargs: object) -> Segmenter:
        """A segmenter for a weights file; ``model_name`` is needed only for files without rgbxseg metadata."""
        return cls(load_model(weights, model_name), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_int8(cls, path: PathLike, **kwargs: object) -> Segmenter:
        """A segmenter running the int8 model that ``rgbxseg quantize`` wrote to ``path``."""
        model, calibration, _ = load_int8(path)
        return cls(model, int8=calibration, **kwargs)  # type: ignore[arg-type]

    @property
    def class_set(self) -> ClassSet:
        """Class names and palette (void first) of the weights."""
        return self.metadata.class_set

    @property
    def x_is_depth(self) -> bool:
        """Whether the second input is metric depth (given in ``depth_unit``) rather than an image as stored."""
        return self.input_spec.x.encoding == "metric_mm"

    def depth_in_mm(
        self, depth: np.ndarray, source: str = "depth", depth_unit: DepthUnitLike | None = None
    ) -> np.ndarray:
        """A depth map in ``depth_unit`` (default: the segmenter's), checked and converted to float32 millimetres."""
        return depth_to_mm(depth, self.depth_unit if depth_unit is None else depth_unit, source)

    def stored_x(self, x: np.ndarray, source: str = "x", depth_unit: DepthUnitLike | None = None) -> np.ndarray:
        """The second input checked and converted to the stored values the input spec normalises, (H, W, C):
        millimetres for metric depth (in ``depth_unit``, default: the segmenter's), else the modality's image with
        the declared dtype and channels."""
        spec = self.input_spec.x
        if self.x_is_depth:
            return self.depth_in_mm(x, source, depth_unit)[:, :, None]
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

    def x_picture(self, x: np.ndarray, source: str = "x", depth_unit: DepthUnitLike | None = None) -> np.ndarray:
        """The second input as an (H, W, 3) uint8 picture for panels: depth as a colour map, else as stored."""
        if self.x_is_depth:
            return depth_colormap(self.depth_in_mm(x, source, depth_unit))
        return modality_picture(self.stored_x(x, source))

    def _network_size(self, height: int, width: int) -> tuple[int, int]:
        """The H×W the network runs at for a frame of ``height``×``width`` under the size policy."""
        multiple, min_size = self.model.input_multiple, self.input_spec.min_size
        if self.size_policy == "pad":
            return valid_size(height, multiple, min_size), valid_size(width, multiple, min_size)
        if self.input_size is not None:
            return self.input_size
        nearest = (min(nearest_multiples(side, multiple), key=lambda v: abs(v - side)) for side in (height, width))
        return tuple(max(side, valid_size(min_size, multiple)) for side in nearest)

    def _frames_per_run(self, height: int, width: int, source: str, return_logits: bool) -> int | None:
        """How many frames of this size fit in memory at once (None: no bound known); refuses, before anything is
        allocated, an empty frame and one over ``max_pixels`` or over the memory free at the start."""
        if height == 0 or width == 0:
            raise ValueError(
                f"{source}: the frame is empty ({height}×{width}, H×W): there is nothing to segment; check the file "
                "or the crop that produced it"
            )
        if self.max_pixels is None:
            return None
        network_h, network_w = self._network_size(height, width)
        pixels, name = network_h * network_w, self.model.model_name
        need = estimate_bytes(name, self.model.num_classes, pixels, height * width, return_logits)
        budget = self.memory_available
        if pixels <= self.max_pixels and (need is None or budget is None or need <= budget):
            return None if need is None or budget is None else budget // need
        estimate = (
            f"about {format_bytes(need)} (measured for {name}, fp32)" if need else f"an unmeasured amount ({name})"
        )
        if pixels > self.max_pixels:
            reason = (
                f"{pixels:,} pixels at the network size {network_h}×{network_w} exceed max_pixels = "
                f"{self.max_pixels:,}, and it would need {estimate}"
            )
        else:
            reason = f"it would need {estimate}, but {format_bytes(budget)} were free when the segmenter started"
        smaller = (
            "a smaller input_size (--input-size H W) or a downscaled frame"
            if self.size_policy == "resize"
            else "size_policy='resize' with input_size=(H, W) (--size-policy resize --input-size H W), which runs "
            "the network at that size and resizes the labels back"
        )
        raise FrameTooLargeError(
            f"{source}: the {height}×{width} frame (H×W) is too large: {reason}. Use {smaller}, or raise max_pixels "
            "(--max-pixels N; 0 lifts the guard)"
        )

    def _runs(
        self, by_size: Mapping[tuple[int, ...], list[int]], sources: Sequence[str], return_logits: bool
    ) -> list[list[int]]:
        """Indices of the frames that run together: one size each, as many as fit; every size is checked first."""
        runs = []
        for shape, indices in by_size.items():
            step = self._frames_per_run(*shape[:2], sources[indices[0]], return_logits) if len(shape) == 3 else None
            step = step or len(indices)
            runs += [indices[start : start + step] for start in range(0, len(indices), step)]
        return runs

    def _inputs(
        self,
        rgbs: Sequence[np.ndarray],
        xs: Sequence[np.ndarray],
        sources: Sequence[str],
        depth_unit: DepthUnitLike | None,
    ) -> tuple:
        """Check, convert and normalise same-size frames into a batch on the device."""
        rgb_batch, x_batch = [], []
        for rgb_frame, x_frame, source in zip(rgbs, xs, sources, strict=True):
            rgb = np.asarray(rgb_frame)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"{source}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
            x = self.stored_x(x_frame, source, depth_unit)
            if x.shape[:2] != rgb.shape[:2]:
                raise ValueError(
                    f"{source}: {self.input_spec.x.name} {x.shape[0]}×{x.shape[1]} and RGB {rgb.shape[0]}×"
                    f"{rgb.shape[1]} (H×W) differ in size; register the {self.input_spec.x.name} map to the colour "
                    "camera (or resize it with nearest interpolation) so that pixels correspond"
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

    def predict(
        self,
        rgb: np.ndarray,
        x: np.ndarray,
        *,
        return_logits: bool = False,
        depth_unit: DepthUnitLike | None = None,
    ) -> Prediction:
        """Segment one frame: ``rgb`` (H, W, 3) uint8 and the second input ``x`` (depth (H, W) in ``depth_unit``, by
        default the segmenter's, or the input spec's modality as stored)."""
        return self.predict_batch([rgb], [x], return_logits=return_logits, depth_unit=depth_unit)[0]

    def predict_batch(
        self,
        rgbs: Sequence[np.ndarray],
        xs: Sequence[np.ndarray],
        *,
        return_logits: bool = False,
        sources: Sequence[str] | None = None,
        depth_unit: DepthUnitLike | None = None,
    ) -> list[Prediction]:
        """Segment several frames; frames of equal size run as one batch. ``sources`` name them in errors;
        ``depth_unit`` (default: the segmenter's) is what their depth maps hold."""
        if len(rgbs) != len(xs):
            raise ValueError(f"{len(rgbs)} RGB images but {len(xs)} {self.input_spec.x.name} maps")
        sources = sources or [f"frame {i}" for i in range(len(rgbs))]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, rgb in enumerate(rgbs):
            by_size.setdefault(np.shape(rgb), []).append(index)
        predictions: list[Prediction | None] = [None] * len(rgbs)
        label_dtype = np.uint8 if self.model.num_classes < 256 else np.uint16
        for indices in self._runs(by_size, sources, return_logits):
            rgb, x = self._inputs(
                [rgbs[i] for i in indices], [xs[i] for i in indices], [sources[i] for i in indices], depth_unit
            )
            logits = self._logits(rgb, x)
            labels = (logits.argmax(1) + 1).to("cpu", torch.int32).numpy().astype(label_dtype)
            cpu_logits = logits.cpu().numpy() if return_logits else None
            for position, index in enumerate(indices):
                predictions[index] = Prediction(labels[position], None if cpu_logits is None else cpu_logits[position])
        return predictions  # type: ignore[return-value]
