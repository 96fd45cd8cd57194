"""KTB's evaluation (Keep the Balance, CVPR 2025; ``val_mm.py`` of the released code): the shorter side to the eval
size and both sides up to a multiple of 32 in two resizes, single scale or ×0.5…1.75 with flips and summed softmax,
and a mean IoU over all classes. Checked against an independent re-implementation of the official procedure written
here (its resizes, its scaled sizes, its TP/FP/FN metric)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rgbxseg.cli import main
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.engine.evaluate import (
    EVAL_PROTOCOLS,
    KTB_MULTI_SCALE,
    KTB_PROTOCOL,
    MULTI_SCALE_OF,
    EvalProtocol,
    evaluate,
    predict_scores,
)
from toy_models import FrozenTwoHeadToy

CLASSES = 5
KTB_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def toy_model() -> FrozenTwoHeadToy:
    """A seeded toy model whose last class never wins (a class that occurs nowhere)."""
    torch.manual_seed(0)
    model = FrozenTwoHeadToy(CLASSES).eval()
    with torch.no_grad():
        model.main_head.bias[-1] = -100.0
    return model


# --- the official procedure, written out -----------------------------------------------------------------------------


def official_preprocess(
    rgb: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, eval_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``augmentations_mm.Resize``: shorter side to ``eval_size`` (sizes ``round``ed), then each side up to a multiple
    of 32; torchvision 0.11 tensor resizes: bilinear without antialiasing for the inputs, nearest for the labels."""
    height, width = rgb.shape[-2:]
    factor = eval_size / min(height, width)
    first = round(height * factor), round(width * factor)
    second = tuple(-(-side // 32) * 32 for side in first)
    for size in (first, second):
        rgb, x = (F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (rgb, x))
        labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return rgb, x, labels


def official_msf(model: torch.nn.Module, rgb: torch.Tensor, x: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """``val_mm.evaluate_msf``: sizes ⌈int(s·H)/32⌉·32, every input bilinear with align_corners=True, logits (flipped
    back) resized to H × W with align_corners=True, softmax, summed."""
    height, width = rgb.shape[-2:]
    total = torch.zeros(rgb.shape[0], CLASSES, height, width)
    for scale in KTB_SCALES:
        size = (-(-int(scale * height) // 32) * 32, -(-int(scale * width) // 32) * 32)
        images = [F.interpolate(t, size=size, mode="bilinear", align_corners=True) for t in (rgb, x)]
        logits = model(*images)
        total += F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True).softmax(1)
        if flip:
            logits = model(*(t.flip(3) for t in images)).flip(3)
            total += F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=True).softmax(1)
    return total


def official_iou(predictions: list[torch.Tensor], labels: list[torch.Tensor]) -> list[float]:
    """``semseg/metrics.py``: TP, FP, FN per class over labels ≠ 255, IoU = TP / max(TP + FP + FN, 1e-8)."""
    tp, fp, fn = ([0] * CLASSES for _ in range(3))
    for pred, gt in zip(predictions, labels, strict=True):
        valid = gt != 255
        for c in range(CLASSES):
            tp[c] += int(((gt == c) & (pred == c) & valid).sum())
            fp[c] += int(((gt != c) & (pred == c) & valid).sum())
            fn[c] += int(((gt == c) & (pred != c) & valid).sum())
    return [tp[c] / max(tp[c] + fp[c] + fn[c], 1e-8) for c in range(CLASSES)]


# --- sizes -----------------------------------------------------------------------------------------------------------


def test_ktb_protocols_are_registered() -> None:
    assert EVAL_PROTOCOLS["ktb"] is KTB_PROTOCOL and EVAL_PROTOCOLS["ktb-ms"] is KTB_MULTI_SCALE
    assert MULTI_SCALE_OF["ktb"] == "ktb-ms"
    assert KTB_PROTOCOL.absent_classes == KTB_MULTI_SCALE.absent_classes == "zero"
    assert (KTB_PROTOCOL.shorter_side, KTB_PROTOCOL.scales, KTB_PROTOCOL.flip) == (480, (1.0,), False)
    assert (KTB_MULTI_SCALE.scales, KTB_MULTI_SCALE.flip, KTB_MULTI_SCALE.size_ceil) == (KTB_SCALES, True, 32)


def test_ktb_evaluation_size_is_shorter_side_then_up_to_32() -> None:
    assert KTB_PROTOCOL.evaluation_size(427, 561) == (480, 640)  # 561 · 480/427 = 630.6 → 631 → 640
    assert KTB_PROTOCOL.evaluation_size(480, 640) == (480, 640)
    assert replace(KTB_PROTOCOL, shorter_side=720).evaluation_size(720, 1280) == (736, 1280)  # PST900
    assert replace(KTB_PROTOCOL, shorter_side=1024).evaluation_size(1024, 1024) == (1024, 1024)  # DeLiVER


@pytest.mark.parametrize(
    ("frame", "eval_size", "first", "expected"),
    [((427, 561), 480, (480, 631), (480, 640)), ((720, 1280), 720, (720, 1280), (736, 1280)),
     ((600, 800), 480, (480, 640), (480, 640)), ((480, 640), 480, (480, 640), (480, 640))],
    ids=["nyu-in-sun", "pst900", "shrinking", "unchanged"],
)  # fmt: skip
def test_ktb_resizes_twice_as_the_official_code(
    frame: tuple[int, int], eval_size: int, first: tuple[int, int], expected: tuple[int, int]
) -> None:
    generator = torch.Generator().manual_seed(1)
    rgb, x = torch.rand(1, 3, *frame, generator=generator), torch.rand(1, 1, *frame, generator=generator)
    labels = torch.randint(0, CLASSES + 1, (1, *frame), generator=generator)
    protocol = replace(KTB_PROTOCOL, shorter_side=eval_size)
    ours = protocol.resize_inputs(rgb, x, labels)
    official = official_preprocess(rgb, x, labels, eval_size)
    assert ours[0].shape[-2:] == ours[2].shape[-2:] == expected
    for mine, theirs in zip(ours, official, strict=True):
        assert torch.equal(mine, theirs)
    if first not in (frame, expected):  # two resizes, not one: 427×561 → 480×631 → 480×640
        assert not torch.allclose(ours[0], F.interpolate(rgb, size=expected, mode="bilinear"), atol=1e-4)
    if frame == (600, 800):  # shrinking: torchvision < 0.17 does not antialias tensors, GeminiFusion's does
        antialiased = replace(protocol, resize_antialias=True).resize_inputs(rgb, x, labels)[0]
        assert not torch.allclose(antialiased, ours[0], atol=1e-3)


def test_ktb_multi_scale_sizes_and_twelve_runs() -> None:
    sizes = [(256, 320), (384, 480), (480, 640), (608, 800), (736, 960), (864, 1120)]
    assert KTB_MULTI_SCALE.input_sizes(480, 640) == sizes
    assert KTB_MULTI_SCALE.scaled_size(100, 140, 0.75) == (96, 128)  # int(75.0) = 75 → 96, int(105.0) → 128
    runs: list[tuple[int, int]] = []

    def counting(rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        runs.append(tuple(rgb.shape[-2:]))
        assert x.shape[-2:] == rgb.shape[-2:]
        return torch.zeros(1, CLASSES, *rgb.shape[-2:])

    scores = predict_scores(counting, torch.zeros(1, 3, 480, 640), torch.zeros(1, 1, 480, 640), KTB_MULTI_SCALE)
    assert sorted(runs) == sorted(sizes * 2) and len(runs) == 12
    torch.testing.assert_close(scores, torch.full_like(scores, 12 / CLASSES))  # 12 uniform softmax maps
    runs.clear()
    predict_scores(counting, torch.zeros(1, 3, 480, 640), torch.zeros(1, 1, 480, 640), KTB_PROTOCOL)
    assert runs == [(480, 640)]


def test_size_ceil_is_validated() -> None:
    with pytest.raises(ValueError, match="size_ceil must be positive"):
        EvalProtocol(size_ceil=0)
    with pytest.raises(ValueError, match="size_floor and size_ceil"):
        EvalProtocol(size_floor=32, size_ceil=32)


# --- scores and metric against the official procedure ---------------------------------------------------------------


@pytest.mark.parametrize("frame", [(96, 128), (64, 160)])
def test_ktb_multi_scale_scores_equal_the_official_msf(frame: tuple[int, int]) -> None:
    model = toy_model()
    generator = torch.Generator().manual_seed(2)
    rgb, x = torch.randn(1, 3, *frame, generator=generator), torch.randn(1, 1, *frame, generator=generator)
    with torch.inference_mode():
        ours = predict_scores(model, rgb, x, KTB_MULTI_SCALE, model.input_multiple)
        official = official_msf(model, rgb, x)
        single = predict_scores(model, rgb, x, KTB_PROTOCOL, model.input_multiple)
        official_single = model(rgb, x).softmax(1)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-5)
    assert torch.equal(ours.argmax(1), official.argmax(1))
    torch.testing.assert_close(single, official_single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("protocol", [KTB_PROTOCOL, KTB_MULTI_SCALE], ids=["ktb", "ktb-ms"])
def test_ktb_evaluate_equals_the_official_pipeline_and_metric(protocol: EvalProtocol) -> None:
    """Two frames of other sizes (one shrinks, one grows) at eval size 48, void pixels, and a class that occurs in
    neither labels nor predictions: it counts as IoU 0 in the mean."""
    model = toy_model()
    protocol = replace(protocol, shorter_side=48)
    generator = torch.Generator().manual_seed(3)
    samples, predictions, references = [], [], []
    for index, frame in enumerate([(70, 90), (37, 53)]):
        rgb, depth = torch.randn(3, *frame, generator=generator), torch.randn(1, *frame, generator=generator)
        labels = torch.randint(0, CLASSES, frame, generator=generator)  # 0 void, 1..4: the last class never occurs
        samples.append({"rgb": rgb, "depth": depth, "label": labels, "id": str(index)})
        r, d, gt = official_preprocess(rgb[None], depth[None], labels[None], 48)
        with torch.inference_mode():
            scores = official_msf(model, r, d) if protocol.flip else model(r, d).softmax(1)
        predictions.append(scores.argmax(1))
        references.append(torch.where(gt == 0, 255, gt - 1))  # the official labels: void 255, classes from 0
    assert [tuple(p.shape[-2:]) for p in predictions] == [(64, 64), (64, 96)]  # 48×62, 48×69 → ↑32
    metrics = evaluate(model, samples, num_classes=CLASSES, protocol=protocol, progress=False)
    expected = official_iou(predictions, references)
    assert expected[-1] == 0 and metrics.iou[-1] == 0
    assert metrics.iou == pytest.approx(expected, abs=1e-12)
    assert metrics.miou == pytest.approx(sum(expected) / CLASSES, abs=1e-12)
    assert int(metrics.confusion.sum()) == sum(int((gt != 255).sum()) for gt in references)
    skipped = evaluate(model, samples, num_classes=CLASSES, protocol=replace(protocol, absent_classes="skip"),
                       progress=False)  # fmt: skip
    assert skipped.miou == pytest.approx(sum(expected) / (CLASSES - 1), abs=1e-12)


# --- the command line ------------------------------------------------------------------------------------------------


def test_cli_ktb_protocols(weights: Path, tmp_path: Path) -> None:
    """``--protocol ktb`` (with ``--shorter-side``), ``--multi-scale`` giving ktb-ms, and the JSON that says so; two
    48×64 frames evaluated at 64×96 (64×85 rounded up)."""
    data = generate_synthetic_dataset(tmp_path / "scenes", num_train=1, num_test=2, height=48, width=64, seed=5,
                                      progress=False)  # fmt: skip
    base = ["eval", "--weights", str(weights), "--data", str(data), "--quiet", "--device", "cpu",
            "--shorter-side", "64"]  # fmt: skip
    reports = {}
    for name, extra in {
        "ktb": ["--protocol", "ktb"],
        "ktb_multi_scale": ["--protocol", "ktb", "--multi-scale"],
    }.items():
        path = tmp_path / f"{name}.json"
        assert main([*base, *extra, "--json", str(path)]) == 0
        reports[name] = json.loads(path.read_text())
    single, multi = reports["ktb"]["protocol"], reports["ktb_multi_scale"]["protocol"]
    assert single["absent_classes"] == multi["absent_classes"] == "zero"
    assert single["shorter_side"] == multi["shorter_side"] == 64
    assert single["resize_antialias"] is False and single["fusion"] == "softmax" and single["scales"] == [1.0]
    assert single["resolution"].startswith(
        "shorter side 64, both sides up to a multiple of 32 (images bilinear without antialiasing, labels nearest)"
    )
    assert multi["scales"] == list(KTB_SCALES) and multi["flip"] is True and multi["size_ceil"] == 32
    assert multi["x_interpolation"] == "bilinear" and multi["inputs_align_corners"] and multi["fuse_after_resize"]
    expected = replace(KTB_MULTI_SCALE, shorter_side=64).describe()  # --multi-scale gives ktb-ms
    assert {key: multi[key] for key in expected} == json.loads(json.dumps(expected))
    assert reports["ktb"]["metrics"]["confusion_matrix"] != reports["ktb_multi_scale"]["metrics"]["confusion_matrix"]
    assert main([*base, "--protocol", "dplnet-ms", "--multi-scale"]) == 2
