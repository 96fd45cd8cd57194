"""Inputs at the edges: frames too large for memory are refused at once with the estimate and the fixes, empty frames
say so, sizes read H×W everywhere, ``predict --help`` prints its patterns, ``export onnx`` reports each phase, and
overlays and panels carry a legend of the classes present."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rgbxseg
from conftest import MODEL
from rgbxseg.classes import NYUV2_40
from rgbxseg.cli import main
from rgbxseg.inference import FrameTooLargeError, Segmenter, add_legend, legend, overlay, predict_frames
from rgbxseg.inference.frames import Frame
from rgbxseg.inference.memory import NETWORK_BYTES_PER_PIXEL, estimate_bytes
from rgbxseg.models.layers import check_spatial_size
from rgbxseg.models.registry import list_models
from test_inference import synthetic_scene, write_pair
from toy_models import FrozenTwoHeadToy, register_toy


def lazy_frame(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame of any size that occupies no memory (read-only broadcast views): anything that copies it would show."""
    return np.broadcast_to(np.uint8(128), (height, width, 3)), np.broadcast_to(np.uint16(1500), (height, width))


def never_called(*args: object) -> None:
    raise AssertionError("the frame reached the network")


# --- the memory guard ---------------------------------------------------------------------------------------------


def test_an_8000x8000_frame_is_refused_before_anything_is_allocated(
    model: rgbxseg.SegmentationModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmenter = Segmenter(model)
    monkeypatch.setattr(segmenter, "_inputs", never_called)
    with pytest.raises(FrameTooLargeError) as error:
        segmenter.predict_batch(*map(list, zip(lazy_frame(8000, 8000), strict=True)), sources=["huge.png"])
    message = str(error.value)
    assert message.startswith("huge.png: the 8000×8000 frame (H×W) is too large: 64,000,000 pixels")
    assert "exceed max_pixels = 16,777,216" in message and "\n" not in message
    needed = estimate_bytes(MODEL, model.num_classes, 8000 * 8000, 8000 * 8000)
    assert needed > 40 * 2**30 and f"about {needed / 2**30:.1f} GiB (measured for {MODEL}, fp32)" in message
    assert "--size-policy resize --input-size H W" in message and "--max-pixels N; 0 lifts the guard" in message


def test_a_frame_over_the_free_memory_is_refused_and_batches_are_split_to_fit(
    model: rgbxseg.SegmentationModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    segmenter = Segmenter(model)
    one_frame = estimate_bytes(MODEL, model.num_classes, 32 * 32, 32 * 32)
    segmenter.memory_available = one_frame - 1
    monkeypatch.setattr(segmenter, "_inputs", never_called)
    with pytest.raises(FrameTooLargeError, match=r"frame 0: the 32×32 frame .* were free when the segmenter started"):
        segmenter.predict(*synthetic_scene(32, 32))

    monkeypatch.undo()
    segmenter.memory_available = 2 * one_frame
    batches = []
    run_model = segmenter.run_model
    segmenter.run_model = lambda rgb, x: batches.append(len(rgb)) or run_model(rgb, x)
    frames = [synthetic_scene(32, 32, seed) for seed in range(5)]
    predictions = segmenter.predict_batch([rgb for rgb, _ in frames], [depth for _, depth in frames])
    assert batches == [2, 2, 1]
    single = Segmenter(model).predict(*frames[4])
    assert (predictions[4].labels == single.labels).all()


def test_the_resize_policy_runs_a_frame_that_pad_refuses(model: rgbxseg.SegmentationModel) -> None:
    rgb, depth = synthetic_scene(160, 192)
    with pytest.raises(FrameTooLargeError, match="160×192 frame .* exceed max_pixels = 4,096"):
        Segmenter(model, max_pixels=64 * 64).predict(rgb, depth)
    prediction = Segmenter(model, size_policy="resize", input_size=(64, 64), max_pixels=64 * 64).predict(rgb, depth)
    assert prediction.labels.shape == (160, 192)
    assert Segmenter(model, max_pixels=None).predict(rgb, depth).labels.shape == (160, 192)


def test_predict_cli_refuses_a_frame_over_max_pixels_and_runs_it_resized(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb_path, depth_path = write_pair(tmp_path / "in", "wide", 96, 160)
    argv = ["predict", "--weights", str(weights), "--rgb", str(rgb_path), "--depth", str(depth_path), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--max-pixels", "4096"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"rgbxseg predict: error: {rgb_path} + {depth_path}: the 96×160 frame (H×W) is too large")
    assert "--size-policy resize --input-size H W" in error and "--max-pixels N" in error and "\n" not in error
    assert re.search(r"would need about \d+ MiB", error)
    resized = ["--size-policy", "resize", "--input-size", "64", "64", "--max-pixels", "4096"]
    assert main([*argv, "--out", str(tmp_path / "b"), *resized, "--outputs", "labels"]) == 0
    assert Image.open(tmp_path / "b" / "labels" / "wide.png").size == (160, 96)


def test_every_registered_model_has_a_memory_measurement() -> None:
    """A new model is measured (python benchmarks/activation_memory.py --models NAME) before it is registered."""
    assert sorted(NETWORK_BYTES_PER_PIXEL) == sorted(list_models())


def test_models_without_a_measurement_still_get_the_pixel_limit() -> None:
    segmenter = Segmenter(FrozenTwoHeadToy().eval(), max_pixels=100)
    with pytest.raises(FrameTooLargeError, match=r"would need an unmeasured amount \(toy_frozen_two_head\)"):
        segmenter.predict(*lazy_frame(16, 16))
    with pytest.raises(ValueError, match="max_pixels must be at least 1, or None for no limit; got 0"):
        Segmenter(FrozenTwoHeadToy(), max_pixels=0)


# --- sizes in messages --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size_policy", ["pad", "resize"])
@pytest.mark.parametrize("shape", [(0, 0), (0, 48)])
def test_an_empty_frame_says_it_is_empty(
    model: rgbxseg.SegmentationModel, shape: tuple[int, int], size_policy: str
) -> None:
    rgb, depth = np.zeros((*shape, 3), np.uint8), np.zeros(shape, np.uint16)
    with pytest.raises(ValueError, match=rf"frame 0: the frame is empty \({shape[0]}×{shape[1]}, H×W\)"):
        Segmenter(model, size_policy=size_policy).predict(rgb, depth)
    with pytest.raises(rgbxseg.InputSizeError, match=rf"got an empty input \({shape[0]}×{shape[1]}, H×W\): there"):
        check_spatial_size(*shape, 32, MODEL)


def test_size_mismatch_reads_h_by_w(model: rgbxseg.SegmentationModel) -> None:
    rgb, depth = synthetic_scene(32, 64)
    with pytest.raises(ValueError, match=r"depth 64×64 and RGB 32×64 \(H×W\) differ in size"):
        Segmenter(model).predict(rgb, np.vstack([depth, depth]))


# --- help and progress --------------------------------------------------------------------------------------------


def test_predict_help_shows_the_printf_pattern_and_the_memory_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["predict", "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--rgb video.mp4|rgb/%06d.png --x depth/%06d.png" in shown and "%%" not in shown
    assert "(default 16,777,216 = 4096×4096)" in shown


def test_export_onnx_reports_each_phase_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = register_toy(monkeypatch)
    argv = ["export", "onnx", "--model", name, "--height", "16", "--width", "16", "--exporter", "legacy"]
    assert main([*argv, "--out", str(tmp_path / "t.onnx")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r"\[\d+\.\d s\]", "[t]", line) for line in lines] == [
        f"export onnx [t]: exporting {name} with the legacy exporter, opset 17, static 1×16×16",
        "export onnx [t]: writing the metadata (classes, palette, input spec)",
        "export onnx [t]: parity check: onnxruntime vs PyTorch at 1×16×16, 1×16×16",
    ]
    assert main([*argv, "--out", str(tmp_path / "q.onnx"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# --- legends ------------------------------------------------------------------------------------------------------


def swatches(strip: np.ndarray) -> dict[tuple[int, int, int], tuple[int, int]]:
    """Colour → (pixel count, first row) of every non-grey colour in a legend strip: its swatches, since the names
    are black on white (grey where anti-aliased)."""
    pixels = strip.reshape(-1, 3)
    coloured = np.flatnonzero((pixels != pixels[:, :1]).any(1))
    colours, first, counts = np.unique(pixels[coloured], axis=0, return_index=True, return_counts=True)
    return {
        tuple(int(c) for c in colour): (int(count), int(coloured[index]) // strip.shape[1])
        for colour, index, count in zip(colours, first, counts, strict=True)
    }


def test_overlay_legend_lists_exactly_the_classes_present_with_their_colours() -> None:
    present = (2, 5, 38)  # floor, chair, otherstructure; none of the other 37 classes
    labels = np.full((96, 64), 5, np.uint8)
    labels[:, 40:], labels[60:, :20] = 38, 2
    blended = overlay(np.full((96, 64, 3), 90, np.uint8), labels, NYUV2_40.palette_array())
    picture = add_legend(blended, labels, NYUV2_40)
    assert picture.shape[0] == 96 and picture.shape[1] > 64 + 4
    assert (picture[:, :64] == blended).all() and (picture[:, 64:68] == 255).all()  # the image, a gap, the legend
    strip = picture[:, 68:]
    assert (strip == legend(labels, NYUV2_40, 96)).all()
    found = swatches(strip)
    assert list(found) == sorted(NYUV2_40.palette[label] for label in present)
    assert all(count == 10 * 10 for count, _ in found.values())  # one 10-pixel square each at this height
    rows = [found[NYUV2_40.palette[label]][1] for label in present]
    assert rows == sorted(rows)  # in label order, top to bottom
    assert (strip[:, 20:] < 100).all(2).sum() > 30  # the names, in black right of the swatches


def test_a_short_image_with_many_classes_gets_columns_and_white_below() -> None:
    labels = np.arange(1, 41, dtype=np.uint8).reshape(4, 10)
    picture = add_legend(overlay(np.zeros((4, 10, 3), np.uint8), labels, NYUV2_40.palette_array()), labels, NYUV2_40)
    assert picture.shape[0] > 4 and (picture[4:, :10] == 255).all()
    coloured = {colour for colour in NYUV2_40.palette[1:] if len(set(colour)) > 1}
    assert set(swatches(picture[:, 14:])) == coloured


def test_written_overlays_and_panels_carry_the_legend(model: rgbxseg.SegmentationModel, tmp_path: Path) -> None:
    segmenter = Segmenter(model)
    rgb, depth = synthetic_scene(64, 96)
    labels = segmenter.predict(rgb, depth).labels
    predict_frames(segmenter, [Frame("s", rgb, depth)], tmp_path, image_suffix=".png", progress=False)
    strip = legend(labels, segmenter.class_set, 64)
    overlay_png = np.asarray(Image.open(tmp_path / "overlay" / "s.png"))
    panel_png = np.asarray(Image.open(tmp_path / "panel" / "s.png"))
    assert overlay_png.shape == (64, 96 + 4 + strip.shape[1], 3) and (overlay_png[:, -strip.shape[1] :] == strip).all()
    assert (
        panel_png.shape == (64, 3 * 96 + 3 * 4 + strip.shape[1], 3) and (panel_png[:, -strip.shape[1] :] == strip).all()
    )
