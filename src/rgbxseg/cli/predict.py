"""``rgbxseg predict``: segment RGB-X frames (pair, folders, video / image sequence or camera) and write pictures."""

from __future__ import annotations

import argparse
from collections.abc import Sized

from ..inference import CAMERA_BACKENDS, OUTPUT_KINDS, Segmenter, camera_frames, open_frames, predict_frames, run_camera
from ..inference.depth import AUTO, AUTO_RULES, DEPTH_CHECKS, DEPTH_UNITS
from ..inference.memory import DEFAULT_MAX_PIXELS
from ..models.aot import (
    AUTO_COMPILE_MIN_FRAMES,
    COMPILE_CACHE_ENV,
    COMPILE_MODES,
    compile_after_runs,
    should_compile,
    stderr_log,
)
from ..models.quantize import is_int8_file
from ..runtime import DTYPES
from ._models import add_model_arguments, model_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment your RGB-D / RGB-X frames and write label PNGs, overlays and panels",
        description="Inputs: --rgb A.png --x B.png; --rgb-dir D --x-dir D (matched by file name); "
        "--rgb video.mp4|rgb/%06d.png --x depth/%06d.png; or --camera N. The second input is what the weights' "
        "input spec names (depth for AsymFormer; --depth and --depth-dir are other names of --x and --x-dir). "
        "Outputs under --out: labels/NAME.png (palette PNG of dataset labels), overlay/NAME.jpg, panel/NAME.jpg "
        "(RGB | second input | prediction); overlays and panels end with a legend of the classes present.",
    )
    add_model_arguments(parser, weights_required=True)
    source = parser.add_argument_group("input (one of)")
    source.add_argument("--rgb", help="RGB image, video or printf pattern of an image sequence")
    source.add_argument(
        "--x",
        "--depth",
        dest="x",
        help="second input: depth map (16-bit PNG, float TIFF, .npy), thermal or HHA "
        "image as stored, or pattern / video",
    )
    source.add_argument("--rgb-dir", help="folder of RGB images")
    source.add_argument("--x-dir", "--depth-dir", dest="x_dir", help="folder of second-input maps with the RGB names")
    source.add_argument("--camera", metavar="DEVICE", help="OpenCV RGB-D device index or URI (needs rgbxseg[camera])")
    source.add_argument("--camera-backend", choices=sorted(CAMERA_BACKENDS), default="openni2")
    source.add_argument("--max-frames", type=int, default=None, help="stop the camera after this many frames")
    source.add_argument("--show", action="store_true", help="camera: show the live panel in a window (q quits)")
    parser.add_argument("--out", help="output folder (optional with --camera --show); one run at a time writes there")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    parser.add_argument(
        "--depth-unit",
        default="mm",
        help=f"metric-depth models: what your depth values are: {', '.join(DEPTH_UNITS)}, {AUTO} or millimetres per "
        f"step (e.g. 0.1); default mm. {AUTO_RULES}; {DEPTH_CHECKS}",
    )
    parser.add_argument(
        "--size-policy",
        choices=("pad", "resize"),
        default="pad",
        help="frames whose sides are not multiples of 32: pad and crop back (default) or resize there and back",
    )
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="resize policy: network size")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"memory guard: refuse a frame with more than N pixels at the network size (default {DEFAULT_MAX_PIXELS:,}"
        " = 4096×4096) or whose estimated memory exceeds what is free, before it runs; 0: no limit",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="run the inference form (folded, reordered decoder, bf16 islands; on the CPU freed memory is reused)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="auto",
        help="run the inference form compiled ahead of time with frozen weights, one package per frame size, cached "
        f"across runs (the first compile of a size takes a minute or more). auto (default): for cameras and for "
        f"{AUTO_COMPILE_MIN_FRAMES} or more frames on the CPU, compiling a size the second time it runs",
    )
    parser.add_argument(
        "--compile-cache",
        metavar="DIR",
        help=f"folder of the compiled packages (default: ${COMPILE_CACHE_ENV} or ~/.cache/rgbxseg/compiled)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--outputs", nargs="+", choices=OUTPUT_KINDS, default=list(OUTPUT_KINDS))
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg", help="overlay and panel format")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the label colours")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    pair = args.rgb or args.x
    folders = args.rgb_dir or args.x_dir
    if sum(map(bool, (pair, folders, args.camera is not None))) != 1:
        raise ValueError("give exactly one input: --rgb/--x, --rgb-dir/--x-dir or --camera")
    if (pair and not (args.rgb and args.x)) or (folders and not (args.rgb_dir and args.x_dir)):
        raise ValueError("RGB and the second input go together: --rgb with --x (--depth), --rgb-dir with --x-dir")
    if args.out is None and not (args.camera is not None and args.show):
        raise ValueError("--out is required (except for --camera --show)")
    if args.camera is not None:
        device = int(args.camera) if args.camera.isdigit() else args.camera
        frames = camera_frames(device, args.camera_backend, args.max_frames)
    else:
        frames = open_frames(args.rgb or args.rgb_dir, args.x or args.x_dir)  # fails fast on bad paths
    count = len(frames) if isinstance(frames, Sized) else None
    common = {
        "device": args.device,
        "dtype": args.dtype,
        "depth_unit": args.depth_unit,
        "size_policy": args.size_policy,
        "input_size": tuple(args.input_size) if args.input_size else None,
        "max_pixels": args.max_pixels or None,
        "compile_cache": args.compile_cache,
    }
    if is_int8_file(args.weights):  # made by rgbxseg quantize: always compiled
        segmenter = Segmenter.from_int8(args.weights, **common)
    else:
        compile_now, why = should_compile(
            args.compile, frames=count, stream=args.camera is not None, device=args.device
        )
        if compile_now:
            stderr_log("rgbxseg predict")(f"compiling ({why})")
        segmenter = Segmenter(
            model_from_args(args),
            optimize=args.optimize,
            compile=compile_now,
            compile_after=compile_after_runs(args.compile),
            **common,
        )
    suffix = f".{args.image_format}"
    if args.camera is not None:
        summary = run_camera(
            segmenter,
            frames,
            show=args.show,
            out_dir=args.out,
            image_suffix=suffix,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    else:
        summary = predict_frames(
            segmenter,
            frames,
            args.out,
            batch_size=args.batch_size,
            outputs=args.outputs,
            image_suffix=suffix,
            alpha=args.alpha,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    rate = summary.frames / summary.seconds if summary.seconds else 0.0
    print(
        f"{summary.frames} frames in {summary.seconds:.1f} s ({rate:.2f} frames/s), {len(summary.files)} files "
        f"written under {summary.out_dir}"
    )
    return 0
