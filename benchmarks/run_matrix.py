"""Benchmark a matrix of models × backends × dtypes and write a Markdown table (and JSON) for this machine.

    python benchmarks/run_matrix.py                       # asymformer_b0_t: eager fp32, eager bf16, onnxruntime
    python benchmarks/run_matrix.py --device cuda --configs eager:fp32 eager:fp16 compile:fp16 tensorrt:fp16

Writes ``benchmarks/results/<machine>.md`` and ``.json``. Speed is also given as a ratio to the first configuration of
each model measured in the same run (the baseline), which is comparable across machines where raw times are not.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import torch
from report import machine_slug, write_markdown_and_json

from rgbxseg.bench import BenchResult, CpuContention, benchmark, device_name
from rgbxseg.models import create_model
from rgbxseg.runtime import resolve_device

DEFAULT_CONFIGS = ("eager:fp32", "eager:bf16", "onnxruntime:fp32")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["asymformer_b0_t"])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="BACKEND:DTYPE, baseline first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--exporter", default="auto", help="ONNX exporter for the onnxruntime / tensorrt backends")
    parser.add_argument("--name", help="machine name for the file (default: from the device)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def markdown_table(results: list[BenchResult], baselines: dict[str, BenchResult]) -> list[str]:
    lines = [
        "| model | backend | dtype | batch | input | median ms | p90 ms | FPS | speed vs baseline | peak memory MiB "
        "| threads | other processes' CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = baselines[r.model]
        memory = "n/a" if r.peak_memory_mib is None else f"{r.peak_memory_mib:.0f}"
        others = "n/a" if r.other_cpu_share is None else f"{r.other_cpu_share:.1%}"
        lines.append(
            f"| {r.model} | {r.backend} | {r.dtype} | {r.batch} | {r.height}×{r.width} | {r.median_ms:.1f} "
            f"| {r.p90_ms:.1f} | {r.fps:.2f} | {base.median_ms / r.median_ms:.2f}× | {memory} | {r.threads} "
            f"| {others} |"
        )
    return lines


def compute_lines(results: list[BenchResult]) -> list[str]:
    lines = ["| model | params | Conv+Linear GMACs | attention GMACs | total GMACs | total GFLOPs (= 2 × MACs) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        if r.macs is not None:
            m = r.macs
            lines.append(
                f"| {r.model} | {m.params / 1e6:.2f} M | {m.conv_linear_macs / 1e9:.2f} | {m.attention_macs / 1e9:.2f} "
                f"| {m.total_macs / 1e9:.2f} | {2 * m.total_macs / 1e9:.2f} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(argv)
    device = resolve_device(args.device)
    machine = device_name(device)
    results: list[BenchResult] = []
    baselines: dict[str, BenchResult] = {}
    for name in args.models:
        model = create_model(name)  # shared by the configurations; speed does not depend on the weights
        for index, config in enumerate(args.configs):
            backend, _, dtype = config.partition(":")
            print(f"[{name}] {backend} {dtype or 'fp32'} …", flush=True)
            result = benchmark(
                model, height=args.height, width=args.width, batch=args.batch, device=args.device,
                dtype=dtype or "fp32", backend=backend, warmup=args.warmup, runs=args.runs, threads=args.threads,
                count_flops=index == 0, onnx_exporter=args.exporter, progress=True,
            )  # fmt: skip
            print(result.describe(), flush=True)
            baselines.setdefault(name, result)
            results.append(result)
    base = results[0]
    command = shlex.join(["python", "benchmarks/run_matrix.py", *(argv if argv is not None else sys.argv[1:])])
    versions = f"torch {torch.__version__}"
    with contextlib.suppress(PackageNotFoundError):
        versions += f", onnxruntime {package_version('onnxruntime')}"
    lines = [
        f"# Benchmarks on {machine}",
        "",
        f"Machine: {machine}, device `{device}`, {base.threads} threads; {versions}; {base.timestamp}.",
        "",
        f"Command: `{command}`",
        "",
        f"Protocol: network forward only on random inputs already on the device, {args.warmup} warm-up + "
        f"{args.runs} timed runs with synchronisation; median and p90 latency; FPS = batch / median. Speed vs "
        "baseline = baseline median / median, the baseline being each model's first configuration in this run. "
        f"Peak memory: {base.memory_measure}. Other processes' CPU share: of all CPU time during warm-up and timed "
        f"runs (from /proc/stat minus this process); rows above {CpuContention.NOISY_SHARE:.0%} were disturbed.",
        "",
        *markdown_table(results, baselines),
        "",
        f"Compute at {args.height}×{args.width}, batch 1 (MACs; FLOPs = 2 × MACs):",
        "",
        *compute_lines(results),
        "",
    ]
    name = args.name or machine_slug(f"{device.type}-{machine}-{base.threads}-threads")
    payload = {"machine": machine, "command": command, "results": [r.to_dict() for r in results]}
    markdown = write_markdown_and_json(args.out / name, "\n".join(lines), payload)
    print(f"wrote {markdown} and {markdown.with_suffix('.json').name}")
    return markdown


if __name__ == "__main__":
    main()
