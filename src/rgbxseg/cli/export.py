"""``rgbxseg export onnx|tensorrt``: deployable files, checked against PyTorch."""

from __future__ import annotations

import argparse

from ..export import EXPORTERS, build_tensorrt_engine, export_onnx, require_tensorrt
from ..io import refuse_existing
from ..models.optimize import optimize_for_inference
from ._models import add_model_arguments, model_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export to ONNX (with onnxruntime parity) or a TensorRT engine")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")

    onnx = formats.add_parser(
        "onnx",
        help="ONNX with inputs rgb, depth and output logits; checked with onnxruntime",
        description="Parity: a dynamic export is run at two shapes (batch, H, W); a static one on two inputs at its "
        "shape, and onnxruntime must reject another shape. Above --tolerance the export fails and no file is left.",
    )
    add_model_arguments(onnx, weights_required=False)
    onnx.add_argument("--out", required=True, help="output .onnx file")
    onnx.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    onnx.add_argument("--opset", type=int, default=None, help="default 18 (dynamo); below 18 uses the legacy exporter")
    onnx.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    onnx.add_argument("--exporter", choices=("auto", *EXPORTERS), default="auto", help="auto: dynamo, else legacy")
    onnx.add_argument("--height", type=int, default=480)
    onnx.add_argument("--width", type=int, default=640)
    onnx.add_argument("--batch", type=int, default=1)
    onnx.add_argument("--tolerance", type=float, default=1e-4, help="max |Δ| logits onnxruntime vs PyTorch")
    onnx.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    onnx.add_argument("--quiet", action="store_true", help="no status lines on stderr while each phase runs")
    onnx.add_argument(
        "--optimize", action="store_true", help="export the inference form (folded norms, reordered decoder)"
    )
    onnx.set_defaults(handler=run_onnx)

    tensorrt = formats.add_parser(
        "tensorrt",
        help="TensorRT engine from an ONNX file (FP16, fp16-sensitive layers kept in fp32)",
        description="Needs the tensorrt package and an NVIDIA GPU. Export the ONNX first, e.g. "
        "`rgbxseg export onnx --weights W --opset 17 --out model.onnx`.",
    )
    tensorrt.add_argument("--onnx", required=True, help="input .onnx file")
    tensorrt.add_argument("--out", required=True, help="output engine file")
    tensorrt.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    tensorrt.add_argument("--fp32", action="store_true", help="build an fp32 engine instead of FP16")
    tensorrt.add_argument("--workspace-gib", type=float, default=2.0)
    tensorrt.add_argument("--height", type=int, default=480, help="engine shape for dynamic ONNX inputs")
    tensorrt.add_argument("--width", type=int, default=640)
    tensorrt.add_argument("--batch", type=int, default=1)
    tensorrt.set_defaults(handler=run_tensorrt)


def run_onnx(args: argparse.Namespace) -> int:
    refuse_existing(args.out, overwrite=args.overwrite)
    model = model_from_args(args)
    report = export_onnx(
        optimize_for_inference(model, channels_last=False) if args.optimize else model,
        args.out,
        height=args.height,
        width=args.width,
        batch=args.batch,
        opset=args.opset,
        dynamic=args.dynamic,
        exporter=args.exporter,
        check=not args.no_check,
        tolerance=args.tolerance,
        progress=not args.quiet,
    )
    print(report.describe())
    return 0


def run_tensorrt(args: argparse.Namespace) -> int:
    refuse_existing(args.out, overwrite=args.overwrite)
    require_tensorrt()
    build = build_tensorrt_engine(
        args.onnx,
        args.out,
        fp16=not args.fp32,
        workspace_gib=args.workspace_gib,
        shape=(args.batch, args.height, args.width),
    )
    print(
        f"{build.path}: TensorRT {build.tensorrt_version} {build.precision} engine in {build.seconds:.1f} s; "
        f"{len(build.fp32_layers)} layers from {len(build.fp32_nodes)} fp16-sensitive ONNX nodes kept in fp32"
    )
    return 0
