"""Training throughput (images/s) of a model on synthetic 240×320 RGB-D frames, through the real training engine.

    python benchmarks/train_throughput.py                         # AsymFormer B0-T, crops 224x320 and 256x320
    python benchmarks/train_throughput.py --crops 128x160 --batch 8 --amp bf16

240×320 frames are not a multiple of 32 in height, so the crops are the nearest valid sizes (256×320 pads the
frame with void). Throughput is the median over the epochs after the first (which includes start-up); the result
is written as JSON and Markdown under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from report import machine_slug, write_markdown_and_json

from rgbxseg.bench import device_name
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.engine.config import load_config
from rgbxseg.engine.train import train


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="asymformer_b0_t")
    parser.add_argument("--crops", nargs="+", default=["224x320", "256x320"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="training frames (one epoch)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        data = generate_synthetic_dataset(Path(work) / "data", args.frames, 4, 240, 320, seed=0, progress=False)
        for crop in args.crops:
            overrides = [
                f"data.root={data}", f"output_dir={Path(work) / crop}", f"model.name={args.model}",
                f"data.crop_size=[{crop.replace('x', ',')}]", "data.scale_range=[1.0,1.0]",
                f"data.batch_size={args.batch}", f"epochs={args.epochs}", f"amp={args.amp}", "checkpoint_every=1000",
                "eval.scales=[1.0]",
            ]  # fmt: skip
            result = train(load_config("synthetic_quick", overrides), progress=False)
            speeds = [row["images_per_second"] for row in result.history[1:]]
            rows.append(
                {"crop": crop, "batch": args.batch, "amp": args.amp, "images_per_second": statistics.median(speeds)}
            )
            print(
                f"{args.model} crop {crop} batch {args.batch} amp {args.amp}: {rows[-1]['images_per_second']:.2f} img/s"
            )
    machine = f"{device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads"
    command = shlex.join(["python", "benchmarks/train_throughput.py", *argv])
    table = "\n".join(f"| {r['crop']} | {r['batch']} | {r['amp']} | {r['images_per_second']:.2f} |" for r in rows)
    write_markdown_and_json(
        args.out / f"train_throughput_{machine_slug(machine)}",
        f"# Training throughput: {args.model}\n\nMachine: {machine}; torch {torch.__version__}.\n\n"
        f"Command: `{command}`\n\n| crop | batch | amp | images/s |\n|---|---|---|---|\n{table}\n",
        {"machine": machine, "command": command, "model": args.model, "rows": rows},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
