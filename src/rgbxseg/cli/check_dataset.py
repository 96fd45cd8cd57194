"""``rgbxseg check-dataset``: validate a canonical dataset tree and print its statistics."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import validate_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-dataset",
        help="check a prepared dataset: lists against files, sizes, dtypes, label range",
        description="Read every listed sample of a canonical dataset and check it against its meta.json.",
    )
    parser.add_argument("root", type=Path, help="dataset directory (the one holding meta.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = validate_dataset(args.root, progress=not args.quiet)
    print(f"{report}; all files readable and consistent with meta.json")
    for name, splits in report.pixel_counts.items():
        for split, counts in splits.items():
            labelled = sum(counts[1:])
            present = sum(1 for count in counts[1:] if count)
            void = counts[0] / max(sum(counts), 1)
            print(f"  labels {name}, {split}: {present} classes present, {labelled} labelled pixels, {void:.1%} void")
    return 0
