"""Every inference form a user can choose, against the official implementation, measured in one run.

    python benchmarks/inference_speed.py                                  # CPU: 480x640 and 240x320, batch 1 and 8
    python benchmarks/inference_speed.py --official ~/AsymFormer --forms compiled int8 onnxruntime
    python benchmarks/inference_speed.py --device cuda --batches 1 16     # fp16/bf16 + CUDA graphs on a GPU

The baseline is the official AsymFormer implementation (``--official``: a checkout of Fourier7754/AsymFormer,
imported by ``official_asymformer.py`` with the same weights), else rgbxseg's model as trained (the official
formulation: BatchNorms, the wide decoder, NCHW, fp32). The forms: the model as trained (eager), the inference
form of :func:`rgbxseg.models.optimize.optimize_for_inference` in fp32 and with bf16 islands (``--optimize``), and
with ``--forms``: that form compiled ahead of time in fp32 and bf16 (``--compile``), int8 (``rgbxseg quantize``:
PT2E + Inductor), and onnxruntime running the fp32 ONNX export and its QDQ static int8 quantisation. The int8 forms
are calibrated on four frames other than the timed ones (``--int8`` takes a file made by ``rgbxseg quantize``
instead). For every size and batch the script times all forms on the same inputs and weights, interleaved round by
round, and writes median/p90 latency, FPS, the speed ratio to the baseline, max |Δlogit| and arg-max agreement with
the baseline, and peak memory, as Markdown and JSON under ``benchmarks/results/``. Sizes that are not multiples of 32
are padded (bottom/right) as the model requires.

On the CPU every variant is measured once per allocator setting (``--allocators``), each in a fresh process:
``default`` is glibc's behaviour (large blocks are unmapped when freed and page-faulted in again on every call),
``retain`` keeps freed memory for reuse (:func:`rgbxseg.runtime.retain_freed_memory`, which ``Segmenter`` and
``rgbxseg bench`` apply with ``optimize``). "ratio" compares with the baseline under the first listed setting (the
straightforward implementation as users run it), "same-allocator ratio" with the baseline in the same process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from official_asymformer import load_official
from report import machine_slug, write_markdown_and_json
from torch import nn

import rgbxseg
from rgbxseg.bench import CpuContention, PeakMemory, device_name, time_runs, torch_threads
from rgbxseg.data.dataset import RGBXDataset
from rgbxseg.export import export_onnx
from rgbxseg.models.aot import compile_for_inference
from rgbxseg.models.layers import pad_to_multiple
from rgbxseg.models.optimize import optimize_for_inference
from rgbxseg.models.quantize import calibrate_int8, int8_inference, load_int8
from rgbxseg.runtime import freed_memory_retained, require, resolve_device, retain_freed_memory


@dataclass
class Case:
    """What a form may need besides the model: the timed inputs, calibration frames (int8) and the options."""

    args: argparse.Namespace
    inputs: tuple[torch.Tensor, torch.Tensor]
    calibration: list[tuple[torch.Tensor, torch.Tensor]]
    official: nn.Module | None = None


Build = Callable[[nn.Module, Case], nn.Module]


@dataclass(frozen=True)
class Variant:
    name: str
    build: Build
    devices: tuple[str, ...] = ("cpu", "cuda")


def _optimized(**options: object) -> Build:
    return lambda model, case: optimize_for_inference(model, **options)


def _compiled(dtype: torch.dtype | None = None) -> Build:
    return lambda model, case: compile_for_inference(model, dtype=dtype, cache_dir=case.args.compile_cache)


def _int8(model: nn.Module, case: Case) -> nn.Module:
    calibration = load_int8(case.args.int8)[1] if case.args.int8 else calibrate_int8(model, case.calibration)
    return int8_inference(model, calibration, cache_dir=case.args.compile_cache)


class OnnxRuntimeForm(nn.Module):
    """An onnxruntime session called like the model (torch tensors in and out)."""

    def __init__(self, session: object, names: Sequence[str]) -> None:
        super().__init__()
        self.session, self.names = session, names

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        feeds = {name: t.contiguous().numpy() for name, t in zip(self.names, (rgb, x), strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def _onnxruntime(int8: bool) -> Build:
    """The fp32 ONNX export of the inference form (static shape), or its QDQ int8 quantisation (onnxruntime's static
    quantiser: per-channel int8 weights, uint8 activations calibrated on the case's calibration frames)."""

    def build(model: nn.Module, case: Case) -> nn.Module:
        ort = require("onnxruntime", "onnx", "the onnxruntime forms")
        quantization = require("onnxruntime.quantization", "onnx", "the onnxruntime int8 form")
        folder = Path(tempfile.mkdtemp(prefix="rgbxseg-ort-"))
        batch, _, height, width = case.inputs[0].shape
        path = folder / "model.onnx"
        form = optimize_for_inference(model, channels_last=False)
        export_onnx(form, path, height=height, width=width, batch=batch, check=False, progress=False)
        names = model.input_spec.input_names
        if int8:
            prepared, quantized = folder / "prepared.onnx", folder / "int8.onnx"
            quantization.shape_inference.quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
            frames = [torch.cat([frame[i] for frame in case.calibration] * batch)[:batch] for i in (0, 1)]
            reader = _CalibrationReader([dict(zip(names, (f.numpy() for f in frames), strict=True))])
            quantization.quantize_static(
                str(prepared), str(quantized), reader, quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                per_channel=True, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            )  # fmt: skip
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads = case.args.threads
        return OnnxRuntimeForm(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), names)

    return build


class _CalibrationReader:
    """onnxruntime's calibration data reader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


BASELINE = Variant("rgbxseg as trained, eager fp32", lambda model, case: model)
OFFICIAL = Variant("official implementation, eager fp32", lambda model, case: case.official, ("cpu", "cuda"))
VARIANTS = (
    BASELINE,
    Variant("optimized fp32 (--optimize)", _optimized()),
    Variant("optimized bf16 islands (--optimize --dtype bf16)", _optimized(dtype=torch.bfloat16)),
    Variant("optimized fp16 islands + CUDA graph", _optimized(dtype=torch.float16, cuda_graphs=True), ("cuda",)),
    Variant("optimized bf16 islands + CUDA graph", _optimized(dtype=torch.bfloat16, cuda_graphs=True), ("cuda",)),
)
FORMS = {
    "compiled": (
        Variant("compiled fp32 (--compile)", _compiled(), ("cpu",)),
        Variant("compiled bf16 islands (--compile --dtype bf16)", _compiled(torch.bfloat16), ("cpu",)),
    ),
    "int8": (Variant("int8, PT2E + Inductor (rgbxseg quantize)", _int8, ("cpu",)),),
    "onnxruntime": (
        Variant("onnxruntime fp32", _onnxruntime(int8=False), ("cpu",)),
        Variant("onnxruntime int8, QDQ static", _onnxruntime(int8=True), ("cpu",)),
    ),
}
"""The forms ``--forms`` adds (each compiles or converts per input shape: minutes in all)."""


ALLOCATORS = ("default", "retain")


@dataclass
class Row:
    size: str
    batch: int
    variant: str
    allocator: str
    median_ms: float
    p90_ms: float
    fps: float
    ratio_same_allocator: float
    max_abs_logit_diff: float | None
    argmax_agreement: float
    peak_memory_mib: float | None
    other_cpu_share: float | None
    ratio: float | None = None
    """Against the baseline under the first listed allocator: set by :func:`main` once every process has measured."""


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="asymformer_b0_t")
    parser.add_argument("--weights", help="weights to load (default: random initialisation, seeded)")
    parser.add_argument("--data", help="a canonical dataset whose test frames are the inputs (default: random)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(480, 640), (240, 320)])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="rounds; each round calls every variant once")
    parser.add_argument("--forms", nargs="*", choices=sorted(FORMS), default=[], help="add these forms")
    parser.add_argument("--official", type=Path, help="checkout of the official AsymFormer code: the baseline")
    parser.add_argument("--int8", help="int8 file from rgbxseg quantize (default: calibrate on 4 other frames)")
    parser.add_argument("--compile-cache", help="folder of the compiled packages (default: rgbxseg's)")
    parser.add_argument(
        "--allocators",
        nargs="+",
        choices=ALLOCATORS,
        default=list(ALLOCATORS),
        help="CPU only: measure everything under each allocator setting, each in its own process",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def inputs_for(
    args: argparse.Namespace, model: nn.Module, size: tuple[int, int], batch: int, split: str = "test", seed: int = 0
) -> tuple:
    """Normalised (rgb, depth) at ``size``, padded to the model's multiple: dataset frames or seeded noise."""
    if args.data:
        dataset = RGBXDataset(args.data, split, ("depth",), input_spec=model.input_spec)
        samples = [dataset[(i + seed) % len(dataset)] for i in range(batch)]
        rgb = torch.stack([s["rgb"] for s in samples])
        depth = torch.stack([s["depth"] for s in samples])
        rgb = nn.functional.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
        depth = nn.functional.interpolate(depth, size=size, mode="nearest")
    else:
        generator = torch.Generator().manual_seed(seed)
        rgb = torch.randn(batch, 3, *size, generator=generator)
        depth = torch.randn(batch, 1, *size, generator=generator)
    multiple = model.input_multiple
    return pad_to_multiple(rgb, multiple), pad_to_multiple(depth, multiple)


def measure_interleaved(
    args: argparse.Namespace, modules: list[nn.Module], inputs: tuple, device: torch.device
) -> list[tuple[list[float], torch.Tensor, float | None, float | None]]:
    """Time the modules round-robin (one call of each per round), so that slow drifts of the machine's speed
    (frequency, neighbours) hit every variant alike and the ratios stay meaningful."""

    def runner(module: nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return module(*inputs)

        return run

    runs = [runner(module) for module in modules]
    outputs = [run().clone() for run in runs]  # first calls (compilation) outside the timing
    for run in runs:
        time_runs(run, device, args.warmup, 0)
    times: list[list[float]] = [[] for _ in runs]
    memory = PeakMemory(device)
    contention = CpuContention()
    contention.reset()
    for _ in range(args.runs):
        for index, run in enumerate(runs):
            times[index] += time_runs(run, device, 0, 1)
    share = contention.other_share()
    peaks: list[float | None] = [None] * len(runs)
    if device.type != "cpu" or not freed_memory_retained():  # RSS cannot see the reuse of retained memory
        for index, run in enumerate(runs):  # peak memory one variant at a time
            memory.reset()
            run()
            peaks[index] = memory.peak_mib()[0]
    return [(t, out, peak, share) for t, out, peak in zip(times, outputs, peaks, strict=True)]


def bench_case(
    args: argparse.Namespace,
    model: nn.Module,
    variants: list[Variant],
    size: tuple[int, int],
    batch: int,
    allocator: str,
    official: nn.Module | None = None,
) -> list[Row]:
    """All variants on the same inputs; the first (the baseline) is the reference for ratio, Δ and agreement."""
    device = next(model.parameters()).device
    inputs = tuple(t.to(device) for t in inputs_for(args, model, size, batch))
    calibration = [inputs_for(args, model, size, 1, "train", seed) for seed in range(1, 5)]
    case = Case(args, inputs, calibration, official)
    label = f"{size[0]}x{size[1]}" + ("" if inputs[0].shape[-2:] == size else " (padded)")
    rows: list[Row] = []
    measured = measure_interleaved(args, [variant.build(model, case) for variant in variants], inputs, device)
    reference, baseline_ms = measured[0][1], statistics.median(measured[0][0])
    for variant, (times, out, peak, share) in zip(variants, measured, strict=True):
        median = statistics.median(times)
        labels_out = out.dtype == torch.int64
        rows.append(
            Row(
                size=label,
                batch=batch,
                variant=variant.name,
                allocator=allocator,
                median_ms=median,
                p90_ms=float(np.percentile(times, 90)),
                fps=1000 * batch / median,
                ratio_same_allocator=baseline_ms / median,
                max_abs_logit_diff=None if labels_out else (out - reference).abs().max().item(),
                argmax_agreement=((out if labels_out else out.argmax(1)) == reference.argmax(1)).float().mean().item(),
                peak_memory_mib=peak,
                other_cpu_share=share,
            )
        )
        print(_format_row(rows[-1]), flush=True)
    return rows


def measure_all(args: argparse.Namespace, allocator: str) -> list[Row]:
    """Every size, batch and variant under one allocator setting (a fresh process: the setting is process-wide)."""
    if allocator == "retain" and not retain_freed_memory():
        raise RuntimeError("--allocators retain needs glibc (Linux); measure with --allocators default")
    torch.manual_seed(0)  # the same random weights in every process
    device = resolve_device(args.device)
    official = None
    if args.official:
        official, model, stand_ins = load_official(args.official, args.weights)
        official, model = official.to(device), model.to(device)
        print(f"official implementation from {args.official} (stand-ins for: {', '.join(stand_ins) or 'none'})")
    else:
        model = rgbxseg.create_model(args.model, weights=args.weights).eval().to(device)
    added = [variant for form in args.forms for variant in FORMS[form]]
    variants = [v for v in ((OFFICIAL,) if official else ()) + VARIANTS + tuple(added) if device.type in v.devices]
    print(f"allocator: {allocator}", flush=True)
    with torch_threads(args.threads):
        return [
            row
            for size in args.sizes
            for batch in args.batches
            for row in bench_case(args, model, variants, size, batch, allocator, official)
        ]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cpu":
        args.allocators = ["default"]  # the CUDA caching allocator already reuses device memory
    rows: list[Row] = []
    for allocator in args.allocators:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows += pool.submit(measure_all, args, allocator).result()
    reference = {
        (r.size, r.batch): r.median_ms
        for r in rows
        if r.allocator == args.allocators[0] and r.variant == (OFFICIAL if args.official else BASELINE).name
    }
    for row in rows:
        row.ratio = reference[(row.size, row.batch)] / row.median_ms
    write_results(args, argv, device, rows)
    return 0


def _format_row(row: Row) -> str:
    diff = "-" if row.max_abs_logit_diff is None else f"{row.max_abs_logit_diff:.1e}"
    memory = "-" if row.peak_memory_mib is None else f"{row.peak_memory_mib:.0f}"
    share = "-" if row.other_cpu_share is None else f"{100 * row.other_cpu_share:.0f}%"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}×"  # still unknown while a worker prints its rows
    return (
        f"| {row.size} | {row.batch} | {row.variant} | {row.allocator} | {row.median_ms:.1f} | {row.p90_ms:.1f} | "
        f"{row.fps:.2f} | **{ratio}** | {row.ratio_same_allocator:.2f}× | {diff} | "
        f"{100 * row.argmax_agreement:.2f}% | {memory} | {share} |"
    )


def write_results(args: argparse.Namespace, argv: list[str], device: torch.device, rows: list[Row]) -> None:
    machine = device_name(device)
    slug = machine_slug(f"{machine}-{args.threads}-threads")
    command = shlex.join(["python", "benchmarks/inference_speed.py", *argv])
    header = (
        f"# Inference speed: {args.model}, every form against "
        f"{'the official implementation' if args.official else 'the model as trained'}\n\n"
        f"Machine: {machine}; torch {torch.__version__}; Python {platform.python_version()}; "
        f"{args.threads} threads; {args.warmup} warm-up + {args.runs} timed runs; inputs: "
        f"{'frames of ' + args.data if args.data else 'seeded random normal'}; weights: "
        f"{args.weights or 'random initialisation'}.\n\nCommand: `{command}`\n\n"
        "Ratio = baseline median / variant median, measured in the same run on the same inputs and weights: "
        f"'ratio' against the baseline under the '{args.allocators[0]}' allocator setting, 'same-allocator ratio' "
        "against the baseline measured in the same process (allocator settings: 'default' = glibc returns freed "
        "blocks to the OS; 'retain' = freed memory is kept for reuse, rgbxseg.runtime.retain_freed_memory). "
        "Δlogit and agreement are against the baseline's output. Peak memory: "
        + (
            "CUDA max_memory_allocated"
            if device.type == "cuda"
            else "growth of the process peak RSS over one call, variant after variant (a lower bound: memory an "
            "earlier variant left resident is reused unseen; not measurable under 'retain', where all of it is)"
        )
        + ". Other CPU share: CPU time other processes took during the runs (above "
        f"{CpuContention.NOISY_SHARE:.0%} the timing is disturbed).\n\n"
        "| size | batch | variant | allocator | median ms | p90 ms | FPS | ratio | same-allocator ratio | "
        "max \\|Δlogit\\| | argmax agreement | peak MiB | other CPU |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    markdown = write_markdown_and_json(
        args.out / f"inference_speed_{slug}",
        header + "\n".join(_format_row(row) for row in rows) + "\n",
        {"machine": machine, "command": command, "rows": [asdict(r) for r in rows]},
    )
    print(f"wrote {markdown}")


if __name__ == "__main__":
    sys.exit(main())
