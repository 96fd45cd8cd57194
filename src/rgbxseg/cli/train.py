"""``rgbxseg train``: train a model from a YAML config (under ``torchrun`` for several processes)."""

from __future__ import annotations

import argparse

from ..engine.config import load_config
from ..engine.train import AMP_PRECISIONS, train


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train from a config (YAML path or bundled name); run under torchrun for multi-GPU/multi-node",
        description="Examples: rgbxseg train --config asymformer_nyuv2 --set data.root=data/nyuv2 | "
        "torchrun --nproc_per_node 4 -m rgbxseg train --config my.yaml --set data.batch_size=2",
    )
    parser.add_argument("--config", required=True, help="a YAML file, or a bundled config name (asymformer_nyuv2, …)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optim.lr=1e-4",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    parser.add_argument("--amp", choices=tuple(AMP_PRECISIONS), help="mixed precision (overrides the config)")
    parser.add_argument("--output-dir", help="where checkpoints, logs and weights go (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.amp:
        overrides.append(f"amp={args.amp}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    result = train(load_config(args.config, overrides), resume=args.resume, progress=not args.quiet)
    summary = f"trained {result.epochs} epochs ({result.iterations} iterations, {result.images_per_second:.2f} img/s)"
    if result.metrics is not None:
        summary += f"; {result.metrics.miou * 100:.2f} mIoU on the validation split"
    print(f"{summary}\nweights: {result.weights}\ncheckpoint: {result.checkpoint}")
    return 0
