"""``rgbxseg quantize``: an int8 model calibrated on a dataset split, written only if it agrees with float32."""

from __future__ import annotations

import argparse
import json

from ..engine.quantize import quantize_weights
from ..io import atomic_write_path, refuse_existing
from ..models.aot import COMPILE_CACHE_ENV
from ..models.quantize import DEFAULT_MIN_AGREEMENT
from ._models import add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="int8 model for fast CPU inference, calibrated on a dataset and checked against float32",
        description="Post-training static int8 quantisation (PyTorch PT2E, x86 Inductor quantiser; needs "
        "rgbxseg[int8] and a C++ compiler): activation ranges are calibrated on --frames frames of "
        "--calibration-split, then int8 and float32 are compared on every frame of --split (argmax agreement, mIoU "
        "of each). Below --min-agreement nothing is written. Run the result with rgbxseg predict --weights OUT.",
    )
    add_model_arguments(parser, weights_required=True)
    parser.add_argument("--data", required=True, help="canonical dataset folder (rgbxseg prepare)")
    parser.add_argument("--out", required=True, help="int8 model file to write (.safetensors)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out (and --json) if they exist")
    parser.add_argument("--calibration-split", default="train", help="split whose frames calibrate (default train)")
    parser.add_argument("--split", default="test", help="split int8 is checked on against float32 (default test)")
    parser.add_argument("--frames", type=int, default=64, help="calibration frames, spread over the split")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help=f"least argmax agreement with float32 for the model to be written (default {DEFAULT_MIN_AGREEMENT})",
    )
    parser.add_argument(
        "--reference-kernels",
        action="store_true",
        help="check with PyTorch's reference int8 kernels (no compile) instead of the compiled ones predict runs",
    )
    parser.add_argument(
        "--compile-cache",
        help=f"folder of the compiled packages (default: ${COMPILE_CACHE_ENV} or ~/.cache/rgbxseg/compiled)",
    )
    parser.add_argument("--json", help="also write the report as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing(args.out, args.json, overwrite=args.overwrite)
    report = quantize_weights(
        args.weights,
        args.data,
        args.out,
        model_name=args.model,
        calibration_split=args.calibration_split,
        test_split=args.split,
        frames=args.frames,
        min_agreement=args.min_agreement,
        compiled=not args.reference_kernels,
        cache_dir=args.compile_cache,
        progress=not args.quiet,
    )
    print(report.describe())
    print(f"wrote {args.out}")
    if args.json:
        text = json.dumps(report.to_dict(), indent=2)
        with atomic_write_path(args.json) as tmp:
            tmp.write_text(text)
    return 0
