"""Dataset roots are a boundary, check-dataset names every bad file, and every bad weights file is a one-line error."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import rgbxseg
from rgbxseg.cli import main
from rgbxseg.data import DatasetError, InvalidDatasetError, RGBXDataset, read_meta, validate_dataset
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.models import CheckpointError, CheckpointMismatchError
from toy_models import register_toy


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return generate_synthetic_dataset(root, num_train=2, num_test=2, height=32, width=32, progress=False)


@pytest.fixture
def root(prepared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared, tmp_path / "dataset"))


def _check(root: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``rgbxseg check-dataset``'s error lines, which it must have ended with exit code 2."""
    assert main(["check-dataset", str(root), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("rgbxseg check-dataset: error: ") for line in lines)
    return lines


# --- the dataset root is a boundary ------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../../outside/rgb/secret", "{outside}/rgb/secret"])
def test_split_list_stems_cannot_leave_the_dataset(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], escape: str
) -> None:
    outside = tmp_path / "outside"
    for folder in ("rgb", "depth", "labels"):  # a complete sample that reading it would accept
        (outside / folder).mkdir(parents=True)
        shutil.copy(root / folder / "train_00000.png", outside / folder / "secret.png")
    stem = escape.format(outside=outside)
    (root / "train.txt").write_text(f"train_00000\n{stem}\n")
    opened: list[Path] = []
    real_open = Image.open

    def recording_open(path: Path, *args: object, **kwargs: object) -> Image.Image:
        opened.append(Path(path).resolve())
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording_open)
    refusal = rf"train\.txt: lists stems that are not plain names: {re.escape(str([stem]))}.*remove directories"
    with pytest.raises(DatasetError, match=refusal):
        RGBXDataset(root)
    with pytest.raises(InvalidDatasetError, match=refusal):
        validate_dataset(root)
    lines = _check(root, capsys)
    assert len(lines) == 1 and f"{root / 'train.txt'}: lists stems that are not plain names" in lines[0]
    assert opened and all(path.is_relative_to(root.resolve()) for path in opened)  # the test samples, nothing else


def test_split_names_and_meta_directories_are_plain_names(root: Path) -> None:
    (root.parent / "train.txt").write_text("train_00000\n")
    with pytest.raises(DatasetError, match=r"split '\.\./train' is not a plain name"):
        RGBXDataset(root, split="../train")
    meta = json.loads((root / "meta.json").read_text())
    meta["modalities"]["depth"]["dir"] = "../outside"
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta\.json: does not follow .*modality directory '\.\./outside'"):
        read_meta(root)


# --- check-dataset: every declared split, every bad file -----------------------------------------------------------


def test_a_split_that_meta_json_declares_must_be_there(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "test.txt").unlink()
    assert _check(root, capsys) == [
        f"rgbxseg check-dataset: error: {root / 'test.txt'}: split list is missing, but meta.json declares 2 'test' "
        "samples; restore it or re-run the preparation"
    ]


def test_a_split_list_that_is_not_utf8_is_named(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "train.txt").write_bytes(b"train_00000\ntrain_0000\xe9\n")
    message = rf"{root / 'train.txt'}: is not UTF-8 text \(invalid continuation byte at byte 22\); save it as UTF-8"
    with pytest.raises(DatasetError, match=message):
        RGBXDataset(root)
    assert len(lines := _check(root, capsys)) == 1 and "train.txt: is not UTF-8 text" in lines[0]


def test_a_jpeg_named_png_is_recognised(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = root / "rgb" / "test_00001.png"
    Image.open(path).save(path, format="JPEG")
    message = rf"{path}: is a JPEG file named \.png; re-create it as a real PNG"
    with pytest.raises(DatasetError, match=message):
        RGBXDataset(root, split="test")[1]
    assert len(lines := _check(root, capsys)) == 1 and f"{path}: is a JPEG file named .png" in lines[0]


def test_check_dataset_names_every_bad_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    undecodable = os.fsdecode(root / "labels") + os.sep + os.fsdecode(b"caf\xe9.png")
    Path(undecodable).write_bytes(b"")
    (root / "depth" / "train_00000.png").unlink()
    (root / "labels" / "train_00000.png").write_bytes(b"not a png")
    (root / "rgb" / "test_00000.png").write_bytes(b"")
    lines = _check(root, capsys)
    assert [line.split(": error: ")[1].split(":")[0] for line in lines] == [
        f"{root}/labels/caf\\xe9.png",
        f"{root}/depth/train_00000.png",
        f"{root}/labels/train_00000.png",
        f"{root}/rgb/test_00000.png",
    ]
    assert "file name is not UTF-8, so no split list can name it; rename it" in lines[0]
    with pytest.raises(InvalidDatasetError, match=r"4 problems: .*caf\\xe9\.png.*; … and 1 more") as info:
        validate_dataset(root)
    assert len(info.value.problems) == 4


def test_a_dataset_folder_whose_name_is_not_utf8_is_checked(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shutil.copytree(prepared, os.fsdecode(tmp_path) + os.sep + os.fsdecode(b"donn\xe9es"))
    assert main(["check-dataset", root, "--quiet"]) == 0
    assert "donn\\xe9es: train 2, test 2 samples" in capsys.readouterr().out


# --- weights files: one line naming the file and the fix ------------------------------------------------------------


def _saved(folder: Path, suffix: str) -> bytes:
    path = folder / f"whole{suffix}"
    if suffix == ".safetensors":
        save_file({"w": torch.zeros(2000)}, str(path))
    else:
        torch.save({"state_dict": {"w": torch.zeros(2000)}}, path)
    return path.read_bytes()


NOT_WEIGHTS = "neither a safetensors file nor a PyTorch checkpoint"
BAD_WEIGHTS: dict[str, tuple[str, Callable[[Path], bytes], str]] = {
    "random": ("random.safetensors", lambda _: np.random.default_rng(0).bytes(4096), NOT_WEIGHTS),
    "truncated": ("cut.safetensors", lambda f: _saved(f, ".safetensors")[:4000], "is not a readable safetensors file"),
    "truncated_pth": ("cut.pth", lambda f: _saved(f, ".pth")[:300], "is not a readable PyTorch checkpoint"),
    "wrong_format": ("config.safetensors", lambda _: b"model:\n  name: asymformer_b0_t\n", NOT_WEIGHTS),
}
"""Weights files as users meet them: file name, content, what the error says."""


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_a_bad_weights_file_is_one_line_naming_it(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, content, cause = BAD_WEIGHTS[case]
    path = tmp_path / name
    path.write_bytes(content(tmp_path))
    pattern = rf"{re.escape(str(path))}:? {cause} .*(download or save it again|give the weights file itself)"
    with pytest.raises(CheckpointError, match=pattern):
        rgbxseg.create_model("asymformer_b0_t", weights=path)
    with pytest.raises(CheckpointError, match=pattern):
        rgbxseg.load_model(path)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((32, 32), np.uint16)).save(tmp_path / "depth.png")
    frames = ["--rgb", str(tmp_path / "rgb.png"), "--x", str(tmp_path / "depth.png"), "--out", str(tmp_path / "out")]
    for command, arguments in (("predict", frames), ("eval", ["--data", str(tmp_path)])):
        assert main([command, "--weights", str(path), "--model", "asymformer_b0_t", *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"rgbxseg {command}: error: ") and error.count("\n") == 1, error
        assert re.search(pattern, error), error


def test_weights_of_another_model_are_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toy = register_toy(monkeypatch)
    ours = rgbxseg.save_weights(rgbxseg.create_model(toy, num_classes=3), tmp_path / "toy.safetensors")
    plain = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(4, 4)}}, plain)
    for path, model, message in (
        (ours, "asymformer_b0_t", rf"{ours} holds weights of '{toy}', not 'asymformer_b0_t'; .* leave out --model"),
        (plain, toy, rf"{plain}: 0 tensors .*; 1 unexpected in the checkpoint: encoder\.weight\. Nothing was loaded"),
    ):
        with pytest.raises(CheckpointMismatchError, match=message):
            rgbxseg.load_model(path, model)
        assert main(["eval", "--weights", str(path), "--model", model, "--data", str(tmp_path)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("rgbxseg eval: error: ") and error.count("\n") == 1, error
        assert re.search(message, error), error
