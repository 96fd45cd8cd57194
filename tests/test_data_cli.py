"""The ``prepare`` and ``check-dataset`` commands: argument wiring, messages, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rgbxseg.cli import main, prepare


def test_prepare_synthetic_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synthetic"
    argv = ["prepare", "synthetic", "--out", str(out), "--train", "3", "--test", "2", "--height", "32", "--width", "40",
            "--seed", "4", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert f"{out}: synthetic ready" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": 3, "test": 2} and meta["image_size"] == [32, 40]
    assert meta["sources"][0]["seed"] == 4
    assert main(["check-dataset", str(out), "--quiet"]) == 0
    assert "train 3, test 2 samples; sizes 32×40 (5)" in capsys.readouterr().out


def test_importer_arguments_reach_the_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "NYUDepthv2"
    for split, stem in (("train", "1"), ("test", "2")):
        for folder, array in (("RGB", np.zeros((4, 6, 3), np.uint8)), ("HHA", np.zeros((4, 6, 3), np.uint8)),
                              ("Label", np.ones((4, 6), np.uint8))):  # fmt: skip
            (src / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(src / folder / f"{stem}.png")
        (src / f"{split}.txt").write_text(f"RGB/{stem}.png Label/{stem}.png\n")
    argv = ["prepare", "dformer", "--src", str(src), "--out", str(tmp_path / "out"), "--depth-encoding", "hha",
            "--classes", "sunrgbd_37", "--no-count-check", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "sunrgbd ready (train 1, test 1); 2 samples written" in capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert set(meta["modalities"]) == {"rgb", "hha"} and meta["default_label_set"] == "37"


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nyu_depth_v2_labeled.mat"
    assert main(["prepare", "nyuv2", "--mat", str(missing), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error == f"rgbxseg prepare: error: {missing}: file is missing\n"
    assert main(["check-dataset", str(tmp_path)]) == 2
    assert "preparation did not finish" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "dformer", "--src", str(tmp_path), "--out", str(tmp_path), "--depth-encoding", "jet"])


def test_interrupt_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "generate_synthetic_dataset", interrupted)
    assert main(["prepare", "synthetic", "--out", str(tmp_path / "s")]) == prepare.INTERRUPTED
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err


def test_raw_file_readers_are_optional(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "import sys, rgbxseg.data, rgbxseg.cli; print(sorted({'h5py', 'scipy'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    mat.write_bytes(b"\0" * 64)
    assert main(["prepare", "nyuv2", "--mat", str(mat), "--out", str(tmp_path / "out")]) == 2
    assert "needs the Python package 'h5py', which is not installed: pip install 'rgbxseg[datasets]'" in (
        capsys.readouterr().err
    )
