"""int8 inference: post-training static quantisation, calibrated on a dataset and checked against float32 before
anything is written.

The path is PyTorch's PT2E flow with torchao's x86 Inductor quantiser (``pip install 'rgbxseg[int8]'``): the
inference form (:func:`~rgbxseg.models.optimize.optimize_for_inference`, fp32, channels-last) is exported at one
input shape, observers record the range of every convolution's and linear's input over the calibration frames, and
the converted graph — int8 weights (per output channel, symmetric), uint8 activations (per tensor, affine), the
token attentions as bf16 matmuls where the CPU has native bf16 (:func:`~rgbxseg.models.layers.token_attention`),
every other operation in float32 — is compiled ahead of time by Inductor into oneDNN's VNNI/AMX int8 kernels
(:class:`~rgbxseg.models.aot.CompiledInference`, packages cached per input shape). The modules a model declares in
``int8_float_modules`` (the parts whose int8 error changes the argmax) stay float32.

Measured on the project's CPU (AMD EPYC, AVX-512 VNNI and bf16, no AMX; 2 threads; AsymFormer B0-T at 480×640):
this path runs a frame in 119 ms against 330 ms for onnxruntime's QDQ static quantisation of the exported ONNX
file (whose fp32 runs 313 ms), so it is the one kept (``benchmarks/inference_speed.py`` measures both).

An int8 file is a safetensors file with the float weights (as :func:`~rgbxseg.models.weights.save_weights` writes
them), the calibrated observer states under ``int8_observers.`` and a ``rgbxseg_int8`` metadata block (format, the
float-kept modules, the calibration and the accuracy report). Observers are per tensor, so one calibration serves
every input shape: a new shape is exported, its observers take the calibrated states, and it is converted and
compiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..runtime import require
from .aot import CompiledInference, InferenceNetwork, Log
from .base import SegmentationModel, matching_module_names
from .factory import model_from_checkpoint
from .optimize import InferenceModel, compiled_attention_dtype, optimize_for_inference
from .weights import (
    INT8_METADATA_KEY,
    METADATA_KEY,
    CheckpointError,
    PathLike,
    parse_metadata,
    read_safetensors,
    save_weights,
)

INT8_FORMAT = 1
"""Version of the int8 file layout and of what its observers mean; a file of another version is refused."""
OBSERVER_PREFIX = "int8_observers."
DEFAULT_MIN_AGREEMENT = 0.985
"""The least argmax agreement with float32 on the test split for which ``rgbxseg quantize`` writes a model."""
NETWORK_PREFIX = "inference.model."
"""Where the model's modules sit in the exported network (:class:`rgbxseg.models.aot.InferenceNetwork`)."""


class AgreementTooLowError(ValueError):
    """The int8 model agrees with float32 on fewer pixels than the threshold; nothing was written."""


class Int8FileError(CheckpointError):
    """An int8 file that cannot be used: damaged, of another format version, or calibrated for another graph."""


@contextlib.contextmanager
def _quiet_torchao() -> Iterator[None]:
    """torchao logs a warning for each of its CUDA kernel libraries that a CPU build cannot load, and torch one for
    an enum torchao registers with its pytree."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _pt2e() -> tuple[Callable[..., Any], Callable[..., Any], Any]:
    """(prepare_pt2e, convert_pt2e, the x86 Inductor quantiser module) from torchao, or an error naming the extra."""
    with _quiet_torchao():
        flow = require("torchao.quantization.pt2e.quantize_pt2e", "int8", "int8 quantisation")
        x86 = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "int8", "int8 quantisation")
    return flow.prepare_pt2e, flow.convert_pt2e, x86


def int8_float_names(model: SegmentationModel) -> tuple[str, ...]:
    """The outermost modules matching the model's ``int8_float_modules``: what stays float32 in its int8 form."""
    return matching_module_names(model, model.int8_float_modules)


def _prepare(network: nn.Module, rgb: torch.Tensor, x: torch.Tensor, float_names: Iterable[str]) -> nn.Module:
    """The network exported at the shape of (rgb, x) with observers before every quantisable operation."""
    prepare_pt2e, _, x86 = _pt2e()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    for name in float_names:
        quantizer.set_module_name_qconfig(NETWORK_PREFIX + name, None)
    with torch.no_grad():
        exported = torch.export.export(network, (rgb, x)).module()
        return prepare_pt2e(exported, quantizer)


def _observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().clone()
        for name, tensor in prepared.state_dict().items()
        if name.startswith("activation_post_process_")
    }


def _digest(tensors: Mapping[str, torch.Tensor], *extra: str) -> str:
    digest = hashlib.sha256("|".join(extra).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Int8Calibration:
    """Calibrated observer states that quantise the network at any input shape (a
    :class:`~rgbxseg.models.aot.GraphTransform`): export at the shape, insert the observers, load their states,
    convert."""

    label = "int8"

    def __init__(
        self,
        observers: Mapping[str, torch.Tensor],
        float_names: Iterable[str],
        input_size: tuple[int, int] = (0, 0),
    ) -> None:
        self.observers = dict(observers)
        self.float_names = tuple(float_names)
        self.input_size = input_size
        """The (H, W) the observers saw (informative: the calibration serves every size)."""
        # torchao's version too: its quantiser decides the converted graph that a package holds
        torchao = versions().get("torchao", "")
        self.identity = f"int8-v{INT8_FORMAT}-torchao{torchao}-" + _digest(self.observers, *self.float_names)

    def __call__(self, network: nn.Module, rgb: torch.Tensor, x: torch.Tensor) -> nn.Module:
        _, convert_pt2e, _ = _pt2e()
        prepared = _prepare(network, rgb, x, self.float_names)
        expected = _observer_state(prepared)
        if set(expected) != set(self.observers):
            raise Int8FileError(
                f"the calibration holds {len(self.observers)} observer states but the network exported at "
                f"{'×'.join(map(str, rgb.shape))} has {len(expected)}: it was calibrated with another version of "
                "rgbxseg or torchao; quantise the float weights again (rgbxseg quantize)"
            )
        prepared.load_state_dict(self.observers, strict=False)
        with _quiet_torchao():
            return convert_pt2e(prepared)


def _float_form(model: SegmentationModel) -> InferenceModel:
    """The form that is quantised: the fp32 inference form with its token attentions as bf16 matmuls where the CPU
    has native bf16 (the int8 path has no attention kernel of its own; see
    :func:`~rgbxseg.models.layers.token_attention`)."""
    attention = compiled_attention_dtype(model, torch.bfloat16)
    return cast(InferenceModel, optimize_for_inference(model.eval(), attention_dtype=attention))


def calibrate_int8(
    model: SegmentationModel,
    frames: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    float_names: Iterable[str] | None = None,
) -> Int8Calibration:
    """Record activation ranges of ``model``'s inference form over ``frames`` (normalised (rgb, x) batches, all of
    one shape, H and W multiples of the model's ``input_multiple``). ``float_names``: modules kept in float32
    (default: :func:`int8_float_names`)."""
    names = int8_float_names(model) if float_names is None else tuple(float_names)
    inference = _float_form(model)
    network = InferenceNetwork(inference).eval()
    prepared: nn.Module | None = None
    shape: tuple[torch.Size, torch.Size] | None = None
    for frame in frames:
        rgb, x = (t.contiguous(memory_format=inference.memory_format) for t in frame)
        if prepared is None:
            shape = (rgb.shape, x.shape)
            prepared = _prepare(network, rgb, x, names)
        elif (rgb.shape, x.shape) != shape:
            raise ValueError(
                f"calibration frames must share one shape: {tuple(rgb.shape)} after {tuple(shape[0])}; resize them"
            )
        with torch.no_grad():
            prepared(rgb, x)
    if prepared is None:
        raise ValueError("no calibration frames: give at least one")
    return Int8Calibration(_observer_state(prepared), names, (int(shape[0][-2]), int(shape[0][-1])))


def int8_inference(
    model: SegmentationModel,
    calibration: Int8Calibration,
    *,
    cache_dir: PathLike | None = None,
    ahead_of_time: bool = True,
    log: Log | None = None,
) -> CompiledInference:
    """``model``'s int8 form: each input shape quantised with ``calibration`` and compiled ahead of time (cached in
    ``cache_dir``, see :mod:`rgbxseg.models.aot`). ``ahead_of_time=False`` runs the quantised graph with PyTorch's
    reference kernels instead: the int8 numbers without a compile, slower than float32 (for accuracy checks)."""
    inference = _float_form(model)
    return CompiledInference(inference, cache_dir, log=log, transform=calibration, ahead_of_time=ahead_of_time)


# --- accuracy -----------------------------------------------------------------------------------------------------


@dataclass
class Int8Report:
    """How the int8 model compares with float32 on a dataset split."""

    model: str
    calibration: str
    """What the observers saw: split, frames and input size."""
    test_split: str
    test_frames: int
    float_miou: float
    int8_miou: float
    agreement: float
    """Fraction of test pixels (all of them, labelled or not) where int8 and float32 pick the same class."""
    min_agreement: float
    float_modules: list[str]
    compiled: bool
    """Whether the int8 numbers came from the compiled packages (else PyTorch's reference kernels)."""
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def miou_change(self) -> float:
        return self.int8_miou - self.float_miou

    def describe(self) -> str:
        kept = ", ".join(self.float_modules) or "nothing"
        return (
            f"{self.model} int8 (calibrated on {self.calibration}; kept in float32: {kept})\n"
            f"  {self.test_split} split, {self.test_frames} frames: mIoU float32 {100 * self.float_miou:.2f} % → int8 "
            f"{100 * self.int8_miou:.2f} % ({100 * self.miou_change:+.2f} points); argmax agreement with float32 "
            f"{100 * self.agreement:.2f} % (threshold {100 * self.min_agreement:.2f} %), measured with the "
            f"{'compiled int8 kernels' if self.compiled else 'reference int8 kernels'} in {self.seconds:.0f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "miou_change": self.miou_change}


def check_agreement(report: Int8Report) -> None:
    """Refuse an int8 model whose agreement with float32 is below the report's threshold."""
    if not report.agreement >= report.min_agreement:  # also refuses nan
        raise AgreementTooLowError(
            f"the int8 {report.model} agrees with float32 on {100 * report.agreement:.2f} % of the "
            f"{report.test_split} pixels, below the threshold of {100 * report.min_agreement:.2f} % (mIoU "
            f"{100 * report.float_miou:.2f} % → {100 * report.int8_miou:.2f} %); nothing was written. Calibrate on "
            "frames like those you will segment (--calibration-split, more --frames), or keep float32 / bf16 "
            "(--optimize --dtype bf16, nearly as fast); --min-agreement lowers the threshold at your own risk"
        )


# --- files --------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The library versions an int8 file was made with (recorded in it)."""
    found = {"torch": torch.__version__}
    for package in ("torchao", "rgbxseg"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def save_int8(path: PathLike, model: SegmentationModel, calibration: Int8Calibration, report: Int8Report) -> Path:
    """Write the float weights, the calibrated observers and the report to ``path`` atomically."""
    block = {"format": INT8_FORMAT, "float_modules": list(calibration.float_names), "report": report.to_dict()}
    observers = {OBSERVER_PREFIX + name: tensor for name, tensor in calibration.observers.items()}
    return save_weights(model, path, extra_tensors=observers, extra_metadata={INT8_METADATA_KEY: json.dumps(block)})


def is_int8_file(path: PathLike) -> bool:
    """Whether ``path`` is a safetensors file written by :func:`save_int8`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return INT8_METADATA_KEY in (f.metadata() or {})
    except (SafetensorError, OSError):
        return False


def load_int8(path: PathLike) -> tuple[SegmentationModel, Int8Calibration, dict[str, Any]]:
    """(float model in eval mode, calibration, the stored report) of an int8 file; errors name the file and fix."""
    path = Path(path)
    tensors, raw = read_safetensors(path)
    if INT8_METADATA_KEY not in raw:
        raise Int8FileError(f"{path} is not an int8 model: make one from these weights with rgbxseg quantize")
    try:
        block = json.loads(raw[INT8_METADATA_KEY])
    except ValueError as err:
        raise Int8FileError(f"{path}: the int8 metadata block is corrupt ({err}); write it again") from err
    if block.get("format") != INT8_FORMAT:
        raise Int8FileError(
            f"{path} is an int8 model of format {block.get('format')}, this rgbxseg reads format {INT8_FORMAT}: "
            "quantise the float weights again with this version"
        )
    metadata = parse_metadata(raw.get(METADATA_KEY), path)
    if metadata is None:
        raise Int8FileError(f"{path} has no rgbxseg metadata block: write it again with rgbxseg quantize")
    observers = {k.removeprefix(OBSERVER_PREFIX): v for k, v in tensors.items() if k.startswith(OBSERVER_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith(OBSERVER_PREFIX)}
    model = model_from_checkpoint(weights, metadata, str(path)).eval()
    return model, Int8Calibration(observers, block.get("float_modules", ())), block.get("report", {})
