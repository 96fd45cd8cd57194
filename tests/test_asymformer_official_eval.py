"""The 2023 AsymFormer evaluation reproduced: the released checkpoint's B, G, R channel order, ``eval.py`` and
``MS5_eval.py`` (their resizing, fixed sizes, summed raw logits) and their metric (absent classes count as 0), checked
against an independent re-implementation of the scripts' pre-processing and metric written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

import rgbxseg
from conftest import MODEL
from rgbxseg.cli import main
from rgbxseg.data import import_asymformer
from rgbxseg.engine.evaluate import ASYMFORMER_OFFICIAL, ASYMFORMER_OFFICIAL_MS, evaluate_weights
from rgbxseg.engine.metrics import ConfusionMatrix
from rgbxseg.inference import Segmenter
from rgbxseg.inputs import IMAGENET_MEAN, IMAGENET_STD, NYUV2_DEPTH_MEAN_M, NYUV2_DEPTH_STD_M
from rgbxseg.models import ASYMFORMER_NYUV2_EVAL, ASYMFORMER_RELEASE
from rgbxseg.models.asymformer import NYUV2_RGB_MEAN, NYUV2_RGB_STD, current_to_legacy
from rgbxseg.models.layers import resize_bilinear_mirrored
from test_inference import synthetic_scene

CLASSES = 40
FRAME = (480, 640)
MS5_SIZES = ((480, 640), (576, 768), (672, 896))

# --- resize semantics, against hand-computed arrays -----------------------------------------------------------------


def test_nearest_pixel_centre_differs_from_legacy_nearest() -> None:
    row = torch.tensor([[[[0.0, 1.0, 2.0]]]])
    # 3 → 4: legacy nearest takes floor(i · 3/4) = 0, 0, 1, 2; the nearest centre floor((i + ½) · 3/4) = 0, 1, 1, 2
    assert F.interpolate(row, size=(1, 4), mode="nearest").flatten().tolist() == [0, 0, 1, 2]
    assert F.interpolate(row, size=(1, 4), mode="nearest-exact").flatten().tolist() == [0, 1, 1, 2]


@pytest.mark.parametrize(
    ("values", "size", "clamped", "mirrored"),
    [
        # source positions (i + ½) · 2/4 − ½ = −0.25, 0.25, 0.75, 1.25: the outer two mirror to 0.25 and 0.75
        ([0.0, 10.0], 4, [0.0, 2.5, 7.5, 10.0], [2.5, 2.5, 7.5, 7.5]),
        # (i + ½) · 3/5 − ½ = −0.2, 0.4, 1.0, 1.6, 2.2: −0.2 → 0.2 and 2.2 → 1.8
        ([0.0, 10.0, 20.0], 5, [0.0, 4.0, 10.0, 16.0, 20.0], [2.0, 4.0, 10.0, 16.0, 18.0]),
    ],
)
def test_bilinear_with_mirrored_edges_differs_from_clamped(
    values: list[float], size: int, clamped: list[float], mirrored: list[float]
) -> None:
    row = torch.tensor(values, dtype=torch.float64)[None, None, None]
    torch_resized = F.interpolate(row, size=(1, size), mode="bilinear", align_corners=False)
    assert torch_resized.flatten().tolist() == pytest.approx(clamped)
    assert resize_bilinear_mirrored(row, (1, size)).flatten().tolist() == pytest.approx(mirrored)
    column = row.transpose(-1, -2)
    assert resize_bilinear_mirrored(column, (size, 1)).flatten().tolist() == pytest.approx(mirrored)


def test_mirrored_bilinear_is_what_skimage_resize_does_when_it_enlarges() -> None:
    """skimage.transform.resize(order=1, mode="reflect") is scipy.ndimage.zoom(grid_mode=True, mode="mirror")."""
    image = torch.rand(48, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for size in ((58, 77), (96, 128)):
        expected = ndimage.zoom(image.numpy(), (size[0] / 48, size[1] / 64), order=1, mode="mirror", grid_mode=True)
        np.testing.assert_allclose(resize_bilinear_mirrored(image, size).numpy(), expected, atol=1e-12)


# --- the metric ------------------------------------------------------------------------------------------------------


def test_absent_classes_count_as_zero_only_when_asked() -> None:
    confusion = ConfusionMatrix(3, torch.device("cpu"))
    confusion.update(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[1, 1, 2, 1]]))  # class 3 absent from both
    skipped, zeroed = confusion.compute(), confusion.compute(absent_classes="zero")
    assert skipped.iou[:2] == zeroed.iou[:2] == (2 / 3, 1 / 2) and np.isnan(skipped.iou[2]) and zeroed.iou[2] == 0
    assert skipped.miou == pytest.approx((2 / 3 + 1 / 2) / 2) and zeroed.miou == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert zeroed.mean_accuracy == pytest.approx((2 / 3 + 1) / 3) and zeroed.pixel_accuracy == skipped.pixel_accuracy


# --- the released checkpoint's channel order --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[rgbxseg.SegmentationModel, Path]:
    """A seeded model and the same weights in the released 2023 container and key layout (no metadata)."""
    torch.manual_seed(0)
    model = rgbxseg.create_model(MODEL).eval()
    path = tmp_path_factory.mktemp("release") / "ckpt_epoch_500.00.pth"
    torch.save({"epoch": 500.0, "state_dict": current_to_legacy(model.state_dict())}, path)
    return model, path


def test_the_released_layout_brings_its_bgr_preset_to_every_path(
    released: tuple[rgbxseg.SegmentationModel, Path], tmp_path: Path
) -> None:
    model, path = released
    loaded = rgbxseg.load_model(path, MODEL)
    assert loaded.input_spec == ASYMFORMER_RELEASE and ASYMFORMER_RELEASE.rgb.channel_order == "bgr"
    assert ASYMFORMER_NYUV2_EVAL.rgb.channel_order == "bgr"
    assert rgbxseg.create_model(MODEL).input_spec.rgb.channel_order == "rgb", "our own training stays R, G, B"

    rgb, depth = synthetic_scene(64, 96)
    prediction = Segmenter(loaded).predict(rgb, depth, return_logits=True)
    bgr = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    depth_in = (torch.from_numpy(depth.astype(np.float32))[None, None] / 1000 - NYUV2_DEPTH_MEAN_M) / NYUV2_DEPTH_STD_M
    with torch.inference_mode():
        expected = model((bgr - mean) / std, depth_in)
    np.testing.assert_allclose(prediction.logits, expected[0].numpy(), atol=1e-5)

    saved = rgbxseg.save_weights(loaded, tmp_path / "converted.safetensors")  # the order travels with the weights
    assert rgbxseg.load_model(saved).input_spec == ASYMFORMER_RELEASE
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "release.onnx"
    assert main(["export", "onnx", "--weights", str(path), "--model", MODEL, "--out", str(out), "--height", "32",
                 "--width", "32", "--no-check", "--quiet", "--exporter", "legacy"]) == 0  # fmt: skip
    metadata = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["input_spec"])["rgb"]["channel_order"] == "bgr"


# --- the official scripts, end to end on the official package layout ------------------------------------------------


@pytest.fixture(scope="module")
def official_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Frames written as the official NYUv2 PNG package (images/ depths/ labels/), and their rgbxseg import."""
    src = tmp_path_factory.mktemp("official") / "data"
    for folder in ("images", "depths", "labels"):
        (src / folder).mkdir(parents=True)
    stems = {"train": ["0"], "test": ["1", "2"]}
    for split, names in stems.items():
        (src / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
        for seed, name in enumerate(names, start=int(names[0])):
            rgb, depth = synthetic_scene(*FRAME, seed=seed)
            rows = np.arange(FRAME[0])[:, None].repeat(FRAME[1], 1)
            labels = np.where(rows < FRAME[0] // 2, 1, 2).astype(np.uint8)  # wall, floor
            labels[depth == 1500] = 5 + seed  # the box
            labels[::37, ::41] = 0  # void
            Image.fromarray(rgb).save(src / "images" / f"{name}.png")
            Image.fromarray(depth).save(src / "depths" / f"{name}.png")
            Image.fromarray(labels).save(src / "labels" / f"{name}.png")
    out = src.parent / "canonical"
    import_asymformer(src, out, check_counts=False, progress=False)
    return src, out


def official_predictions(
    model: rgbxseg.SegmentationModel, src: Path, mean: tuple[float, ...], std: tuple[float, ...], sizes: tuple
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The 2023 scripts' inputs and predictions, re-implemented: cv2.imread keeps B, G, R; frames are 480×640
    already; each larger size is ``skimage.transform.resize`` of them (order 1 image, order 0 depth, reflect); inputs
    /255 and mm/1000, normalised; logits resized back with align_corners=True and summed; argmax + 1."""
    predictions, labels = [], []
    for name in (src / "test.txt").read_text().split():
        bgr = np.asarray(Image.open(src / "images" / f"{name}.png"))[..., ::-1].astype(np.float64)
        depth = np.asarray(Image.open(src / "depths" / f"{name}.png")).astype(np.float64)
        total = torch.zeros(1, CLASSES, *FRAME)
        for height, width in sizes:
            zoom = (height / FRAME[0], width / FRAME[1])
            image = ndimage.zoom(bgr, (*zoom, 1), order=1, mode="mirror", grid_mode=True) if zoom != (1, 1) else bgr
            scaled = ndimage.zoom(depth, zoom, order=0, mode="mirror", grid_mode=True) if zoom != (1, 1) else depth
            image_in = torch.from_numpy(image.transpose(2, 0, 1)).float()[None] / 255
            image_in = (image_in - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
            depth_in = (torch.from_numpy(scaled).float()[None, None] / 1000 - NYUV2_DEPTH_MEAN_M) / NYUV2_DEPTH_STD_M
            with torch.inference_mode():
                logits = model(image_in, depth_in)
            total += F.interpolate(logits, size=FRAME, mode="bilinear", align_corners=True)
        predictions.append(total.argmax(1)[0].numpy() + 1)
        labels.append(np.asarray(Image.open(src / "labels" / f"{name}.png")).astype(np.int64))
    return predictions, labels


def official_metric(predictions: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, np.ndarray | float]:
    """``utils.py`` of 2023: per-image histograms over classes 1..K of intersection, prediction (zeroed where the
    label is void) and label, summed; IoU = I / (U + 1e-10) averaged over all K classes; pixel accuracy over labelled
    pixels; mean accuracy = mean over classes of correct / (labelled + 1e-10)."""
    intersection = union = correct_per_class = labelled_per_class = np.zeros(CLASSES)
    correct = labelled = 0
    for pred, label in zip(predictions, labels, strict=True):
        valid = label > 0
        correct += int((valid & (pred == label)).sum())
        labelled += int(valid.sum())
        scored = pred * valid
        hits = scored * (scored == label)
        area_hits = np.histogram(hits, bins=CLASSES, range=(1, CLASSES))[0]
        area_pred = np.histogram(scored, bins=CLASSES, range=(1, CLASSES))[0]
        area_label = np.histogram(label, bins=CLASSES, range=(1, CLASSES))[0]
        intersection = intersection + area_hits
        union = union + area_pred + area_label - area_hits
        correct_per_class = correct_per_class + area_hits
        labelled_per_class = labelled_per_class + area_label
    iou = intersection / (union + 1e-10)
    confusion = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    for pred, label in zip(predictions, labels, strict=True):
        valid = label > 0
        np.add.at(confusion, (label[valid] - 1, pred[valid] - 1), 1)
    return {
        "iou": iou,
        "miou": iou.mean(),
        "pixel_accuracy": correct / labelled,
        "mean_accuracy": (correct_per_class / (labelled_per_class + 1e-10)).mean(),
        "confusion": confusion,
    }


@pytest.mark.parametrize(
    ("protocol", "spec", "sizes"),
    [
        (ASYMFORMER_OFFICIAL, "asymformer_nyuv2_eval", (FRAME,)),  # eval.py: NYUv2 statistics, single scale
        (ASYMFORMER_OFFICIAL_MS, None, MS5_SIZES),  # MS5_eval.py: ImageNet statistics (the release preset)
    ],
    ids=["eval.py", "MS5_eval.py"],
)
def test_the_official_protocol_equals_a_reimplementation_of_the_scripts(
    released: tuple[rgbxseg.SegmentationModel, Path],
    official_package: tuple[Path, Path],
    protocol: object,
    spec: str | None,
    sizes: tuple,
) -> None:
    model, weights = released
    src, canonical = official_package
    report = evaluate_weights(
        weights, canonical, model_name=MODEL, protocol=protocol, input_spec=spec, device="cpu", progress=False
    )
    mean, std = (NYUV2_RGB_MEAN, NYUV2_RGB_STD) if spec else (IMAGENET_MEAN, IMAGENET_STD)
    expected = official_metric(*official_predictions(model, src, mean, std, sizes))
    ours = report.metrics
    assert torch.equal(ours.confusion, torch.from_numpy(expected["confusion"]))
    assert ours.miou == pytest.approx(expected["miou"], abs=1e-6)
    assert ours.pixel_accuracy == pytest.approx(expected["pixel_accuracy"], abs=1e-6)
    assert ours.mean_accuracy == pytest.approx(expected["mean_accuracy"], abs=1e-6)
    np.testing.assert_allclose(ours.iou, expected["iou"], atol=1e-6)
    assert sum(value == 0 for value in ours.iou) > 30  # most classes are absent: they count as 0 in the mean
    assert (
        report.protocol["absent_classes"] == "zero" and report.protocol["input_spec"]["rgb"]["channel_order"] == "bgr"
    )
    assert report.protocol["frame_size"] == FRAME


def test_cli_official_protocol_and_channel_order(
    released: tuple[rgbxseg.SegmentationModel, Path], official_package: tuple[Path, Path], tmp_path: Path
) -> None:
    _, weights = released
    _, canonical = official_package
    base = ["eval", "--weights", str(weights), "--model", MODEL, "--data", str(canonical), "--quiet", "--device", "cpu"]
    reports = {}
    for name, extra in {
        "official": ["--protocol", "asymformer-official", "--input-spec", "asymformer_nyuv2_eval"],
        "rgb": ["--protocol", "asymformer-official", "--input-spec", "asymformer_nyuv2_eval", "--channel-order", "rgb"],
        "default_zero": ["--absent-classes", "zero"],
    }.items():
        path = tmp_path / f"{name}.json"
        assert main([*base, *extra, "--json", str(path)]) == 0
        reports[name] = json.loads(path.read_text())
    assert reports["official"]["protocol"]["input_spec"]["rgb"]["channel_order"] == "bgr"
    assert reports["rgb"]["protocol"]["input_spec"]["rgb"]["channel_order"] == "rgb"
    assert reports["rgb"]["metrics"]["confusion_matrix"] != reports["official"]["metrics"]["confusion_matrix"]
    assert reports["default_zero"]["protocol"]["absent_classes"] == "zero"
    assert main([*base, "--protocol", "geminifusion", "--multi-scale"]) == 2
