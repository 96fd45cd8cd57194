"""Arguments shared by the commands: the ``--weights`` / ``--model`` pair, sizes given as HxW."""

from __future__ import annotations

import argparse

from ..models.base import SegmentationModel
from ..models.factory import create_model, load_model
from ..models.registry import list_models


def add_model_arguments(parser: argparse.ArgumentParser, weights_required: bool) -> None:
    parser.add_argument(
        "--weights",
        required=weights_required,
        help="weights file (rgbxseg safetensors, official or training checkpoint; predict and eval also take an int8 "
        "file from rgbxseg quantize)",
    )
    parser.add_argument(
        "--model",
        choices=list_models(),
        metavar="NAME",
        help="registered model name; needed for weights without rgbxseg metadata"
        + ("" if weights_required else ", or alone for random weights"),
    )


def model_from_args(args: argparse.Namespace) -> SegmentationModel:
    """The model of ``--weights`` (named by its metadata or ``--model``), or a randomly initialised ``--model``."""
    if args.weights:
        return load_model(args.weights, args.model)
    if not args.model:
        raise ValueError("give --weights (and --model for files without rgbxseg metadata) or --model")
    return create_model(args.model).eval()


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    try:
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 480x640, got {text!r}") from None
