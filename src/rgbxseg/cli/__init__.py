"""The ``rgbxseg`` console script. Each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import RgbxsegError
from ..version import __version__
from . import bench, check_dataset, demo, evaluate, export, info, predict, prepare, quantize, train

COMMANDS = (demo, info, prepare, check_dataset, train, evaluate, predict, quantize, export, bench)
"""Modules with ``register(subparsers)``; each registers one subcommand and sets ``handler``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rgbxseg", description="Real-time RGB-D / RGB-X semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"rgbxseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (train and prepare add how to resume)
        if args.debug:
            raise
        print(f"rgbxseg {args.command}: interrupted; every file was either completed or not written", file=sys.stderr)
        return prepare.INTERRUPTED
    # ImportError: a missing optional dependency or backend, with the extra that installs it.
    except (RgbxsegError, ValueError, KeyError, OSError, ImportError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"rgbxseg {args.command}: error: {message}", file=sys.stderr)
        return 2
