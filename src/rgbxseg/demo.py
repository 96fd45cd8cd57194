"""``rgbxseg demo``: the package's main job on its embedded default data, end to end on a CPU — an application of
training (:mod:`rgbxseg.engine`) and drawing (:mod:`rgbxseg.inference.visualize`) together.

Generates synthetic indoor RGB-D scenes, trains AsymFormer B0-T on them from scratch, evaluates it, and writes colour
predictions, training curves and a report. With ``compare_rgb_only`` the same network is also trained with its depth
input replaced by zeros, which shows what depth adds (the scenes contain structures that only depth reveals).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .data.dataset import RGBXDataset
from .data.synthetic import generate_synthetic_dataset
from .engine.config import load_config
from .engine.evaluate import EvalProtocol, model_inputs, predict_scores
from .engine.robustness import RobustnessReport, comparison_table, evaluate_robustness, robustness_cases
from .engine.train import TrainResult, train
from .errors import some_of
from .inference.visualize import colorize_labels, depth_colormap, label_image, save_image, side_by_side
from .io import OutputExistsError, atomic_write_path
from .models.base import SegmentationModel


@dataclass(frozen=True)
class DemoPreset:
    config: str
    num_train: int
    num_test: int
    predictions: int
    data_dir: str


PRESETS = {
    "full": DemoPreset("synthetic_demo", num_train=300, num_test=60, predictions=12, data_dir="data"),
    "quick": DemoPreset("synthetic_quick", num_train=48, num_test=16, predictions=4, data_dir="data-quick"),
}
FRAME_SIZE = (240, 320)
RUNS = {"rgbd": "depth", "rgb_only": "none", "rgbd_dropout": "depth"}
"""Run folder → the model's second input."""
RUN_OVERRIDES = {"rgbd_dropout": ("data.drop_x=0.3",)}
"""Config overrides of a run besides the common ones: depth dropped from 30 % of the training samples."""
ROBUSTNESS_NAME = "robustness"
"""``robustness.json`` / ``robustness.md``: the robustness tables of ``--robustness``."""
REPORT_NAME = "demo_report.json"
DEMO_ENTRIES = frozenset(
    {
        *RUNS,
        "predictions",
        REPORT_NAME,
        f"{ROBUSTNESS_NAME}.json",
        f"{ROBUSTNESS_NAME}.md",
        *(preset.data_dir for preset in PRESETS.values()),
    }
)
"""Everything a demo writes in its folder: a folder that holds anything else is not a demo's, and is refused."""


def _check_demo_folder(out: Path) -> None:
    """Refuse an ``out`` that holds something a demo did not write: a demo replaces its run folders."""
    others = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES) if out.is_dir() else []
    if others:
        raise OutputExistsError(
            f"{out} holds files that are not a demo's ({some_of(others, 3)}); the demo replaces its run folders "
            "there, so give it a new folder or one an earlier demo wrote (--out)"
        )


DEPTH_ONLY_CLASS = "otherstructure"
"""The synthetic class (pillars, ledges, plinths) whose colour is that of what is behind it."""


@dataclass
class DemoResult:
    output_dir: Path
    seconds: float
    runs: dict[str, TrainResult] = field(default_factory=dict)
    report: Path | None = None
    robustness: dict[str, RobustnessReport] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"demo finished in {self.seconds / 60:.1f} min; outputs in {self.output_dir}"]
        for name, run in self.runs.items():
            metrics = run.metrics
            depth_only = metrics.iou[metrics.class_names.index(DEPTH_ONLY_CLASS)]
            lines.append(
                f"  {name:<8} mIoU {metrics.miou * 100:5.2f}  pixel acc {metrics.pixel_accuracy * 100:5.2f}  "
                f"{DEPTH_ONLY_CLASS} IoU {depth_only * 100:5.2f}  ({run.images_per_second:.1f} img/s training)"
            )
        if self.robustness:
            lines += ["", "robustness (mIoU %, test split):", comparison_table(self.robustness)]
        return "\n".join(lines)


def _write_predictions(
    models: dict[str, SegmentationModel], dataset: RGBXDataset, protocol: EvalProtocol, out: Path, count: int
) -> None:
    """Label PNG per model and a panel RGB | depth | ground truth | prediction(s) for the first test frames."""
    palette = dataset.class_set.palette_array()
    for index in range(min(count, len(dataset))):
        raw = dataset.load(index)
        tensors = {key: value[None] for key, value in dataset.to_tensors(raw).items() if key != "id"}
        columns = [raw["rgb"], depth_colormap(raw["depth"]), colorize_labels(raw["label"], palette)]
        for name, model in models.items():
            rgb, x = model_inputs(tensors, RUNS[name], torch.device("cpu"), model.x_channels)
            with torch.inference_mode():
                scores = predict_scores(model.eval(), rgb, x, protocol, model.input_multiple, model.input_spec.min_size)
                labels = (scores.argmax(1)[0] + 1).numpy().astype(np.uint8)
            save_image(label_image(labels, palette), out / name / f"{raw['id']}.png")
            columns.append(colorize_labels(labels, palette))
        save_image(side_by_side(*columns), out / "panels" / f"{raw['id']}.png")


def _report(result: DemoResult, preset: DemoPreset, protocol: EvalProtocol) -> dict[str, Any]:
    return {
        "seconds": result.seconds,
        "data": {"frames": {"train": preset.num_train, "test": preset.num_test}, "size": list(FRAME_SIZE)},
        "protocol": {**protocol.describe(), "panels": "RGB | depth | ground truth | " + " | ".join(result.runs)},
        "runs": {
            name: {
                "x_modality": RUNS[name],
                "weights": str(run.weights),
                "training_images_per_second": run.images_per_second,
                "epochs": run.epochs,
                "metrics": run.metrics.to_dict(),
            }
            for name, run in result.runs.items()
        },
    }


def run_demo(
    output_dir: str | Path = "demo_output",
    *,
    quick: bool = False,
    compare_rgb_only: bool = False,
    robustness: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Generate → train → evaluate → predict, in ``output_dir`` (its run folders are replaced; data is reused; a folder
    that holds anything else is refused). ``robustness`` also trains the network with depth dropout
    (``rgbd_dropout``) and evaluates both RGB-D runs under every robustness case, side by side."""
    started = time.perf_counter()
    out = Path(output_dir)
    _check_demo_folder(out)
    preset = PRESETS["quick" if quick else "full"]
    data = generate_synthetic_dataset(
        out / preset.data_dir, preset.num_train, preset.num_test, *FRAME_SIZE, seed=seed, progress=progress
    )
    for folder in (*RUNS, "predictions"):  # a demo run always starts fresh; its data is reused
        shutil.rmtree(out / folder, ignore_errors=True)
    for name in (f"{ROBUSTNESS_NAME}.json", f"{ROBUSTNESS_NAME}.md"):
        (out / name).unlink(missing_ok=True)
    result = DemoResult(out, 0.0)
    names = ["rgbd", *(["rgb_only"] if compare_rgb_only else []), *(["rgbd_dropout"] if robustness else [])]
    for name in names:
        overrides = [f"data.root={data}", f"output_dir={out / name}", f"seed={seed}", f"data.x_modality={RUNS[name]}"]
        config = load_config(preset.config, [*overrides, *RUN_OVERRIDES.get(name, ())])
        if progress:
            tqdm.write(f"training {config.model.name} ({name}) for {config.epochs} epochs on {data}")
        result.runs[name] = train(config, progress=progress)
    models = {name: run.model for name, run in result.runs.items()}
    protocol = EvalProtocol(scales=config.eval.scales, flip=config.eval.flip)
    test_set = RGBXDataset(data, config.data.val_split, ("depth",), input_spec=models["rgbd"].input_spec)
    _write_predictions(models, test_set, protocol, out / "predictions", preset.predictions)
    if robustness:
        for name in ("rgbd", "rgbd_dropout"):
            if progress:
                tqdm.write(f"robustness of {name}: {len(robustness_cases())} cases on the test split")
            result.robustness[name] = evaluate_robustness(
                models[name], test_set, num_classes=test_set.num_classes, class_names=test_set.class_set.names,
                seed=seed, protocol=protocol, progress=progress,
            )  # fmt: skip
        with atomic_write_path(out / f"{ROBUSTNESS_NAME}.json") as tmp:
            tmp.write_text(json.dumps({name: r.to_dict() for name, r in result.robustness.items()}, indent=2))
        with atomic_write_path(out / f"{ROBUSTNESS_NAME}.md") as tmp:
            tmp.write_text(comparison_table(result.robustness) + "\n")
    result.seconds = time.perf_counter() - started
    result.report = out / REPORT_NAME
    with atomic_write_path(result.report) as tmp:
        tmp.write_text(json.dumps(_report(result, preset, protocol), indent=2))
    return result
