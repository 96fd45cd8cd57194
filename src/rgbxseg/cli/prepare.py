"""``rgbxseg prepare``: build a dataset in the canonical layout from raw downloads, other trees, or synthetic scenes.

Each sub-command parses its arguments and calls one function of :mod:`rgbxseg.data`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data import (
    import_asymformer,
    import_dformer,
    import_mfnet,
    import_pst900,
    prepare_nyuv2,
    prepare_sunrgbd,
)
from ..data.importers import DFORMER_DEPTH_ENCODINGS
from ..data.synthetic import generate_synthetic_dataset

INTERRUPTED = 130
"""The exit code after Ctrl-C (128 + SIGINT, as shells report it); every command returns it."""


@dataclass(frozen=True)
class _Subcommand:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], object]


def _nyuv2_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mat", type=Path, required=True, help="path of nyu_depth_v2_labeled.mat (2.8 GB)")
    parser.add_argument(
        "--hha",
        action="store_true",
        help="also write hha/: HHA images (disparity, height, angle with gravity estimated per frame) computed from "
        "the refined depth; about 0.3 s per frame on one core, 7 minutes more for the 1449 frames",
    )


def _sunrgbd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="the extracted SUNRGBD/ directory of SUNRGBD.zip")
    parser.add_argument("--toolbox", type=Path, required=True, help="the extracted SUNRGBDtoolbox/ directory")


def _synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=int, default=240, help="training frames (default: 240)")
    parser.add_argument("--test", type=int, default=60, help="test frames (default: 60)")
    parser.add_argument("--height", type=int, default=240, help="frame height in pixels (default: 240)")
    parser.add_argument("--width", type=int, default=320, help="frame width in pixels (default: 320)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (default: 0)")


def _tree_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", type=Path, required=True, help="root of the tree to import")


def _counted_tree_arguments(parser: argparse.ArgumentParser) -> None:
    _tree_arguments(parser)
    parser.add_argument(
        "--no-count-check", action="store_true", help="accept split sizes other than the official ones (a subset)"
    )


def _dformer_arguments(parser: argparse.ArgumentParser) -> None:
    _counted_tree_arguments(parser)
    parser.add_argument(
        "--depth-encoding",
        choices=sorted(DFORMER_DEPTH_ENCODINGS),
        default="minmax_8bit",
        help="what the depth folder holds (default: minmax_8bit, DFormer's per-image min-max PNGs; hha reads HHA/)",
    )
    parser.add_argument(
        "--classes", choices=("nyuv2_40", "sunrgbd_37"), default="nyuv2_40", help="class set (default: nyuv2_40)"
    )


def _options(args: argparse.Namespace) -> dict[str, bool]:
    return {"overwrite": args.overwrite, "progress": not args.quiet}


SUBCOMMANDS: dict[str, _Subcommand] = {
    "nyuv2": _Subcommand(
        "NYUv2 from nyu_depth_v2_labeled.mat (795/654 split; 40, 13 and 894 classes; refined and raw depth; HHA "
        "with --hha)",
        _nyuv2_arguments,
        lambda a: prepare_nyuv2(a.mat, a.out, hha=a.hha, **_options(a)),
    ),
    "sunrgbd": _Subcommand(
        "SUN RGB-D from SUNRGBD/ and SUNRGBDtoolbox/ (5285/5050 split, 37 classes)",
        _sunrgbd_arguments,
        lambda a: prepare_sunrgbd(a.root, a.toolbox, a.out, **_options(a)),
    ),
    "synthetic": _Subcommand(
        "synthetic indoor RGB-D scenes with NYU-40 labels",
        _synthetic_arguments,
        lambda a: generate_synthetic_dataset(
            a.out, a.train, a.test, a.height, a.width, a.seed, not a.quiet, overwrite=a.overwrite
        ),
    ),
    "asymformer": _Subcommand(
        "import the AsymFormer NYUv2 PNG package (images/ depths/ labels/ train.txt test.txt)",
        _counted_tree_arguments,
        lambda a: import_asymformer(a.src, a.out, check_counts=not a.no_count_check, **_options(a)),
    ),
    "dformer": _Subcommand(
        "import a DFormer/CMX tree (RGB/ Depth/ or HHA/ Label/ train.txt test.txt)",
        _dformer_arguments,
        lambda a: import_dformer(
            a.src,
            a.out,
            depth_encoding=a.depth_encoding,
            class_set=a.classes,
            check_counts=not a.no_count_check,
            **_options(a),
        ),
    ),
    "mfnet": _Subcommand(
        "import MFNet RGB-thermal (images/ or rgb/ + ther/, labels/, train.txt val.txt test.txt)",
        _tree_arguments,
        lambda a: import_mfnet(a.src, a.out, **_options(a)),
    ),
    "pst900": _Subcommand(
        "import PST900 RGB-thermal ({train,test}/{rgb,thermal,thermal_raw,labels}/)",
        _tree_arguments,
        lambda a: import_pst900(a.src, a.out, **_options(a)),
    ),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="prepare or import a dataset into the canonical layout",
        description="Write a dataset in the canonical layout (see the README's Datasets section). Interrupting is "
        "safe: the same command resumes.",
    )
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, subcommand in SUBCOMMANDS.items():
        sub = datasets.add_parser(name, help=subcommand.help, description=subcommand.help)
        subcommand.arguments(sub)
        sub.add_argument("--out", type=Path, required=True, help="output directory (new, or one to resume)")
        sub.add_argument("--overwrite", action="store_true", help="replace an earlier preparation in --out")
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
        sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        result = SUBCOMMANDS[args.dataset].run(args)
    except KeyboardInterrupt:
        print(f"rgbxseg prepare {args.dataset}: interrupted; run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    if isinstance(result, Path):  # the synthetic generator returns the dataset root
        result = f"{result}: {args.dataset} ready in {time.perf_counter() - started:.1f} s"
    print(result)
    return 0
