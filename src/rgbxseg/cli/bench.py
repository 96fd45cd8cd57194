"""``rgbxseg bench``: latency / FPS, peak memory, parameters and MACs (attention included) of a model."""

from __future__ import annotations

import argparse
import json

from ..bench import BACKENDS, benchmark
from ..io import atomic_write_path, refuse_existing
from ..models.registry import list_models
from ..runtime import DTYPES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="latency, FPS, memory, parameters and GMACs of a model",
        description="Times the network forward only (random inputs already on the device) after warm-up, with "
        "device synchronisation; reports median/p90 latency, FPS, threads, device, load average and peak memory, "
        "and MACs (Conv/Linear and attention matmuls) as GMACs and GFLOPs (= 2 × MACs).",
    )
    parser.add_argument("--model", choices=list_models(), metavar="NAME", help="registered model (or give --int8)")
    parser.add_argument("--weights", help="weights to load (speed does not depend on them)")
    parser.add_argument(
        "--int8",
        metavar="FILE",
        help="time the int8 form of an int8 file from rgbxseg quantize (compiled on the first call, or loaded from "
        "the package cache; backend int8)",
    )
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="bf16/fp16 run under autocast")
    parser.add_argument("--backend", choices=tuple(BACKENDS), default="eager")
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="time the inference form (folded, reordered decoder, bf16 islands; on the CPU freed memory is reused)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="time the compiled form users get with predict/eval --compile: the inference form compiled ahead of time "
        "with frozen weights (= --backend aot --optimize; the package is cached, see rgbxseg.models.aot)",
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads (default: torch's)")
    parser.add_argument("--exporter", default="auto", help="ONNX exporter for the onnxruntime/tensorrt backends")
    parser.add_argument("--no-flops", action="store_true", help="skip counting MACs")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing(args.json, overwrite=args.overwrite)
    result = benchmark(
        args.model,
        weights=args.weights,
        height=args.height,
        width=args.width,
        batch=args.batch,
        device=args.device,
        dtype=args.dtype,
        backend="aot" if args.compile else args.backend,
        warmup=args.warmup,
        runs=args.runs,
        threads=args.threads,
        count_flops=not args.no_flops,
        onnx_exporter=args.exporter,
        progress=True,
        optimize=args.optimize or args.compile,
        int8=args.int8,
    )
    print(result.describe())
    if args.json:
        with atomic_write_path(args.json) as tmp:
            tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0
