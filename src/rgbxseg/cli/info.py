"""``rgbxseg info``: registered models, their measured parameter counts (total and trainable), inputs, outputs,
pretrained sources and their papers' numbers."""

from __future__ import annotations

import argparse
import json

from ..bench import count_macs_on_meta
from ..inputs import InputSpec
from ..models.registry import describe_model, get_model_spec, list_models
from ._models import parse_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="list registered models with parameters and paper facts")
    parser.add_argument("models", nargs="*", help="model names (default: all)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="count parameters for a dataset of this many classes (a model with a void output gets one more output)",
    )
    parser.add_argument(
        "--macs",
        type=parse_size,
        metavar="HxW",
        help="also count MACs at batch 1 and this size (on the meta device: fast)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _format_facts(facts: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:g}" for key, value in facts.items()) or "-"


def _classes(outputs: int, void_logit: bool) -> str:
    if void_logit:
        return f"{outputs} outputs: void (never predicted) + {outputs - 1} classes"
    return f"{outputs} classes"


def _outputs(name: str, classes: int | None) -> int | None:
    return None if classes is None else get_model_spec(name).outputs_for(classes)


def run(args: argparse.Namespace) -> int:
    names = args.models or list_models()
    rows = [describe_model(name, _outputs(name, args.num_classes)) for name in names]
    if args.macs:
        for row in rows:
            macs = count_macs_on_meta(row["name"], *args.macs, num_classes=row["num_classes"])
            row["macs"] = {
                "input": list(args.macs),
                "conv_linear": macs.conv_linear_macs,
                "attention": macs.attention_macs,
            }
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        paper = row["paper"]
        paper_params = f"{paper['params_m']:.1f} M" if paper["params_m"] is not None else "-"
        height, width = paper["gmacs_input"]
        gmacs = f"{paper['gmacs']:g} GMACs at {height}×{width}" if paper["gmacs"] else "-"
        trainable = paper.get("trainable_params_m")
        paper_trainable = f" (paper {trainable:g} M)" if trainable is not None else ""
        print(f"{row['name']}\n  {row['summary']}")
        print(
            f"  parameters: {row['params']:,} total ({row['params'] / 1e6:.2f} M measured, paper {paper_params}), "
            f"{row['trainable_params']:,} trainable{paper_trainable}; {_classes(row['num_classes'], row['void_logit'])}"
        )
        print(f"  inputs: {InputSpec.from_dict(row['input_spec']).describe()}")
        prediction = row["prediction_output"]
        outputs = ", ".join(f"{name} (prediction)" if name == prediction else name for name in row["outputs"])
        print(f"  outputs: {outputs}")
        if "macs" in row:
            macs = row["macs"]
            height, width = macs["input"]
            print(
                f"  MACs at 1×{height}×{width}: {(macs['conv_linear'] + macs['attention']) / 1e9:.2f} G "
                f"({macs['conv_linear'] / 1e9:.2f} Conv/Linear + {macs['attention'] / 1e9:.2f} attention)"
            )
        for part, source in row["pretrained"].items():
            print(f"  pretrained {part}: {source}")
        print(f"  paper: compute {gmacs}; mIoU {_format_facts(paper['miou'])}; FPS {_format_facts(paper['fps'])}")
        print(f"  source: {paper['source']}")
    return 0
