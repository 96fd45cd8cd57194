"""The inference-optimised AsymFormer against the straightforward implementation, measured in one run.

    python benchmarks/inference_speed.py                                  # CPU: 480x640 and 240x320, batch 1 and 8
    python benchmarks/inference_speed.py --sizes 480x640 --batches 1 --compile
    python benchmarks/inference_speed.py --device cuda --batches 1 16     # fp16/bf16 + CUDA graphs on a GPU

The baseline is the model as trained (the official formulation: BatchNorms, the wide decoder, NCHW, fp32); each
variant is :func:`rgbxseg.models.optimize.optimize_for_inference` with some options. For every size and batch the
script times all variants on the same inputs and weights, interleaved round by round, and writes median/p90
latency, FPS, the speed ratio to the baseline, max |Δlogit| and arg-max agreement with the baseline, and peak
memory, as Markdown and JSON under ``benchmarks/results/``. Sizes that are not multiples of 32 are padded
(bottom/right) as the model requires.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from report import machine_slug, write_markdown_and_json
from torch import nn

import rgbxseg
from rgbxseg.bench import CpuContention, PeakMemory, device_name, time_runs, torch_threads
from rgbxseg.data.dataset import RGBXDataset
from rgbxseg.models.layers import pad_to_multiple
from rgbxseg.models.optimize import optimize_for_inference
from rgbxseg.runtime import freed_memory_retained, resolve_device, retain_freed_memory

Build = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class Variant:
    name: str
    build: Build
    devices: tuple[str, ...] = ("cpu", "cuda")


def _optimized(**options: object) -> Build:
    return lambda model: optimize_for_inference(model, **options)


VARIANTS = (
    Variant("baseline: as trained, fp32", lambda model: model),
    Variant("fused fp32, NCHW", _optimized(channels_last=False)),
    Variant("fused fp32, channels-last", _optimized()),
    Variant("fused bf16 islands", _optimized(dtype=torch.bfloat16)),
    Variant("fused bf16 islands, label map out", _optimized(dtype=torch.bfloat16, output="labels")),
    Variant("fused fp16 islands + CUDA graph", _optimized(dtype=torch.float16, cuda_graphs=True), ("cuda",)),
    Variant("fused bf16 islands + CUDA graph", _optimized(dtype=torch.bfloat16, cuda_graphs=True), ("cuda",)),
)
COMPILED = (
    Variant("fused fp32 + torch.compile", _optimized(compile=True)),
    Variant("fused bf16 islands + torch.compile", _optimized(dtype=torch.bfloat16, compile=True)),
)


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
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants (minutes to compile)")
    parser.add_argument(
        "--allocators",
        nargs="+",
        choices=ALLOCATORS,
        default=list(ALLOCATORS),
        help="CPU only: measure everything under each allocator setting, each in its own process",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def inputs_for(args: argparse.Namespace, model: nn.Module, size: tuple[int, int], batch: int) -> tuple:
    """Normalised (rgb, depth) at ``size``, padded to the model's multiple: dataset frames or seeded noise."""
    if args.data:
        dataset = RGBXDataset(args.data, "test", ("depth",), input_spec=model.input_spec)
        samples = [dataset[i % len(dataset)] for i in range(batch)]
        rgb = torch.stack([s["rgb"] for s in samples])
        depth = torch.stack([s["depth"] for s in samples])
        rgb = nn.functional.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
        depth = nn.functional.interpolate(depth, size=size, mode="nearest")
    else:
        generator = torch.Generator().manual_seed(0)
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
) -> list[Row]:
    """All variants on the same inputs; the first (the baseline) is the reference for ratio, Δ and agreement."""
    device = next(model.parameters()).device
    inputs = tuple(t.to(device) for t in inputs_for(args, model, size, batch))
    label = f"{size[0]}x{size[1]}" + ("" if inputs[0].shape[-2:] == size else " (padded)")
    rows: list[Row] = []
    measured = measure_interleaved(args, [variant.build(model) for variant in variants], inputs, device)
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
    model = rgbxseg.create_model(args.model, weights=args.weights).eval().to(device)
    variants = [v for v in (*VARIANTS, *(COMPILED if args.compile else ())) if device.type in v.devices]
    print(f"allocator: {allocator}", flush=True)
    with torch_threads(args.threads):
        return [
            row
            for size in args.sizes
            for batch in args.batches
            for row in bench_case(args, model, variants, size, batch, allocator)
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
        if r.allocator == args.allocators[0] and r.variant == VARIANTS[0].name
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
        f"# Inference speed: {args.model}, optimised vs as trained\n\n"
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
