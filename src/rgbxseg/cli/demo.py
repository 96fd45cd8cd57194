"""``rgbxseg demo``: synthetic RGB-D scenes → train AsymFormer on the CPU → evaluate → colour predictions."""

from __future__ import annotations

import argparse

from ..demo import run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job on the embedded default data: generate scenes, train, evaluate, write predictions",
        description="About 7 minutes on 2 CPU cores (--quick: about 1 minute); --compare-rgb-only doubles training; "
        "--robustness doubles it too and adds about 4 minutes of evaluation.",
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run (a smoke test)")
    parser.add_argument(
        "--compare-rgb-only", action="store_true", help="also train the same network without depth and compare"
    )
    parser.add_argument(
        "--robustness",
        action="store_true",
        help="also train with depth dropout and compare both under missing and noisy modalities and sensor failures",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and the training (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        args.out,
        quick=args.quick,
        compare_rgb_only=args.compare_rgb_only,
        robustness=args.robustness,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(result.summary())
    print(f"predictions: {result.output_dir / 'predictions'}  curves: {result.output_dir / 'rgbd' / 'curves.png'}")
    print(f"report: {result.report}")
    return 0
