"""Depth plausibility: a map whose values do not fit the declared unit is refused with the unit to use, ``auto`` reads
it right, and every entry point (``rgbxseg predict``, ``Segmenter``, importers, datasets) checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rgbxseg
from rgbxseg.cli import main
from rgbxseg.data import DatasetError, RGBXDataset, import_asymformer, import_dformer
from rgbxseg.inference import Segmenter, depth_to_mm
from rgbxseg.inference.depth import infer_depth_unit
from test_inference import sun_shift, synthetic_scene


def varied_mm(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The synthetic scene's uint16 mm with sensor noise: enough distinct values (≥ 64) to tell SUN's bit mark."""
    depth = synthetic_scene(height, width, seed)[1]
    noise = np.random.default_rng(seed).integers(0, 40, depth.shape)
    return np.where(depth > 0, depth + noise, 0).astype(np.uint16)


# --- rgbxseg predict ----------------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One frame as RGB PNG, uint16 millimetres PNG and float32 metres ``.npy`` (what a depth estimator writes)."""
    rgb, depth_mm = synthetic_scene(64, 64, seed=3)
    paths = {"rgb": tmp_path / "rgb.png", "mm": tmp_path / "depth_mm.png", "m": tmp_path / "depth_m.npy"}
    Image.fromarray(rgb).save(paths["rgb"])
    Image.fromarray(depth_mm).save(paths["mm"])
    np.save(paths["m"], depth_mm.astype(np.float32) / 1000)
    return paths


def predict_cli(weights: Path, rgb: Path, depth: Path, out: Path, *options: str) -> int:
    argv = ["predict", "--weights", str(weights), "--rgb", str(rgb), "--depth", str(depth), "--out", str(out)]
    return main([*argv, "--outputs", "labels", "--no-progress", *options])


def test_cli_refuses_metres_npy_read_with_the_default_mm_unit(
    weights: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict_cli(weights, files["rgb"], files["m"], tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert str(files["m"]) in error and "read as mm" in error and "(--depth-unit m)" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "labels").exists()


def test_cli_refuses_millimetres_png_declared_as_metres(
    weights: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict_cli(weights, files["rgb"], files["mm"], tmp_path / "out", "--depth-unit", "m") == 2
    error = capsys.readouterr().err
    assert str(files["mm"]) in error and "read as m," in error and "(--depth-unit mm)" in error
    assert not (tmp_path / "out" / "labels").exists()


def test_cli_auto_gives_the_metres_file_exactly_the_prediction_of_the_mm_file(
    weights: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    assert predict_cli(weights, files["rgb"], files["mm"], tmp_path / "mm") == 0
    assert predict_cli(weights, files["rgb"], files["m"], tmp_path / "m", "--depth-unit", "auto") == 0
    assert predict_cli(weights, files["rgb"], files["mm"], tmp_path / "mm_auto", "--depth-unit", "auto") == 0
    expected = np.asarray(Image.open(tmp_path / "mm" / "labels" / "rgb.png"))
    assert (np.asarray(Image.open(tmp_path / "m" / "labels" / "rgb.png")) == expected).all()
    assert (np.asarray(Image.open(tmp_path / "mm_auto" / "labels" / "rgb.png")) == expected).all()


def test_cli_help_documents_the_auto_rules(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "auto reads integer maps as mm" in help_text and "median valid depth outside 5 cm to 200 m" in help_text


# --- Segmenter ----------------------------------------------------------------------------------------------------


def test_segmenter_refuses_the_wrong_unit_and_takes_a_per_call_unit(model: rgbxseg.SegmentationModel) -> None:
    rgb, depth_mm = synthetic_scene(64, 64, seed=3)
    depth_m = depth_mm.astype(np.float32) / 1000
    segmenter = Segmenter(model)  # depth_unit="mm"
    reference = segmenter.predict(rgb, depth_mm, return_logits=True)
    with pytest.raises(ValueError, match=r"^frame 0: read as mm, .* its values fit depth unit 'm' \(--depth-unit m\)$"):
        segmenter.predict(rgb, depth_m)
    with pytest.raises(ValueError, match=r"^metres\.npy: read as mm"):
        segmenter.predict_batch([rgb], [depth_m], sources=["metres.npy"])
    for unit in ("m", "auto"):
        prediction = segmenter.predict(rgb, depth_m, return_logits=True, depth_unit=unit)
        assert (prediction.labels == reference.labels).all(), unit
        np.testing.assert_allclose(prediction.logits, reference.logits, atol=1e-4, err_msg=unit)
    in_metres = Segmenter(model, depth_unit="m")
    with pytest.raises(ValueError, match=r"read as m, this depth map puts the scene .* m away, farther .*'mm'"):
        in_metres.predict(rgb, depth_mm)
    assert (in_metres.predict(rgb, depth_mm, depth_unit="mm").labels == reference.labels).all()
    assert (in_metres.predict_batch([rgb], [depth_m])[0].labels == reference.labels).all()
    with pytest.raises(ValueError, match="read as m,"):
        segmenter.predict_batch([rgb], [depth_mm], depth_unit="m")


@pytest.mark.parametrize(
    ("depth", "unit"),
    [
        (np.array([[0, 800, 2500, 9000]], np.uint16), "mm"),  # integer maps: always mm
        (np.array([[0, 0.8, 2.5, 9.0, np.nan]], np.float32), "m"),  # float, median below 50
        (np.array([[0, 800.0, 2500, 9000]], np.float64), "mm"),  # float, median above 200
        (np.zeros((2, 2), np.float32), "mm"),  # no valid value: nothing to convert
    ],
)
def test_auto_rules(depth: np.ndarray, unit: str) -> None:
    assert infer_depth_unit(depth).name == unit


def test_auto_refuses_what_it_cannot_tell() -> None:
    with pytest.raises(ValueError, match=r"^d\.npy: depth unit auto cannot tell .* 10 cm as mm or 100 m as m"):
        depth_to_mm(np.full((4, 4), 100.0, np.float32), "auto", "d.npy")
    with pytest.raises(ValueError, match=r"8-bit depth map .* cannot be in mm \(chosen by auto\)"):
        depth_to_mm(np.full((4, 4), 100, np.uint8), "auto")
    nothing_fits = r"read as m \(chosen by auto\), .* 0\.02 mm away, nearer .*; if it is depth at all"
    with pytest.raises(ValueError, match=nothing_fits):
        depth_to_mm(np.full((4, 4), 0.00002, np.float32), "auto")  # as m still nearer than 5 cm: no unit fits


def test_sun_rgbd_raw_values_and_their_declared_unit(model: rgbxseg.SegmentationModel) -> None:
    rgb = synthetic_scene(64, 64, seed=3)[0]
    depth_mm = varied_mm(64, 64, seed=3)
    stored = sun_shift(depth_mm)
    for unit in ("mm", "auto"):  # read as mm, SUN's values are 8 times too far: still a plausible median
        with pytest.raises(ValueError, match=r"mark of a SUN RGB-D raw PNG .* \(--depth-unit sun-shifted\)"):
            Segmenter(model, depth_unit=unit).predict(rgb, stored)
    with pytest.raises(ValueError, match=r"not a SUN RGB-D raw PNG.*\(--depth-unit mm\)"):
        Segmenter(model, depth_unit="sun-shifted").predict(rgb, depth_mm)
    reference = Segmenter(model).predict(rgb, depth_mm).labels
    assert (Segmenter(model, depth_unit="sun-shifted").predict(rgb, stored).labels == reference).all()
    Segmenter(model, depth_unit=1).predict(rgb, stored)  # the way out for millimetres in 8 mm steps


# --- datasets -----------------------------------------------------------------------------------------------------


def _asymformer_tree(src: Path, depth: np.ndarray) -> None:
    """The AsymFormer NYUv2 package layout (depths/ declared uint16 mm) with ``depth`` in every sample."""
    rng = np.random.default_rng(0)
    for folder in ("images", "depths", "labels"):
        (src / folder).mkdir(parents=True)
    for split, stem in (("train", "1"), ("test", "2")):
        (src / f"{split}.txt").write_text(f"{stem}\n")
        Image.fromarray(rng.integers(0, 256, (*depth.shape, 3), dtype=np.uint8)).save(src / "images" / f"{stem}.png")
        Image.fromarray(depth).save(src / "depths" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 41, depth.shape).astype(np.uint8)).save(src / "labels" / f"{stem}.png")


def test_importer_refuses_16bit_pngs_declared_mm_in_another_unit(tmp_path: Path) -> None:
    depth_mm = varied_mm(32, 32)
    cases = {
        "sun": (sun_shift(depth_mm), r"depths/1\.png: .* mark of a SUN RGB-D .* depth_encoding='sun_shifted'"),
        "metres": ((depth_mm // 1000).astype(np.uint16), r"depths/1\.png: .* at \d mm .*\(metres × 1000\)"),
    }
    for name, (depth, message) in cases.items():
        _asymformer_tree(tmp_path / name, depth)
        with pytest.raises(DatasetError, match=message):
            import_asymformer(tmp_path / name, tmp_path / f"{name}_out", check_counts=False, progress=False)
    _asymformer_tree(tmp_path / "ok", depth_mm)
    import_asymformer(tmp_path / "ok", tmp_path / "ok_out", check_counts=False, progress=False)
    assert (np.asarray(Image.open(tmp_path / "ok_out" / "depth" / "1.png")) == depth_mm).all()


def test_dformer_declared_sun_shifted_refuses_plain_millimetres(tmp_path: Path) -> None:
    src, depth_mm = tmp_path / "SUNRGBD", varied_mm(32, 32)
    rng = np.random.default_rng(0)
    for folder in ("RGB", "Depth", "Label"):
        (src / folder).mkdir(parents=True)
    for split, stem in (("train", "1"), ("test", "2")):
        (src / f"{split}.txt").write_text(f"RGB/{stem}.jpg Label/{stem}.png\n")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src / "RGB" / f"{stem}.jpg")
        Image.fromarray(depth_mm).save(src / "Depth" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 38, (32, 32), dtype=np.uint8)).save(src / "Label" / f"{stem}.png")
    options = {"class_set": "sunrgbd_37", "check_counts": False, "progress": False}
    with pytest.raises(DatasetError, match=r"Depth/1\.png: depth declared as SUN .*depth_encoding='metric_mm'"):
        import_dformer(src, tmp_path / "refused", depth_encoding="sun_shifted", **options)
    import_dformer(src, tmp_path / "out", depth_encoding="metric_mm", **options)
    assert (np.asarray(Image.open(tmp_path / "out" / "depth" / "1.png")) == depth_mm).all()


def test_dataset_refuses_canonical_depth_in_another_unit(synthetic_scenes: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_scenes, root)
    stem = RGBXDataset(root).ids[0]
    path = root / "depth" / f"{stem}.png"
    stored = np.asarray(Image.open(path))
    RGBXDataset(root)[0]  # the generated depth passes
    Image.fromarray(sun_shift(stored)).save(path)
    with pytest.raises(DatasetError, match=rf"{stem}\.png: depth declared as millimetres has the mark of a SUN"):
        RGBXDataset(root)[0]
    Image.fromarray((stored // 1000).astype(np.uint16)).save(path)
    with pytest.raises(DatasetError, match=rf"{stem}\.png: depth declared as millimetres puts the scene at"):
        RGBXDataset(root)[0]
