"""Deployment: ONNX export checked against PyTorch with onnxruntime, and TensorRT engines.

* :func:`export_onnx` writes an ONNX file (inputs named as the model's input spec names them — ``rgb`` and ``depth``
  for AsymFormer — and output ``logits``) atomically, with the classes and the input spec in its ``metadata_props``,
  then runs onnxruntime and compares with PyTorch on two inputs
  (dynamic export: two shapes; static export: two inputs at the exported shape, and another shape must be rejected).
  A difference above the tolerance raises :class:`OnnxParityError` and leaves no file behind.
* :func:`fp16_sensitive_nodes` selects the nodes whose weights fp16 cannot hold (the official AsymFormer notebook's
  rule) and :func:`build_tensorrt_engine` builds an FP16 engine that keeps them in fp32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .inputs import InputSpec
from .io import atomic_write_path
from .models.base import SegmentationModel
from .models.weights import PathLike, default_metadata
from .runtime import require

OUTPUT_NAMES = ("logits",)
DYNAMO_MIN_OPSET = 18
"""The dynamo exporter of torch ≥ 2.9 emits opset 18 or newer; lower opsets go through the legacy exporter."""
LEGACY_DEFAULT_OPSET = 17
"""The opset of AsymFormer's released ONNX model and the newest that TensorRT 8.6 parses."""
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


class OnnxParityError(ValueError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ParityCheck:
    """onnxruntime vs PyTorch on one random input of shape (batch, height, width)."""

    shape: tuple[int, int, int]
    max_abs_diff: float


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    model_name: str
    exporter: str
    opset: int
    dynamic: bool
    shape: tuple[int, int, int]
    seconds: float
    tolerance: float
    parity: list[ParityCheck] = field(default_factory=list)
    other_shape_rejected: bool | None = None
    """Static exports: whether onnxruntime refused an input of another shape (None when not checked)."""
    fallback_reason: str | None = None
    """Why the dynamo exporter failed when ``exporter="auto"`` fell back to the legacy one."""

    def describe(self) -> str:
        kind = "dynamic batch×H×W" if self.dynamic else "static {}×{}×{}".format(*self.shape)
        lines = [
            f"{self.path}: {self.model_name}, {self.exporter} exporter, opset {self.opset}, {kind}, "
            f"exported in {self.seconds:.1f} s"
        ]
        if self.fallback_reason:
            lines.append(f"  dynamo exporter failed, used the legacy one: {self.fallback_reason}")
        for check in self.parity:
            lines.append(
                "  onnxruntime vs PyTorch at {}×{}×{}: max |Δ| = {:.2e} (tolerance {:.0e})".format(
                    *check.shape, check.max_abs_diff, self.tolerance
                )
            )
        if self.other_shape_rejected is not None:
            lines.append(
                f"  another input shape rejected by onnxruntime: {'yes' if self.other_shape_rejected else 'NO'}"
            )
        return "\n".join(lines)


def _example_inputs(model: SegmentationModel, shape: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, ...]:
    """Normalised-scale random RGB and X inputs on the model's device."""
    generator = torch.Generator().manual_seed(seed)
    return model.input_spec.example_inputs(*shape, generator=generator, device=next(model.parameters()).device)


def _export_dynamo(model: SegmentationModel, args: tuple, path: Path, opset: int, dynamic: bool) -> None:
    dims = {axis: torch.export.Dim.DYNAMIC for axis in DYNAMIC_AXES}
    program = torch.onnx.export(
        model,
        args,
        dynamo=True,
        opset_version=opset,
        input_names=list(model.input_spec.input_names),
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=(dims, dims) if dynamic else None,
        verbose=False,
    )
    program.save(str(path))


def _export_legacy(model: SegmentationModel, args: tuple, path: Path, opset: int, dynamic: bool) -> None:
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=list(model.input_spec.input_names),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={name: DYNAMIC_AXES for name in model.input_spec.input_names + OUTPUT_NAMES} if dynamic else None,
        do_constant_folding=True,
    )


EXPORTERS: dict[str, Callable[[SegmentationModel, tuple, Path, int, bool], None]] = {
    "dynamo": _export_dynamo,
    "legacy": _export_legacy,
}
"""``torch.export``-based exporter (needs onnxscript, opset ≥ 18) and the TorchScript one (any opset ≤ 20)."""


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' deprecation warnings and the "torchvision is not installed" notices they log."""
    notices = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            yield
    finally:
        notices.setLevel(level)


def _plan_exporters(exporter: str, opset: int | None) -> list[tuple[str, int]]:
    """(exporter, opset) attempts in order for the requested exporter name and opset."""
    if exporter not in (*EXPORTERS, "auto"):
        raise ValueError(f"unknown exporter {exporter!r}; choose auto, {', '.join(EXPORTERS)}")
    if exporter == "legacy":
        return [("legacy", opset or LEGACY_DEFAULT_OPSET)]
    if opset is not None and opset < DYNAMO_MIN_OPSET:
        if exporter == "dynamo":
            raise ValueError(
                f"the dynamo exporter emits opset ≥ {DYNAMO_MIN_OPSET}, not {opset}; use --exporter legacy for "
                f"opset {opset} (or leave --exporter auto)"
            )
        return [("legacy", opset)]
    dynamo = ("dynamo", opset or DYNAMO_MIN_OPSET)
    return [dynamo] if exporter == "dynamo" else [dynamo, ("legacy", opset or DYNAMO_MIN_OPSET)]


class _ClassLogits(nn.Module):
    """A network with a void output (DPLNet), exported with that channel left out: every ONNX file of the package
    has the same contract, dataset label = argmax + 1, never void."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_spec = model.input_spec
        self.train(model.training)  # the exporter restores the wrapper's mode afterwards, and with it the model's

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.model.class_logits(self.model(rgb, x))


def _exported_network(model: nn.Module) -> nn.Module:
    return _ClassLogits(model) if getattr(model, "void_logit", False) else model


def _add_metadata(path: Path, model: SegmentationModel) -> int:
    """Store classes, palette and normalisation in ``metadata_props``; returns the file's opset."""
    onnx = require("onnx", "onnx", "ONNX export")
    proto = onnx.load(str(path))
    metadata = model.weights_metadata or default_metadata(model)
    spec = model.input_spec
    props = {
        "rgbxseg_metadata": json.dumps(metadata.to_dict()),
        "class_names": json.dumps(list(metadata.class_names)),
        "input_spec": json.dumps(spec.to_dict()),
        "input_multiple": str(model.input_multiple),
        "label_offset": "1",
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (
        f"{model.model_name}: inputs {spec.rgb.name} (B, {spec.rgb.channels}, H, W) and {spec.x.name} (B, "
        f"{spec.x.channels}, H, W), normalised as metadata_props['input_spec'] declares, H and W multiples of "
        f"{model.input_multiple}; output logits (B, {model.num_label_classes}, H, W), dataset label = argmax + 1"
        + (" (the network's void output is left out)." if getattr(model, "void_logit", False) else ".")
    )
    onnx.save(proto, str(path))
    return next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))


def onnx_feeds(spec: InputSpec, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    """onnxruntime feeds of the model inputs (RGB, X), under the input names of the model's input spec."""
    return {name: tensor.cpu().numpy() for name, tensor in zip(spec.input_names, inputs, strict=True)}


def _cpu_session(onnx_path: PathLike) -> Any:
    ort = require("onnxruntime", "onnx", "the ONNX parity check")
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def _second_shape(shape: tuple[int, int, int], multiple: int) -> tuple[int, int, int]:
    batch, height, width = shape
    return batch + 1, height + multiple, width + 2 * multiple


def check_onnx_parity(
    model: SegmentationModel,
    onnx_path: PathLike,
    shapes: Sequence[tuple[int, int, int]],
    *,
    tolerance: float = 1e-4,
    seed: int = 0,
    session: Any = None,
) -> list[ParityCheck]:
    """Run onnxruntime (CPU) and the model on random inputs of each (batch, H, W); raise above ``tolerance``.

    ``session``: an onnxruntime session already open on ``onnx_path`` (default: open one).
    """
    session = session if session is not None else _cpu_session(onnx_path)
    checks = []
    for index, shape in enumerate(shapes):
        inputs = _example_inputs(model, shape, seed + index)
        with torch.inference_mode():
            expected = _exported_network(model)(*inputs).float().cpu().numpy()
        try:
            (actual,) = session.run(list(OUTPUT_NAMES), onnx_feeds(model.input_spec, inputs))
        except Exception as err:  # onnxruntime has its own exception types
            raise OnnxParityError(
                "{}: onnxruntime cannot run the export at {}×{}×{}: some shape was frozen while exporting; try the "
                "other exporter (--exporter legacy/dynamo). {}".format(onnx_path, *shape, str(err).splitlines()[0])
            ) from err
        if actual.shape != expected.shape:
            raise OnnxParityError(f"{onnx_path}: onnxruntime output {actual.shape}, PyTorch {expected.shape}")
        checks.append(ParityCheck(shape, float(np.abs(actual - expected).max())))
    worst = max(checks, key=lambda check: check.max_abs_diff)
    if worst.max_abs_diff > tolerance:
        raise OnnxParityError(
            "{}: onnxruntime differs from PyTorch by {:.3e} at {}×{}×{} (tolerance {:.0e}); the export is not "
            "faithful — try the other exporter (--exporter legacy/dynamo) or another opset".format(
                onnx_path, worst.max_abs_diff, *worst.shape, tolerance
            )
        )
    return checks


def _rejects_shape(session: Any, model: SegmentationModel, shape: tuple[int, int, int]) -> bool:
    try:
        session.run(list(OUTPUT_NAMES), onnx_feeds(model.input_spec, _example_inputs(model, shape, 0)))
    except Exception:
        return True
    return False


def export_onnx(
    model: SegmentationModel,
    path: PathLike,
    *,
    height: int = 480,
    width: int = 640,
    batch: int = 1,
    opset: int | None = None,
    dynamic: bool = False,
    exporter: str = "auto",
    check: bool = True,
    tolerance: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> OnnxExport:
    """Export ``model`` (eval mode, fp32) to ONNX at ``path``; by default check it with onnxruntime.

    ``exporter="auto"`` uses the dynamo exporter (opset 18 unless given) and falls back to the legacy one if it fails;
    an opset below 18 selects the legacy exporter. ``dynamic=True`` makes batch, H and W dynamic (the dynamo export
    then traces with batch 2, so that batch 1 is not specialised). Parity: see the module docstring. ``progress``
    writes a status line to stderr as each phase starts (export, metadata, parity check), which can take a minute.
    """
    multiple = model.input_multiple
    if height % multiple or width % multiple or min(height, width, batch) < 1:
        raise ValueError(f"{model.model_name} exports at H and W multiples of {multiple}, got {height}×{width}")
    model = model.eval()
    shape = (max(batch, 2) if dynamic else batch, height, width)
    args = _example_inputs(model, shape, seed)
    report = None
    start = time.perf_counter()

    def status(message: str) -> None:
        if progress:
            tqdm.write(f"export onnx [{time.perf_counter() - start:.1f} s]: {message}", file=sys.stderr)

    with atomic_write_path(path) as tmp:
        failures = []
        for name, attempt_opset in _plan_exporters(exporter, opset):
            status(
                "exporting {} with the {} exporter, opset {}, {} {}×{}×{}".format(
                    model.model_name, name, attempt_opset, "dynamic, traced at" if dynamic else "static", *shape
                )
            )
            try:
                with _quiet_export():
                    EXPORTERS[name](_exported_network(model), args, tmp, attempt_opset, dynamic)
            except Exception as err:
                failures.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                continue
            status("writing the metadata (classes, palette, input spec)")
            written_opset = _add_metadata(tmp, model)
            report = OnnxExport(
                Path(path),
                model.model_name,
                name,
                written_opset,
                dynamic,
                shape,
                time.perf_counter() - start,
                tolerance,
                fallback_reason="; ".join(failures) or None,
            )
            break
        if report is None:
            raise ValueError(f"ONNX export of {model.model_name} failed: " + "; ".join(failures))
        if check:
            session = _cpu_session(tmp)
            second = _second_shape(shape, multiple)
            shapes = [shape, second if dynamic else shape]
            status("parity check: onnxruntime vs PyTorch at " + ", ".join("{}×{}×{}".format(*s) for s in shapes))
            report.parity = check_onnx_parity(model, tmp, shapes, tolerance=tolerance, seed=seed, session=session)
            if not dynamic:
                report.other_shape_rejected = _rejects_shape(session, model, second)
    return report


# --- TensorRT ----------------------------------------------------------------------------------------------------


def fp16_sensitive_nodes(onnx_model: Any, *, max_change: float = 1e-3, min_magnitude: float = 1e-7) -> list[str]:
    """Names of nodes with a float initializer that fp16 cannot hold: some weight changes by more than
    ``max_change`` when cast to fp16 (overflow, coarse rounding of large values) or has |w| ≤ ``min_magnitude``
    (flushed to zero). The rule of the official AsymFormer TensorRT notebook; integer initializers (shapes, axes)
    are not weights and are skipped.
    """
    numpy_helper = require("onnx.numpy_helper", "onnx", "selecting fp32 layers")
    initializers = {init.name: init for init in onnx_model.graph.initializer}
    selected = []
    for node in onnx_model.graph.node:
        for name in node.input:
            if name not in initializers:
                continue
            weights = numpy_helper.to_array(initializers[name])
            if not np.issubdtype(weights.dtype, np.floating):
                continue
            weights = weights.astype(np.float32)
            with np.errstate(over="ignore"):
                change = np.abs(weights.astype(np.float16).astype(np.float32) - weights)
            if (change > max_change).any() or (np.abs(weights) <= min_magnitude).any():
                selected.append(node.name)
                break
    return selected


@dataclass
class TensorRTBuild:
    """What :func:`build_tensorrt_engine` wrote."""

    path: Path
    precision: str
    fp32_nodes: list[str]
    fp32_layers: list[str]
    seconds: float
    tensorrt_version: str


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or an error that says how to get it."""
    return require("tensorrt", "tensorrt", "building TensorRT engines (NVIDIA GPU with CUDA required)")


def build_tensorrt_engine(
    onnx_path: PathLike,
    engine_path: PathLike,
    *,
    fp16: bool = True,
    keep_fp32: Sequence[str] | None = None,
    workspace_gib: float = 2.0,
    shape: tuple[int, int, int] = (1, 480, 640),
) -> TensorRTBuild:
    """Build a serialized TensorRT engine from an ONNX file, atomically.

    With ``fp16`` the layers made from ``keep_fp32`` nodes (default: :func:`fp16_sensitive_nodes`) are pinned to fp32
    (layer names containing a node name, as in the official notebook) and precision constraints are obeyed. Dynamic
    inputs get one optimisation profile at ``shape`` = (batch, H, W): engines are specialised for speed.
    """
    trt = require_tensorrt()
    onnx = require("onnx", "onnx", "building TensorRT engines")
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    nodes = (
        list(keep_fp32) if keep_fp32 is not None else fp16_sensitive_nodes(onnx.load(str(onnx_path))) if fp16 else []
    )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit_batch = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implicit from TensorRT 10
    network = builder.create_network(0 if explicit_batch is None else 1 << int(explicit_batch))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    kept = []
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if any(node and node in layer.name for node in nodes):
                layer.precision = trt.float32
                for output in range(layer.num_outputs):
                    if layer.get_output(output).dtype in (trt.float32, trt.float16):
                        layer.set_output_type(output, trt.float32)
                kept.append(layer.name)
    profile = None
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if -1 in tuple(tensor.shape):
            profile = profile or builder.create_optimization_profile()
            fixed = (shape[0], tensor.shape[1], shape[1], shape[2])
            profile.set_shape(tensor.name, fixed, fixed, fixed)
    if profile is not None:
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT could not build an engine from {onnx_path}; see the TensorRT log above")
    with atomic_write_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    return TensorRTBuild(
        Path(engine_path), "fp16" if fp16 else "fp32", nodes, kept, time.perf_counter() - start, trt.__version__
    )
