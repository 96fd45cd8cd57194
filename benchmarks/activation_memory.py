"""Peak memory of ``Segmenter.predict`` per pixel, per registered model: the data behind the memory guard.

python benchmarks/activation_memory.py [--models asymformer_b0_t ...] [--json results.json]

Each measurement runs in a fresh process (fp32, CPU, batch 1, random weights) and reads the growth of the process
peak RSS (VmHWM) over the RSS once the model and the input arrays exist. Slopes between two frame sizes, so that fixed
costs drop out: the frame's own arrays (inputs, full-resolution logits, labels) with ``size_policy="resize"`` to a
64×64 network, at 40 and 80 classes (a fixed part and a part per class); then per model the network's activations,
``size_policy="pad"`` minus that frame part. The printed values go into ``rgbxseg/inference/memory.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from report import publish

from rgbxseg.bench import PeakMemory
from rgbxseg.inference import Segmenter
from rgbxseg.inputs import ENCODINGS
from rgbxseg.models.factory import create_model
from rgbxseg.models.registry import get_model_spec, list_models

PAD_SIZES = ((480, 640), (768, 1024))
RESIZE_SIZES = ((960, 1280), (1920, 2560))
RESIZE_NETWORK = (64, 64)


FRAME_MODEL = "asymformer_b0_t_cat"
FRAME_CLASSES = (40, 80)


def measure_once(name: str, classes: int, policy: str, height: int, width: int) -> float:
    """Peak RSS growth in bytes of one ``predict`` call (run in this process)."""
    torch.set_num_threads(2)
    kwargs = {"size_policy": "resize", "input_size": RESIZE_NETWORK} if policy == "resize" else {}
    segmenter = Segmenter(create_model(name, num_classes=classes), max_pixels=None, **kwargs)
    spec = ENCODINGS[segmenter.input_spec.x.encoding]
    rgb = np.full((height, width, 3), 128, np.uint8)
    x = np.full((height, width, spec.channels) if spec.channels > 1 else (height, width), 100, spec.dtype)
    peak = PeakMemory(torch.device("cpu"))
    peak.reset()
    segmenter.predict(rgb, x)
    mib, _ = peak.peak_mib()
    return mib * 2**20


def slope(name: str, classes: int, policy: str, sizes: tuple[tuple[int, int], ...]) -> float:
    """Bytes per pixel between two frame sizes, each measured in a fresh process."""
    peaks = []
    for height, width in sizes:
        command = [sys.executable, __file__, "--one", name, str(classes), policy, str(height), str(width)]
        peaks.append(float(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
    (h1, w1), (h2, w2) = sizes
    return (peaks[1] - peaks[0]) / (h2 * w2 - h1 * w1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--one", nargs=5, metavar=("MODEL", "K", "POLICY", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, classes, policy, height, width = args.one
        print(measure_once(name, int(classes), policy, int(height), int(width)))
        return
    few, many = (slope(FRAME_MODEL, classes, "resize", RESIZE_SIZES) for classes in FRAME_CLASSES)
    per_class = (many - few) / (FRAME_CLASSES[1] - FRAME_CLASSES[0])
    frame = {"fixed": round(few - FRAME_CLASSES[0] * per_class, 1), "per_class": round(per_class, 2)}
    print(f"frame: {frame}", file=sys.stderr, flush=True)
    network = {}
    for name in args.models:
        classes = get_model_spec(name).default_num_classes
        total = slope(name, classes, "pad", PAD_SIZES)
        network[name] = round(total - frame["fixed"] - classes * frame["per_class"])
        print(f"    {name!r}: {network[name]},", file=sys.stderr, flush=True)
    results = {
        "frame_bytes_per_pixel": frame,
        "network_bytes_per_pixel": network,
        "protocol": f"fp32 CPU, batch 1, Segmenter.predict, peak RSS growth (VmHWM) in fresh processes; frame: "
        f"{FRAME_MODEL} resized to {RESIZE_NETWORK[0]}×{RESIZE_NETWORK[1]}, slope {RESIZE_SIZES}, classes "
        f"{FRAME_CLASSES}; network: pad slope {PAD_SIZES} minus the frame part",
    }
    publish(results, args.json, torch=torch.__version__, numpy=np.__version__)


if __name__ == "__main__":
    main()
