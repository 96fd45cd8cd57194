"""Time of ``prepare_nyuv2`` on a synthetic 1449-frame ``nyu_depth_v2_labeled.mat`` in the real HDF5 layout.

    python benchmarks/prepare_nyuv2.py [--height 12 --width 16] [--json benchmarks/results/prepare_nyuv2_12x16.json]

The .mat is written frame block by frame block (uncompressed HDF5, so the full 480×640 file is ~5.8 GB on disk).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from report import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from data_helpers import make_nyuv2_arrays, write_matlab_v73  # the tests' writers of MATLAB files
from rgbxseg.data import prepare_nyuv2

FRAMES, BLOCK = 1449, 64


def write_mat(path: Path, height: int, width: int) -> None:
    """The labelled-NYUv2 arrays with MATLAB's reversed axis order, filled in blocks of frames."""

    def build(mat: h5py.File) -> None:
        frames = (FRAMES, width, height)
        shapes = {"images": ((FRAMES, 3, width, height), np.uint8), "depths": (frames, np.float32),
                  "rawDepths": (frames, np.float32), "labels": (frames, np.uint16)}  # fmt: skip
        datasets = {name: mat.create_dataset(name, shape, dtype) for name, (shape, dtype) in shapes.items()}
        for start in range(0, FRAMES, BLOCK):
            count = min(BLOCK, FRAMES - start)
            block = make_nyuv2_arrays(height, width, seed=start, frames=count)
            datasets["images"][start : start + count] = block["images"].transpose(0, 3, 2, 1)
            for name in ("depths", "rawDepths", "labels"):
                datasets[name][start : start + count] = block[name].transpose(0, 2, 1)

    write_matlab_v73(path, build)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=12)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the .mat and the output")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        mat = Path(tmp) / "nyu_depth_v2_labeled.mat"
        started = time.perf_counter()
        write_mat(mat, args.height, args.width)
        write_seconds = time.perf_counter() - started
        summary = prepare_nyuv2(mat, Path(tmp) / "nyuv2", progress=False)
        results = {
            "frames": FRAMES,
            "size": [args.height, args.width],
            "mat_bytes": mat.stat().st_size,
            "mat_write_seconds": round(write_seconds, 1),
            "prepare_seconds": round(summary.seconds, 2),
            "counts": dict(summary.counts),
            "includes": "md5 of the .mat, 6 PNGs per frame (rgb, depth, depth_raw, labels 40/13/894), validation",
        }
    publish(results, args.json, h5py=h5py.__version__)


if __name__ == "__main__":
    main()
