"""``rgbxseg check-dataset``: validate a canonical dataset tree and print its statistics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import InvalidDatasetError, validate_dataset
from ..data.errors import printable


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
    """Exit code 2 with one error line per problem (each names its file and the fix) when the dataset is bad."""
    try:
        report = validate_dataset(args.root, progress=not args.quiet)
    except InvalidDatasetError as err:
        for problem in err.problems:
            print(f"rgbxseg check-dataset: error: {printable(problem)}", file=sys.stderr)
        return 2
    print(f"{report}; all files readable and consistent with meta.json")
    for name, splits in report.pixel_counts.items():
        for split, counts in splits.items():
            labelled = sum(counts[1:])
            present = sum(1 for count in counts[1:] if count)
            void = counts[0] / max(sum(counts), 1)
            print(f"  labels {name}, {split}: {present} classes present, {labelled} labelled pixels, {void:.1%} void")
    return 0
