"""Segmenter, frame reading, depth units, visualisation and ``rgbxseg predict`` on synthetic RGB-D frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rgbxseg
from rgbxseg.cli import main
from rgbxseg.inference import (
    DEPTH_UNITS,
    Segmenter,
    camera_frames,
    depth_colormap,
    depth_to_mm,
    label_image,
    legend,
    overlay,
    resolve_depth_unit,
    run_camera,
)
from rgbxseg.inference.frames import folder_pairs


def synthetic_scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A room corner: floor and wall with a box in front; RGB uint8 and depth in millimetres (uint16, 0 = hole)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    horizon = height // 2
    depth = np.where(rows < horizon, 4000.0, 4000.0 - 2500.0 * (rows - horizon) / max(height - horizon, 1))
    box = (abs(rows - 0.6 * height) < height / 6) & (abs(cols - 0.5 * width) < width / 6)
    depth[box] = 1500.0
    depth[rng.random((height, width)) < 0.02] = 0  # sensor holes
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[rows < horizon] = (200, 190, 170)
    rgb[rows >= horizon] = (120, 90, 60)
    rgb[box] = (30, 60, 160)
    rgb = np.clip(rgb + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    return rgb, depth.round().astype(np.uint16)


@pytest.fixture(scope="module")
def segmenter(model: rgbxseg.SegmentationModel) -> Segmenter:
    return Segmenter(model)


def write_pair(folder: Path, name: str, height: int, width: int, seed: int = 0) -> tuple[Path, Path]:
    rgb, depth = synthetic_scene(height, width, seed)
    folder.mkdir(parents=True, exist_ok=True)
    rgb_path, depth_path = folder / f"{name}.jpg", folder / f"{name}_depth.png"
    Image.fromarray(rgb).save(rgb_path, quality=95)
    Image.fromarray(depth).save(depth_path)
    return rgb_path, depth_path


# --- outputs -----------------------------------------------------------------------------------------------------


def test_predict_cli_writes_label_png_overlay_and_panel_at_input_resolution(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb_path, depth_path = write_pair(tmp_path / "in", "scene", 70, 90)  # neither side a multiple of 32
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(weights), "--rgb", str(rgb_path), "--depth", str(depth_path)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "1 frames" in capsys.readouterr().out

    labels = Image.open(out / "labels" / "scene.png")
    assert labels.mode == "P" and labels.size == (90, 70)
    values = np.asarray(labels)
    assert values.min() >= 1 and values.max() <= 40  # dataset labels, void (0) never predicted
    palette = np.asarray(labels.getpalette()[: 41 * 3], dtype=np.uint8).reshape(41, 3)
    assert (palette == rgbxseg.classes.NYUV2_40.palette_array()).all()
    legend_width = legend(values, rgbxseg.classes.NYUV2_40, 70).shape[1]  # the classes present, right of a 4-pixel gap
    assert Image.open(out / "overlay" / "scene.jpg").size == (90 + 4 + legend_width, 70)
    assert Image.open(out / "panel" / "scene.jpg").size == (3 * 90 + 3 * 4 + legend_width, 70)
    assert not list(out.rglob("*.tmp"))


def test_label_png_holds_exactly_the_segmenter_labels(segmenter: Segmenter, tmp_path: Path) -> None:
    rgb, depth = synthetic_scene(64, 96)
    prediction = segmenter.predict(rgb, depth)
    assert prediction.labels.shape == (64, 96) and prediction.labels.dtype == np.uint8
    label_image(prediction.labels, segmenter.class_set.palette_array()).save(tmp_path / "l.png")
    assert (np.asarray(Image.open(tmp_path / "l.png")) == prediction.labels).all()


def test_non_multiple_of_32_comes_back_at_its_resolution_with_both_size_policies(
    model: rgbxseg.SegmentationModel,
) -> None:
    rgb, depth = synthetic_scene(50, 75)
    for kwargs in (
        {"size_policy": "pad"},
        {"size_policy": "resize"},
        {"size_policy": "resize", "input_size": (64, 64)},
    ):
        prediction = Segmenter(model, **kwargs).predict(rgb, depth, return_logits=True)
        assert prediction.labels.shape == (50, 75)
        assert prediction.logits.shape == (40, 50, 75)
        np.testing.assert_allclose(prediction.probabilities().sum(0), 1.0, rtol=1e-5)


def test_padding_only_appends_pixels_bottom_right(model: rgbxseg.SegmentationModel, segmenter: Segmenter) -> None:
    """A frame that already fits gives the model's logits unchanged (no resampling, no offset)."""
    rgb, depth = synthetic_scene(64, 96)
    prediction = segmenter.predict(rgb, depth, return_logits=True)
    spec = segmenter.input_spec
    with torch.inference_mode():
        expected = model(
            spec.rgb.normalize(torch.tensor(rgb).permute(2, 0, 1)[None]),
            spec.x.normalize(torch.tensor(depth.astype(np.float32))[None, None]),
        )
    np.testing.assert_allclose(prediction.logits, expected[0].numpy(), atol=1e-5)


# --- depth units -------------------------------------------------------------------------------------------------


def sun_shift(mm: np.ndarray) -> np.ndarray:
    """How SUN RGB-D stores millimetres: a 3-bit circular left shift of the uint16 value."""
    value = mm.astype(np.uint32)
    return (((value << 3) | (value >> 13)) & 0xFFFF).astype(np.uint16)


def test_same_scene_in_mm_m_sun_shifted_and_scaled_gives_the_same_prediction(model: rgbxseg.SegmentationModel) -> None:
    rgb, depth_mm = synthetic_scene(64, 64, seed=3)
    reference = Segmenter(model, depth_unit="mm").predict(rgb, depth_mm, return_logits=True)
    variants = {
        "m": depth_mm.astype(np.float32) / 1000,
        "sun-shifted": sun_shift(depth_mm),
        0.1: depth_mm * np.uint16(10),  # tenths of a millimetre
        "1000": depth_mm.astype(np.float64) / 1000,  # metres given as a scale, from the command line
    }
    for unit, depth in variants.items():
        prediction = Segmenter(model, depth_unit=unit).predict(rgb, depth, return_logits=True)
        np.testing.assert_allclose(prediction.logits, reference.logits, atol=1e-4, err_msg=str(unit))
        assert (prediction.labels == reference.labels).all(), unit


def test_depth_unit_table_and_conversions() -> None:
    assert set(DEPTH_UNITS) == {"mm", "m", "sun-shifted"}
    mm = np.array([[0, 1, 2500, 8000]], dtype=np.uint16)
    np.testing.assert_array_equal(depth_to_mm(sun_shift(mm), DEPTH_UNITS["sun-shifted"]), mm.astype(np.float32))
    clipped = depth_to_mm(sun_shift(np.array([[9000]], dtype=np.uint16)), DEPTH_UNITS["sun-shifted"])
    assert clipped[0, 0] == 8000  # the SUN toolbox clips at 8 m
    nan_depth = np.array([[np.nan, np.inf, 1.5]], dtype=np.float32)
    np.testing.assert_array_equal(depth_to_mm(nan_depth, DEPTH_UNITS["m"]), [[0, 0, 1500]])
    assert resolve_depth_unit("0.5").mm_per_unit == 0.5
    with pytest.raises(ValueError, match="unknown depth unit 'cm'"):
        resolve_depth_unit("cm")
    with pytest.raises(ValueError, match="positive"):
        resolve_depth_unit(-1)


def test_8bit_depth_needs_an_explicit_scale(segmenter: Segmenter, model: rgbxseg.SegmentationModel) -> None:
    rgb, depth = synthetic_scene(32, 32)
    depth8 = (depth // 40).astype(np.uint8)
    with pytest.raises(ValueError, match="8-bit depth map .* cannot be in mm"):
        segmenter.predict(rgb, depth8)
    with pytest.raises(ValueError, match="8-bit"):
        Segmenter(model, depth_unit="m").predict(rgb, depth8)
    assert Segmenter(model, depth_unit=40).predict(rgb, depth8).labels.shape == (32, 32)


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (np.zeros((32, 32, 3), np.uint16), "colour-mapped depth visualisation"),
        (-np.ones((32, 32), np.float32), "negative values"),
        (np.zeros((32, 40), np.uint16), "differ in size; register the depth"),
        (np.zeros((32, 32), bool), "integer or float"),
    ],
)
def test_bad_depth_maps_are_refused_with_the_fix(segmenter: Segmenter, depth: np.ndarray, message: str) -> None:
    rgb, _ = synthetic_scene(32, 32)
    with pytest.raises(ValueError, match=message):
        segmenter.predict(rgb, depth)


# --- folders, sequences, videos, cameras -------------------------------------------------------------------------


def test_folder_prediction_is_batched_and_matches_single_frames(
    weights: Path, segmenter: Segmenter, tmp_path: Path
) -> None:
    rgb_dir, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    sizes = {"a": (64, 64), "b": (48, 80), "c": (64, 64)}  # two sizes: batches group frames by size
    for seed, (name, (height, width)) in enumerate(sizes.items()):
        rgb, depth = synthetic_scene(height, width, seed)
        rgb_dir.mkdir(exist_ok=True), depth_dir.mkdir(exist_ok=True)
        Image.fromarray(rgb).save(rgb_dir / f"{name}.png")
        Image.fromarray(depth).save(depth_dir / f"{name}.png")
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(weights), "--rgb-dir", str(rgb_dir), "--depth-dir", str(depth_dir)]
    assert main([*argv, "--out", str(out), "--batch-size", "3", "--outputs", "labels", "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.png", "b.png", "c.png"]
    for seed, name in enumerate(sizes):
        single = segmenter.predict(*synthetic_scene(*sizes[name], seed)).labels
        assert (np.asarray(Image.open(out / "labels" / f"{name}.png")) == single).all()


def test_image_sequence_pair(weights: Path, tmp_path: Path) -> None:
    for index in range(1, 4):
        rgb, depth = synthetic_scene(32, 64, index)
        (tmp_path / "rgb").mkdir(exist_ok=True), (tmp_path / "depth").mkdir(exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "rgb" / f"{index:04d}.png")
        Image.fromarray(depth).save(tmp_path / "depth" / f"{index:04d}.png")
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(weights), "--rgb", str(tmp_path / "rgb/%04d.png")]
    assert main([*argv, "--depth", str(tmp_path / "depth/%04d.png"), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "panel").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_rgb_video_with_depth_sequence(weights: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(tmp_path / "rgb.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 32))
    (tmp_path / "depth").mkdir()
    for index in range(2):
        rgb, depth = synthetic_scene(32, 64, index)
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        Image.fromarray(depth).save(tmp_path / "depth" / f"{index}.png")
    writer.release()
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(weights), "--rgb", str(tmp_path / "rgb.avi")]
    assert main([*argv, "--depth", str(tmp_path / "depth/%d.png"), "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "labels").iterdir())) == 2


class FakeRGBDCapture:
    """Stands in for ``cv2.VideoCapture`` of an OpenNI2 device: BGR image and uint16 depth per grab."""

    def __init__(self, frames: int, with_depth: bool = True) -> None:
        self.frames, self.with_depth, self.released = frames, with_depth, False
        self.depth_flag = pytest.importorskip("cv2").CAP_OPENNI_DEPTH_MAP

    def grab(self) -> bool:
        self.frames -= 1
        return self.frames >= 0

    def retrieve(self, flag: int) -> tuple[bool, np.ndarray | None]:
        rgb, depth = synthetic_scene(32, 32)
        if flag == self.depth_flag:
            return self.with_depth, depth if self.with_depth else None
        return True, rgb[:, :, ::-1].copy()

    def release(self) -> None:
        self.released = True


def test_camera_loop_writes_panels_and_needs_depth(segmenter: Segmenter, tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    capture = FakeRGBDCapture(frames=3)
    summary = run_camera(segmenter, camera_frames(capture=capture), show=False, out_dir=tmp_path, progress=False)
    assert summary.frames == 3 and capture.released
    assert sorted(p.name for p in (tmp_path / "panel").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    with pytest.raises(OSError, match="gives no depth map"):
        frames = camera_frames(capture=FakeRGBDCapture(1, with_depth=False))
        run_camera(segmenter, frames, show=False, out_dir=tmp_path / "no_depth")


# --- errors through the command line -----------------------------------------------------------------------------


def test_predict_cli_errors_name_the_file_and_the_fix(
    weights: Path, model: rgbxseg.SegmentationModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb_path, depth_path = write_pair(tmp_path, "x", 32, 32)
    base = ["predict", "--weights", str(weights), "--out", str(tmp_path / "out"), "--no-progress"]

    def error(*argv: str) -> str:
        assert main([*base, *argv]) == 2
        return capsys.readouterr().err

    assert f"{tmp_path / 'nope.png'}: file is missing" in error(
        "--rgb", str(tmp_path / "nope.png"), "--depth", str(depth_path)
    )
    Image.fromarray(np.zeros((40, 32), np.uint16)).save(tmp_path / "big.png")
    assert "differ in size" in error("--rgb", str(rgb_path), "--depth", str(tmp_path / "big.png"))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "d8.png")
    assert "8-bit depth map" in error("--rgb", str(rgb_path), "--depth", str(tmp_path / "d8.png"))
    assert "RGB and the second input go together" in error("--rgb", str(rgb_path))
    (tmp_path / "rgbs").mkdir(), (tmp_path / "depths").mkdir()
    Image.open(rgb_path).save(tmp_path / "rgbs" / "lonely.png")
    Image.open(depth_path).save(tmp_path / "depths" / "other.png")
    message = error("--rgb-dir", str(tmp_path / "rgbs"), "--depth-dir", str(tmp_path / "depths"))
    assert "have no map with the same name" in message and "lonely" in message

    torch.save(model.state_dict(), tmp_path / "plain.pth")
    assert main(["predict", "--weights", str(tmp_path / "plain.pth"), "--rgb", str(rgb_path), "--depth",
                 str(depth_path), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "name it with --model" in capsys.readouterr().err


def test_folders_match_by_name_and_refuse_ambiguous_names(tmp_path: Path) -> None:
    for folder, names in {"rgb": ("b.jpg", "a.png"), "depth": ("a.png", "b.png", "c.png")}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / folder / name)
    pairs = folder_pairs(tmp_path / "rgb", tmp_path / "depth")
    assert [(name, rgb.name, depth.name) for name, rgb, depth in pairs] == [
        ("a", "a.png", "a.png"),
        ("b", "b.jpg", "b.png"),
    ]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "rgb" / "a.jpg")
    with pytest.raises(ValueError, match="several files per name, e.g. a.jpg"):
        folder_pairs(tmp_path / "rgb", tmp_path / "depth")


def test_prepare_model_step_is_applied_once(model: rgbxseg.SegmentationModel) -> None:
    calls = []

    def prepare(net: rgbxseg.SegmentationModel) -> rgbxseg.SegmentationModel:
        calls.append(net)
        return net

    segmenter = Segmenter(model, prepare_model=prepare)
    segmenter.predict(*synthetic_scene(32, 32))
    segmenter.predict(*synthetic_scene(32, 32))
    assert calls == [model]


def test_fp16_on_cpu_and_missing_cuda_are_clear_errors(model: rgbxseg.SegmentationModel) -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Segmenter(model, dtype="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Segmenter(model, device="cuda")


# --- visualisation -----------------------------------------------------------------------------------------------


def test_visualisation_helpers() -> None:
    depth = np.array([[0, 1000], [2000, 0]], dtype=np.float32)
    colours = depth_colormap(depth)
    assert (colours[0, 0] == 0).all() and (colours[1, 1] == 0).all() and colours[0, 1].any()
    rgb = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[1, 2], [2, 1]])
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    assert (overlay(rgb, labels, palette, alpha=0.0) == rgb).all()
    assert (overlay(rgb, labels, palette, alpha=1.0)[0, 0] == (255, 0, 0)).all()
