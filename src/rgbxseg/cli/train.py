"""``rgbxseg train``: train a model from a YAML config (under ``torchrun`` for several processes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..engine.config import load_config
from ..engine.train import AMP_PRECISIONS, CHECKPOINT_NAME, train
from .prepare import INTERRUPTED


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
        action="extend",  # a second --set adds to the first instead of replacing it
        default=[],
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optim.lr=1e-4; checked as the file's values are, and errors name the override",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    parser.add_argument("--amp", choices=tuple(AMP_PRECISIONS), help="mixed precision (overrides the config)")
    parser.add_argument(
        "--output-dir",
        help="where checkpoints, logs and weights go: a new or empty folder, or the run to --resume (overrides the "
        "config)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.amp:
        overrides.append(f"amp={args.amp}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_config(args.config, overrides)
    try:
        result = train(config, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt:  # Ctrl-C: what to do next, not a traceback (an unfinished write removed its temp file)
        checkpoint = Path(config.output_dir) / CHECKPOINT_NAME
        then = (
            f"continue from {checkpoint} with the same command and --resume"
            if checkpoint.is_file()
            else "there was no checkpoint yet; run the same command again to start over"
        )
        print(f"rgbxseg train: interrupted; {then}", file=sys.stderr)
        return INTERRUPTED
    print(f"{result.summary()}\nweights: {result.weights}\ncheckpoint: {result.checkpoint}")
    return 0
