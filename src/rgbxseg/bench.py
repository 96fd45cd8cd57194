"""Speed and size of a model with the protocol stated: latency / FPS, peak memory, parameters and MACs.

Latency is the network forward only (inputs already on the device, no pre- or post-processing), after warm-up,
with device synchronisation around every timed run. MACs count every Conv/Linear layer and, separately, the matrix
products outside them (attention QKᵀ and AV, including the CPU SDPA kernel that ``torch.utils.flop_counter`` does
not know); FLOPs = 2 × MACs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from tqdm import tqdm

from .export import build_tensorrt_engine, export_onnx, onnx_feeds, require_tensorrt
from .models.aot import CompiledInference, compile_for_inference, stderr_log
from .models.base import SegmentationModel
from .models.factory import create_model
from .models.optimize import InferenceModel, compiled_attention_dtype, optimize_for_inference
from .models.quantize import int8_inference, load_int8
from .models.registry import get_model_spec
from .models.weights import PathLike
from .runtime import (
    autocast,
    freed_memory_retained,
    require,
    resolve_device,
    resolve_dtype,
    retain_freed_memory,
)

CONV_LINEAR_LAYERS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
"""Layers whose MACs are the "GFLOPs" that papers usually report (thop-style)."""


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``aten._scaled_dot_product_flash_attention_for_cpu`` (2·b·h·Sq·Sk·(d + d_v)), unregistered in torch."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@dataclass(frozen=True)
class MacsReport:
    """Multiply-accumulates of one forward pass; ``input_shape`` is the shape of the first input (B, C, H, W)."""

    input_shape: tuple[int, ...]
    params: int
    conv_linear_macs: int
    attention_macs: int
    """Matrix products outside Conv/Linear layers: attention QKᵀ and AV (any SDPA kernel or explicit matmuls)."""

    @property
    def total_macs(self) -> int:
        return self.conv_linear_macs + self.attention_macs

    def describe(self) -> str:
        rows = [
            ("Conv + Linear", self.conv_linear_macs),
            ("attention matmuls", self.attention_macs),
            ("total", self.total_macs),
        ]
        lines = [
            "{:<18} {:>10} {:>22}".format(
                "MACs at " + "×".join(map(str, self.input_shape)), "GMACs", "GFLOPs (= 2 × MACs)"
            )
        ]
        lines += [f"{name:<18} {macs / 1e9:>10.2f} {2 * macs / 1e9:>22.2f}" for name, macs in rows]
        lines.append(f"parameters         {self.params / 1e6:>10.2f} M ({self.params:,})")
        return "\n".join(lines)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> MacsReport:
    """Count MACs of ``model(*inputs)`` (eval mode), split into Conv/Linear layers and attention matmuls.

    One pass under ``FlopCounterMode`` with a formula for the CPU SDPA kernel; hooks on Conv/Linear layers attribute
    what is counted inside them, the rest is attention (whichever kernel or matmul form the backend chose).
    """
    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    )
    starts: list[int] = []
    layer_flops = 0

    def before(module: nn.Module, args: Any) -> None:
        starts.append(counter.get_total_flops())

    def after(module: nn.Module, args: Any, output: Any) -> None:
        nonlocal layer_flops
        layer_flops += counter.get_total_flops() - starts.pop()

    layers = [m for m in model.modules() if isinstance(m, CONV_LINEAR_LAYERS)]
    handles = [m.register_forward_pre_hook(before) for m in layers] + [m.register_forward_hook(after) for m in layers]
    try:
        with torch.inference_mode(), counter:
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    total = counter.get_total_flops()
    return MacsReport(tuple(inputs[0].shape), count_params(model), layer_flops // 2, (total - layer_flops) // 2)


def count_macs_on_meta(name: str, height: int, width: int, num_classes: int | None = None) -> MacsReport:
    """MACs of a registered model at batch 1 × ``height`` × ``width`` counted on the ``meta`` device: shapes only, no
    weights, no memory, a second even for the largest variants."""
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = spec.builder(num_classes=num_classes or spec.default_num_classes).eval()
        inputs = model.input_spec.example_inputs(1, height, width, device="meta")
    return count_macs(model, inputs)


# --- machine and memory ------------------------------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} logical cores)"


def _proc_status_kib(field_name: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


class PeakMemory:
    """Peak memory during the runs. CUDA: ``torch.cuda.max_memory_allocated`` (weights + activations).
    CPU (Linux): growth of the process peak RSS (VmHWM, reset through /proc/self/clear_refs) over the RSS at the
    start: activations and workspaces, the already-resident weights excluded.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline_kib: int | None = None

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return
        self.baseline_kib = _proc_status_kib("VmRSS")

    def peak_mib(self) -> tuple[float | None, str]:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20, "CUDA max_memory_allocated"
        peak = _proc_status_kib("VmHWM")
        if peak is None or self.baseline_kib is None:
            return None, "not measured (needs Linux /proc)"
        return (peak - self.baseline_kib) / 1024, "process peak RSS growth (VmHWM - VmRSS at start)"


class CpuContention:
    """Share of all CPU time that *other* processes used while we ran (Linux /proc/stat minus our own CPU time).

    The load average cannot tell: our own threads raise it. A few percent is noise; beyond ``NOISY_SHARE`` the
    timings are disturbed (two threads on two cores beside one busy process run up to 20× slower).
    """

    NOISY_SHARE = 0.1

    def __init__(self) -> None:
        self.start: tuple[float, float, float] | None = None

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(busy seconds of all CPUs, total seconds of all CPUs, this process's CPU seconds)."""
        stat = Path("/proc/stat")
        if not stat.is_file():
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, stat.read_text().split()[1:9])
        tick = os.sysconf("SC_CLK_TCK")
        busy = (user + nice + system + irq + softirq + steal) / tick
        return busy, busy + (idle + iowait) / tick, time.process_time()

    def reset(self) -> None:
        self.start = self._sample()

    def other_share(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[1] <= self.start[1]:
            return None
        busy, total, own = (b - a for a, b in zip(self.start, end, strict=True))
        return min(max((busy - own) / total, 0.0), 1.0)


# --- backends ----------------------------------------------------------------------------------------------------

Runner = Callable[[], Any]


@dataclass
class BenchSetup:
    model: SegmentationModel
    inputs: tuple[torch.Tensor, torch.Tensor]
    device: torch.device
    dtype: torch.dtype
    threads: int
    onnx_exporter: str


def _eager_runner(setup: BenchSetup) -> Runner:
    def run() -> Any:
        with torch.inference_mode(), autocast(setup.device, setup.dtype):
            return setup.model(*setup.inputs)

    return run


def _compile_runner(setup: BenchSetup) -> Runner:
    """``torch.compile`` (inductor); the first call compiles, so it happens here and counts as setup time."""
    compiled = BenchSetup(torch.compile(setup.model), setup.inputs, setup.device, setup.dtype, setup.threads, "")
    run = _eager_runner(compiled)  # type: ignore[arg-type]
    run()
    return run


def _aot_runner(setup: BenchSetup) -> Runner:
    """The user's compiled form (``predict --compile``): the inference form compiled ahead of time with frozen
    weights, its package cached across processes; compiling (or loading the cached package) is setup time."""
    model = setup.model
    if isinstance(model, InferenceModel):
        compiled = CompiledInference(model, log=stderr_log("bench"))
    else:
        dtype = setup.dtype if setup.dtype != torch.float32 else None
        compiled = compile_for_inference(model, dtype=dtype, log=stderr_log("bench"))
    run = _eager_runner(BenchSetup(compiled, setup.inputs, setup.device, torch.float32, setup.threads, ""))  # type: ignore[arg-type]
    run()
    return run


def _onnx_file(setup: BenchSetup, folder: str, opset: int | None = None) -> Path:
    path = Path(folder) / "model.onnx"
    batch, _, height, width = setup.inputs[0].shape
    export_onnx(
        setup.model.float(),
        path,
        height=height,
        width=width,
        batch=batch,
        opset=opset,
        exporter=setup.onnx_exporter,
        check=False,
    )
    return path


def _onnxruntime_runner(setup: BenchSetup) -> Runner:
    ort = require("onnxruntime", "onnx", "the onnxruntime backend")
    if setup.dtype != torch.float32:
        raise ValueError("the onnxruntime backend runs the fp32 export; use --dtype fp32")
    providers = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}[setup.device.type]
    if providers[0] not in ort.get_available_providers():
        raise ValueError(f"onnxruntime here has no {providers[0]}; install onnxruntime-gpu for --device cuda")
    options = ort.SessionOptions()
    options.intra_op_num_threads = setup.threads
    with tempfile.TemporaryDirectory() as folder:
        session = ort.InferenceSession(str(_onnx_file(setup, folder)), options, providers=providers)
    feeds = onnx_feeds(setup.model.input_spec, setup.inputs)
    return lambda: session.run(None, feeds)


def _tensorrt_runner(setup: BenchSetup) -> Runner:
    trt = require_tensorrt()
    if setup.device.type != "cuda":
        raise ValueError("the tensorrt backend needs --device cuda")
    if setup.dtype == torch.bfloat16:
        raise ValueError("the tensorrt backend builds fp32 or fp16 engines; use --dtype fp32 or fp16")
    batch, _, height, width = setup.inputs[0].shape
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = _onnx_file(setup, folder, opset=17)
        engine_path = Path(folder) / "model.engine"
        build_tensorrt_engine(onnx_path, engine_path, fp16=setup.dtype == torch.float16, shape=(batch, height, width))
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    output = torch.empty((batch, setup.model.num_classes, height, width), device=setup.device)
    rgb_name, x_name = setup.model.input_spec.input_names
    tensors = {rgb_name: setup.inputs[0].contiguous(), x_name: setup.inputs[1].contiguous(), "logits": output}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        context.set_tensor_address(name, tensors[name].data_ptr())
    stream = torch.cuda.current_stream(setup.device).cuda_stream
    return lambda: context.execute_async_v3(stream)


def _int8_runner(setup: BenchSetup) -> Runner:
    """An int8 form (:func:`benchmark`'s ``int8``): its first call compiles or loads the package, as setup time."""
    if not isinstance(setup.model, CompiledInference) or setup.model.transform is None:
        raise ValueError("the int8 backend times an int8 file: rgbxseg bench --int8 FILE (made by rgbxseg quantize)")
    run = _eager_runner(setup)
    run()
    return run


BACKENDS: dict[str, Callable[[BenchSetup], Runner]] = {
    "eager": _eager_runner,
    "int8": _int8_runner,
    "compile": _compile_runner,
    "aot": _aot_runner,
    "onnxruntime": _onnxruntime_runner,
    "tensorrt": _tensorrt_runner,
}
"""Backend name → builder of a zero-argument callable running one forward pass."""


# --- the benchmark -----------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    """One benchmark run with everything needed to judge and reproduce it."""

    model: str
    backend: str
    optimized: bool
    """Whether the inference form ran (:func:`rgbxseg.models.optimize.optimize_for_inference`)."""
    device: str
    device_name: str
    dtype: str
    batch: int
    height: int
    width: int
    threads: int
    warmup: int
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    fps: float
    setup_seconds: float
    peak_memory_mib: float | None
    memory_measure: str
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    other_cpu_share: float | None
    """Share of all CPU time used by other processes during warm-up and timed runs (None where unmeasurable)."""
    freed_memory_retained: bool = False
    """Whether the process reused freed memory (:func:`rgbxseg.runtime.retain_freed_memory`) during the runs."""
    torch_version: str = torch.__version__
    timestamp: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    macs: MacsReport | None = None

    @property
    def load_warning(self) -> str | None:
        """Set when other processes competed for the CPUs: such timings can be off by several times."""
        if self.other_cpu_share is not None and self.other_cpu_share > CpuContention.NOISY_SHARE:
            return (
                f"other processes used {self.other_cpu_share:.0%} of the {os.cpu_count()} CPUs during the runs; "
                "rerun on an idle machine before trusting these numbers"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.macs is not None:
            data["macs"] = {**asdict(self.macs), "total_macs": self.macs.total_macs}
        data["load_warning"] = self.load_warning
        return data

    def describe(self) -> str:
        memory = "n/a" if self.peak_memory_mib is None else f"{self.peak_memory_mib:.0f} MiB"
        lines = [
            f"{self.model}{' (inference form)' if self.optimized else ''} | backend {self.backend} | {self.dtype} | "
            f"batch {self.batch} | {self.height}×{self.width}",
            f"device {self.device} ({self.device_name}), {self.threads} threads, torch {self.torch_version}",
            f"{self.warmup} warm-up + {self.runs} timed runs (synchronised), setup {self.setup_seconds:.1f} s",
            f"latency median {self.median_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, mean {self.mean_ms:.2f} ms, "
            f"min {self.min_ms:.2f} ms, max {self.max_ms:.2f} ms -> {self.fps:.2f} FPS (images/s at the median)",
            f"peak memory {memory} ({self.memory_measure}); freed memory "
            + ("kept for reuse" if self.freed_memory_retained else "returned to the OS (default allocator)"),
            "load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}; other processes' CPU share "
            "during the runs: {}".format(
                *self.loadavg_before,
                *self.loadavg_after,
                "n/a" if self.other_cpu_share is None else f"{self.other_cpu_share:.1%}",
            ),
        ]
        if self.load_warning:
            lines.append(f"WARNING: {self.load_warning}")
        if self.macs is not None:
            lines.append(self.macs.describe())
        return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (default: unchanged) and restore the previous number afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def time_runs(run: Runner, device: torch.device, warmup: int, runs: int, progress: bool = False) -> list[float]:
    """Milliseconds of each of ``runs`` calls after ``warmup`` calls, synchronising the device around each."""
    for _ in range(warmup):
        run()
    _synchronize(device)
    times = []
    for _ in tqdm(range(runs), desc="bench", unit="run", disable=not progress):
        start = time.perf_counter()
        run()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def benchmark(
    model: str | SegmentationModel | None,
    *,
    weights: PathLike | None = None,
    height: int = 480,
    width: int = 640,
    batch: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    backend: str = "eager",
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
    count_flops: bool = True,
    onnx_exporter: str = "auto",
    seed: int = 0,
    progress: bool = False,
    optimize: bool = False,
    int8: PathLike | None = None,
) -> BenchResult:
    """Time ``runs`` forward passes of a registered model (or a model instance) on random inputs.

    ``threads`` sets torch's (and onnxruntime's) intra-op threads for the run. MACs are counted at batch 1 in fp32 on
    the CPU when ``count_flops``, after the timed runs so that peak memory sees the first allocations.
    Wall-clock numbers depend on the machine's load: ``other_cpu_share`` and ``load_warning`` say whether other
    processes competed. ``optimize`` times the inference form of the model; bf16/fp16 then apply to its
    half-precision-tolerant parts instead of autocast, the MACs are those of the inference form, and on the CPU
    the process keeps freed memory for reuse from then on (:func:`rgbxseg.runtime.retain_freed_memory`).
    ``int8``: an int8 file from ``rgbxseg quantize`` (``model`` must be its model's name or None): its int8 form is
    timed (backend ``int8``, compiled on the first call or loaded from the package cache, which counts as setup).
    """
    if int8 is not None:
        float_model, calibration, _ = load_int8(int8)
        if model is not None and model != float_model.model_name:
            raise ValueError(f"{int8} holds {float_model.model_name}, not {model}: leave --model out")
        model, backend, optimize = float_model, "int8", False
    elif model is None:
        raise ValueError("give a model name (--model) or an int8 file (--int8)")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if min(batch, warmup + 1, runs) < 1:
        raise ValueError("batch and runs must be ≥ 1 and warmup ≥ 0")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if isinstance(model, str):
        torch.manual_seed(seed)  # the same random weights in every run: a compiled form's package is found again
        model = create_model(model, weights=weights)
    model = model.eval()
    inputs = model.input_spec.example_inputs(batch, height, width, generator=torch.Generator().manual_seed(seed))
    timed: nn.Module = model
    if optimize:
        attention = compiled_attention_dtype(model, torch_dtype) if backend == "aot" else None
        model = timed = optimize_for_inference(model, dtype=torch_dtype, attention_dtype=attention)
        torch_dtype = torch.float32  # precision is already in the model: no autocast on top
    if int8 is not None:
        if torch_device.type != "cpu" or torch_dtype != torch.float32:
            raise ValueError("the int8 form runs on the CPU in fp32 (its int8 kernels): use --device cpu --dtype fp32")
        timed = int8_inference(model, calibration, log=stderr_log("bench"))
    if (optimize or int8 is not None) and torch_device.type == "cpu":
        retain_freed_memory()
    with torch_threads(threads) as used_threads:
        setup = BenchSetup(
            timed.to(torch_device),
            (inputs[0].to(torch_device), inputs[1].to(torch_device)),
            torch_device,
            torch_dtype,
            used_threads,
            onnx_exporter,
        )
        memory = PeakMemory(torch_device)
        loadavg_before = os.getloadavg()
        start = time.perf_counter()
        run = BACKENDS[backend](setup)
        setup_seconds = time.perf_counter() - start
        memory.reset()
        contention = CpuContention()
        contention.reset()
        times = time_runs(run, torch_device, warmup, runs, progress)
        other_cpu_share = contention.other_share()
        peak_mib, memory_measure = memory.peak_mib()
        loadavg_after = os.getloadavg()
        macs = count_macs(model.float().cpu(), (inputs[0][:1], inputs[1][:1])) if count_flops else None
    median = statistics.median(times)
    return BenchResult(
        model=model.model_name,
        backend=backend,
        optimized=optimize,
        device=str(torch_device),
        device_name=device_name(torch_device),
        dtype=dtype,
        batch=batch,
        height=height,
        width=width,
        threads=used_threads,
        warmup=warmup,
        runs=runs,
        median_ms=median,
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=statistics.fmean(times),
        min_ms=min(times),
        max_ms=max(times),
        fps=batch * 1000 / median,
        setup_seconds=setup_seconds,
        peak_memory_mib=peak_mib,
        memory_measure=memory_measure,
        loadavg_before=loadavg_before,
        loadavg_after=loadavg_after,
        other_cpu_share=other_cpu_share,
        freed_memory_retained=freed_memory_retained(),
        macs=macs,
    )
