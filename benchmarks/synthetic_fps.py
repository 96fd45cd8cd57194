"""Frames per second of the synthetic scene generator, rendering alone and end to end (PNG writing, validation).

python benchmarks/synthetic_fps.py [--frames 300] [--height 240] [--width 320] [--json results.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from report import publish

from rgbxseg.data.synthetic import generate_synthetic_dataset, render_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    started = time.perf_counter()
    for seed in range(args.frames // 3):
        render_scene(seed, args.height, args.width)
    render_fps = (args.frames // 3) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        num_test = args.frames // 5
        generate_synthetic_dataset(Path(tmp) / "synthetic", args.frames - num_test, num_test, args.height, args.width,
                                   progress=False)  # fmt: skip
        seconds = time.perf_counter() - started
    results = {
        "frames": args.frames,
        "size": [args.height, args.width],
        "render_only_fps": round(render_fps, 2),
        "end_to_end_seconds": round(seconds, 2),
        "end_to_end_fps": round(args.frames / seconds, 2),
        "end_to_end_frames_per_minute": round(60 * args.frames / seconds),
        "includes": "scene generation, ray casting, PNG writing, validation of the written tree",
    }
    publish(results, args.json, numpy=np.__version__)


if __name__ == "__main__":
    main()
