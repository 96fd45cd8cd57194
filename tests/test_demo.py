"""The README's main job, in its quick form: generate scenes, train RGB-D and RGB-only, evaluate, write outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rgbxseg.cli import main


def test_quick_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--compare-rgb-only", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "rgbd     mIoU" in printed and "rgb_only mIoU" in printed and "otherstructure IoU" in printed

    report = json.loads((out / "demo_report.json").read_text())
    assert set(report["runs"]) == {"rgbd", "rgb_only"}
    assert report["runs"]["rgb_only"]["x_modality"] == "none"
    assert report["protocol"]["scales"] == [0.5]
    for run in report["runs"].values():
        assert 0 < run["metrics"]["miou"] <= 1 and len(run["metrics"]["per_class"]) == 40
    for name in ("rgbd", "rgb_only"):
        for artefact in ("model.safetensors", "curves.png", "metrics.csv"):
            assert (out / name / artefact).is_file()
    panels = sorted((out / "predictions" / "panels").glob("*.png"))
    assert len(panels) == 4
    panel = np.asarray(Image.open(panels[0]))
    assert panel.shape[0] == 240 and panel.shape[1] > 5 * 320  # RGB | depth | truth | RGB-D | RGB-only
    labels = np.asarray(Image.open(out / "predictions" / "rgbd" / panels[0].name))
    assert labels.shape == (240, 320) and labels.min() >= 1 and labels.max() <= 40

    # A second run reuses the generated scenes and replaces the runs.
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    assert not (out / "rgb_only").exists()


def test_the_demo_refuses_a_folder_of_the_users_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rgbd").mkdir()
    (tmp_path / "rgbd" / "mine.txt").write_text("a folder of the user's that happens to share a run's name")
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"rgbxseg demo: error: {tmp_path} holds files that are not a demo's (notes.txt); the demo replaces its run "
        "folders there, so give it a new folder or one an earlier demo wrote (--out)\n"
    )
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine.txt", "notes.txt", "rgbd"]
