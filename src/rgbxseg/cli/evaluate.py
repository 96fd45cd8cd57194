"""``rgbxseg eval``: mIoU, accuracies and per-class IoU of a weights file on a dataset split."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..engine.evaluate import EVAL_PROTOCOLS, LOGIT_UPSAMPLING, MULTI_SCALE_OF, VOID_PREDICTIONS, evaluate_weights
from ..engine.metrics import ABSENT_CLASSES
from ..engine.robustness import SUITES, robustness_weights
from ..inputs import CHANNEL_ORDERS
from ..io import refuse_existing
from ..models.aot import AUTO_COMPILE_MIN_FRAMES, COMPILE_CACHE_ENV, COMPILE_MODES
from ..models.registry import INPUT_SPECS
from ._models import add_model_arguments, parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate weights on a canonical dataset (mIoU, accuracies, per class)")
    add_model_arguments(parser, weights_required=True)
    parser.add_argument("--data", required=True, help="root of a canonical dataset (see rgbxseg prepare)")
    parser.add_argument("--split", default="test", help="split list to evaluate (default: test)")
    parser.add_argument(
        "--protocol",
        choices=sorted(EVAL_PROTOCOLS),
        default="default",
        help="a published protocol to start from: asymformer-ms (×1.0, 1.2, 1.4, logits summed), asymformer-official "
        "(the 2023 eval.py exactly: frames at 480×640, absent classes 0; with --multi-scale MS5_eval.py), "
        "geminifusion (shorter side 480 rounded up to 32, bicubic logits), dplnet-ms (×0.5…1.5 floored to 32, flips, "
        "softmax summed), ktb (KTB's val_mm.py: shorter side 480, then both sides resized up to a multiple of 32, "
        "absent classes 0; --shorter-side 720 for PST900, 1024 for DeLiVER; with --multi-scale ktb-ms: ×0.5…1.75 "
        "rounded up to 32, flips, softmax summed); the options below change it",
    )
    parser.add_argument(
        "--multi-scale",
        action="store_true",
        help="the same as --protocol asymformer-ms; with --protocol asymformer-official: asymformer-official-ms; with "
        "--protocol ktb: ktb-ms",
    )
    parser.add_argument("--scales", type=float, nargs="+", help="general input scales")
    parser.add_argument("--flip", action="store_true", help="add horizontally flipped predictions")
    parser.add_argument("--fusion", choices=("logits", "softmax"), help="what is summed over runs")
    parser.add_argument("--window", type=parse_size, help="sliding-window inference with this HxW window")
    parser.add_argument("--stride", type=parse_size, help="sliding-window stride HxW (default: the window)")
    parser.add_argument(
        "--shorter-side",
        type=int,
        help="evaluate with the shorter side resized to this (and ↑32; ktb: the config's eval size)",
    )
    parser.add_argument("--logit-upsampling", choices=LOGIT_UPSAMPLING, help="logits to the input size")
    parser.add_argument(
        "--void-predictions",
        choices=VOID_PREDICTIONS,
        help="models with a void logit (DPLNet): never (default: every labelled pixel scored) or dropped (the "
        "official DPLNet metric: void may win the arg-max and those pixels are left out)",
    )
    parser.add_argument(
        "--output", help="named output to score (default: the model's prediction; e.g. a single-modality head)"
    )
    parser.add_argument(
        "--x-modality", help="second input: the one the weights read (default), or 'none' for zeros (RGB only)"
    )
    parser.add_argument("--label-set", help="label set of the dataset (default: its default set)")
    parser.add_argument(
        "--input-spec", choices=sorted(INPUT_SPECS), help="another registered input convention for the weights"
    )
    parser.add_argument(
        "--absent-classes",
        choices=ABSENT_CLASSES,
        help="classes without a score (absent from prediction and labels): skip them in the means (default) or count "
        "them as 0 (the official AsymFormer metric)",
    )
    parser.add_argument(
        "--channel-order",
        choices=CHANNEL_ORDERS,
        help="feed the colour channels in this order instead of the weights' (e.g. to check which order a "
        "checkpoint without metadata was trained on)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument(
        "--json",
        help="write the report (protocol + metrics) to this JSON file; its scores are fractions in [0, 1] where the "
        "console prints percent (its metrics.units says so)",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="auto",
        help="run the prediction through the inference form compiled ahead of time (one package per input size, "
        f"cached across runs; the first compile of a size takes a minute or more). auto (default): for splits of "
        f"{AUTO_COMPILE_MIN_FRAMES} or more images on the CPU, compiling a size the second time it runs",
    )
    parser.add_argument(
        "--compile-cache",
        metavar="DIR",
        help=f"folder of the compiled packages (default: ${COMPILE_CACHE_ENV} or ~/.cache/rgbxseg/compiled)",
    )
    parser.add_argument("--confusion", help="write the confusion-matrix plot to this PNG")
    robustness = parser.add_argument_group("robustness (missing and noisy modalities)")
    robustness.add_argument(
        "--robustness",
        nargs="*",
        choices=SUITES,
        metavar="SUITE",
        help=f"evaluate clean and under the sensor-failure benchmark's cases instead: {', '.join(SUITES)} (entire or "
        "random missing modality, noisy modality; default all); prints a table, --json writes every case",
    )
    robustness.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default 0)")
    robustness.add_argument("--chart", help="write a bar chart of mIoU per case to this PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    refuse_existing(args.json, args.confusion, args.chart, overwrite=args.overwrite)
    if args.multi_scale and args.protocol not in MULTI_SCALE_OF:
        raise ValueError(f"--multi-scale is for --protocol {' or '.join(MULTI_SCALE_OF)}; {args.protocol} has its own "
                         "scales (change them with --scales)")  # fmt: skip
    base = EVAL_PROTOCOLS[MULTI_SCALE_OF[args.protocol] if args.multi_scale else args.protocol]
    changes = {
        "scales": tuple(args.scales) if args.scales else None,
        "flip": args.flip or None,
        "fusion": args.fusion,
        "window": args.window,
        "stride": args.stride,
        "shorter_side": args.shorter_side,
        "logit_upsampling": args.logit_upsampling,
        "void_predictions": args.void_predictions,
        "absent_classes": args.absent_classes,
    }
    protocol = replace(base, **{key: value for key, value in changes.items() if value is not None})
    common = {
        "split": args.split, "model_name": args.model, "protocol": protocol, "output": args.output,
        "x_modality": args.x_modality, "label_set": args.label_set, "input_spec": args.input_spec,
        "channel_order": args.channel_order, "device": args.device, "batch_size": args.batch_size,
        "workers": args.workers, "json_path": args.json, "progress": not args.quiet,
    }  # fmt: skip
    if args.robustness is not None:
        if args.confusion:
            raise ValueError("--confusion plots one run; with --robustness use --chart (mIoU per case)")
        suites = args.robustness or SUITES
        robust = robustness_weights(args.weights, args.data, suites=suites, seed=args.seed, chart_png=args.chart,
                                    **common)  # fmt: skip
        print(robust.markdown())
        return 0
    if args.chart:
        raise ValueError("--chart needs --robustness")
    report = evaluate_weights(
        args.weights,
        args.data,
        confusion_png=args.confusion,
        compile=args.compile,
        compile_cache=args.compile_cache,
        **common,
    )
    print(report.metrics.table())
    window = f", sliding window {protocol.window}" if protocol.window else ""
    print(
        f"scored output: {report.protocol['scored_output']}; protocol: scales {list(protocol.scales)}, "
        f"flip {protocol.flip}, {protocol.fusion} summed{window}"
        + (f"; void predictions {protocol.void_predictions}" if report.protocol.get("void_logit") else "")
    )
    return 0
