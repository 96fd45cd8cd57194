"""Engine parts with independent checks: config parsing, schedule formula, metrics, multi-scale/flip inference."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rgbxseg.engine.checkpoint import load_training_checkpoint
from rgbxseg.engine.config import ConfigError, TrainConfig, apply_overrides, from_dict, load_config, to_dict
from rgbxseg.engine.evaluate import GEMINIFUSION_PROTOCOL, OFFICIAL_MULTI_SCALE, EvalProtocol, predict_scores
from rgbxseg.engine.metrics import ConfusionMatrix
from rgbxseg.engine.schedule import build_scheduler, warmup_poly_factor
from rgbxseg.models import CheckpointError

# --- config ------------------------------------------------------------------------------------------------------


def test_config_round_trips_and_coerces_types() -> None:
    config = from_dict(TrainConfig, {"optim": {"lr": 1, "betas": [0.9, 0.99]}, "data": {"crop_size": [240, 320]}})
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.optim.betas == (0.9, 0.99) and config.data.crop_size == (240, 320)
    assert from_dict(TrainConfig, to_dict(config)) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"lrr": 1.0}}, r"unknown key optim.lrr; valid keys here: .*lr"),
        ({"epochs": "many"}, "epochs: expected int"),
        ({"epochs": True}, "epochs: expected int"),
        ({"data": {"crop_size": [1, 2, 3]}}, "data.crop_size: expected 2 values"),
        ({"optim": {"grad_clip": "x"}}, "optim.grad_clip: expected float"),
        ({"model": ["x"]}, "model: expected a mapping"),
    ],
)
def test_config_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, data)


def test_dotted_overrides_parse_yaml_values() -> None:
    data = apply_overrides(
        {}, ["optim.lr=1e-4", "data.crop_size=[64, 96]", "ema_decay=null", "model.kwargs.rgb_drop_path=0"]
    )
    config = from_dict(TrainConfig, data)
    assert config.optim.lr == 1e-4 and config.data.crop_size == (64, 96) and config.ema_decay is None
    assert config.model.kwargs == {"rgb_drop_path": 0}
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides({}, ["optim.lr"])


def test_bundled_paper_config_is_the_paper_recipe() -> None:
    config = load_config("asymformer_nyuv2")
    assert (config.optim.lr, config.optim.weight_decay, config.data.batch_size, config.epochs) == (5e-5, 0.01, 8, 500)
    assert (config.schedule.warmup_epochs, config.schedule.power, config.data.crop_size) == (4.0, 0.9, (480, 640))
    assert config.data.scale_range == (1.0, 2.0) and config.data.flip_prob == 0.5 and config.data.hsv_jitter
    assert load_config("asymformer_sunrgbd").epochs == 200
    with pytest.raises(ConfigError, match="bundled configs: .*asymformer_nyuv2"):
        load_config("no_such_config")


def test_a_config_cannot_execute_code(tmp_path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("epochs: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not (tmp_path / "pwned").exists()


# --- schedule ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("iteration", [0, 1, 50, 99, 100, 101, 500, 999])
def test_warmup_poly_matches_the_formula(iteration: int) -> None:
    total, warmup = 1000, 100
    if iteration < warmup:
        alpha = iteration / warmup
        expected = 1e-3 * (1 - alpha) + alpha
    else:
        expected = (1 - (iteration - warmup) / (total - warmup)) ** 0.9
    assert warmup_poly_factor(iteration, total, warmup) == pytest.approx(expected, rel=1e-12)


def test_scheduler_steps_per_iteration() -> None:
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=5e-5)
    scheduler = build_scheduler(optimizer, total=200, warmup=20)
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(5e-8)
    assert lrs[20] == pytest.approx(5e-5)
    assert lrs[110] == pytest.approx(5e-5 * (1 - 90 / 180) ** 0.9)
    assert max(lrs) == pytest.approx(5e-5) and lrs[-1] < lrs[-2]


# --- metrics -----------------------------------------------------------------------------------------------------


def numpy_metrics(pred: np.ndarray, label: np.ndarray, k: int) -> dict:
    """Independent reference: per-class loops over boolean masks."""
    valid = label > 0
    ious, accs, freqs = [], [], []
    for c in range(1, k + 1):
        gt, pr = (label == c) & valid, (pred + 1 == c) & valid
        inter, union = (gt & pr).sum(), (gt | pr).sum()
        ious.append(inter / union if union else math.nan)
        accs.append(inter / gt.sum() if gt.sum() else math.nan)
        freqs.append(gt.sum() / valid.sum())
    return {
        "miou": np.nanmean(ious),
        "pixel_accuracy": ((pred + 1 == label) & valid).sum() / valid.sum(),
        "mean_accuracy": np.nanmean(accs),
        "fwiou": sum(f * i for f, i in zip(freqs, ious, strict=True) if not math.isnan(i)),
        "iou": ious,
    }


def test_metrics_equal_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(0)
    k = 7
    label = rng.integers(0, k, size=(4, 30, 40))  # class 7 never labelled; 0 is void
    pred = np.where(rng.random(label.shape) < 0.6, np.maximum(label - 1, 0), rng.integers(0, k - 1, label.shape))
    confusion = ConfusionMatrix(k)
    for i in range(4):  # accumulated over batches = one dataset-level matrix
        confusion.update(torch.from_numpy(pred[i : i + 1]), torch.from_numpy(label[i : i + 1]))
    metrics = confusion.compute()
    expected = numpy_metrics(pred, label, k)
    assert metrics.miou == pytest.approx(expected["miou"])
    assert metrics.pixel_accuracy == pytest.approx(expected["pixel_accuracy"])
    assert metrics.mean_accuracy == pytest.approx(expected["mean_accuracy"])
    assert metrics.frequency_weighted_iou == pytest.approx(expected["fwiou"])
    np.testing.assert_allclose(metrics.iou, expected["iou"])
    assert math.isnan(metrics.iou[6])  # never labelled nor predicted: excluded from the mean
    assert metrics.labelled_pixels == (label > 0).sum()
    assert "mIoU" in metrics.table() and metrics.to_dict()["per_class"][6]["iou"] is None


def test_labels_above_the_class_count_are_refused() -> None:
    with pytest.raises(ValueError, match="label value 5 exceeds the 4 classes"):
        ConfusionMatrix(4).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 5))


# --- multi-scale and flip ----------------------------------------------------------------------------------------


class PixelwiseModel(nn.Module):
    """A 1×1-conv 'segmenter': flip-equivariant and, for a constant image, scale-invariant."""

    input_multiple = 32

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 5, kernel_size=1)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert rgb.shape[-2] % 32 == 0 and rgb.shape[-1] % 32 == 0
        return self.head(torch.cat([rgb, x], dim=1))


def test_flip_doubles_the_scores_of_a_flip_equivariant_model() -> None:
    model = PixelwiseModel()
    rgb, x = torch.randn(2, 3, 50, 70), torch.randn(2, 1, 50, 70)
    single = predict_scores(model, rgb, x)
    assert single.shape == (2, 5, 50, 70)
    torch.testing.assert_close(predict_scores(model, rgb, x, EvalProtocol(flip=True)), 2 * single)


def test_multi_scale_shapes_and_invariance_on_constant_inputs() -> None:
    model = PixelwiseModel()
    rgb, x = torch.ones(1, 3, 64, 96) * 0.3, torch.ones(1, 1, 64, 96) * -0.7
    single = predict_scores(model, rgb, x)
    multi = predict_scores(model, rgb, x, OFFICIAL_MULTI_SCALE)
    assert multi.shape == single.shape
    torch.testing.assert_close(multi, 3 * single)
    probs = predict_scores(model, rgb, x, EvalProtocol(scales=(0.5, 1.0, 1.5), flip=True, fusion="softmax"))
    torch.testing.assert_close(probs.sum(1), torch.full((1, 64, 96), 6.0))


def test_sliding_windows_cover_the_image_like_the_whole_image() -> None:
    model = PixelwiseModel()
    rgb, x = torch.randn(1, 3, 100, 150), torch.randn(1, 1, 100, 150)
    whole = predict_scores(model, rgb, x)
    windows = predict_scores(model, rgb, x, EvalProtocol(window=(64, 64), stride=(40, 40)))
    torch.testing.assert_close(windows, whole)


def test_protocol_validation() -> None:
    with pytest.raises(ValueError, match="unknown score fusion"):
        EvalProtocol(fusion="vote")
    with pytest.raises(ValueError, match="stride needs a window"):
        EvalProtocol(stride=(8, 8))


def test_a_corrupt_training_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"format": "rgbxseg-train-1", "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])  # a copy cut short
    with pytest.raises(CheckpointError, match=r"last\.pt is not a readable PyTorch checkpoint"):
        load_training_checkpoint(path)


def test_warmup_poly_from_the_start_as_tokenfusion_does() -> None:
    """GeminiFusion's schedule: warm-up from 1e-6 over 1500 iterations, then (1 − t/40000)^1 counted from t = 0 (the
    rate drops when the warm-up ends) and held at its last value from 40000 on."""
    factor = functools.partial(warmup_poly_factor, total=40_000, warmup=1500, start_factor=1e-6, power=1.0,
                               from_start=True)  # fmt: skip
    assert factor(0) == pytest.approx(1e-6)
    assert factor(750) == pytest.approx(1 - (1 - 0.5) * (1 - 1e-6))
    assert factor(1499) > 0.999 and factor(1500) == pytest.approx(1 - 1500 / 40_000)
    assert factor(39_999) == factor(40_000) == factor(55_000) == pytest.approx(2.5e-5)


def test_geminifusion_evaluation_size_and_resizing() -> None:
    """Shorter side 480, then both sides up to a multiple of 32, images bilinear and labels nearest."""
    assert GEMINIFUSION_PROTOCOL.evaluation_size(480, 640) == (480, 640)
    assert GEMINIFUSION_PROTOCOL.evaluation_size(530, 730) == (480, 672)  # 730 × 480/530 = 661.1 → 661 → 672
    assert GEMINIFUSION_PROTOCOL.evaluation_size(427, 561) == (480, 640)
    labels = torch.arange(12).reshape(1, 3, 4).repeat_interleave(10, 1).repeat_interleave(10, 2)  # 30 × 40
    rgb, x, resized = GEMINIFUSION_PROTOCOL.resize_inputs(torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40), labels)
    assert rgb.shape == (1, 3, 480, 640) and x.shape == (1, 3, 480, 640) and resized.shape == (1, 480, 640)
    assert set(resized.unique().tolist()) == set(range(12)), "labels are never blended"
    with pytest.raises(ValueError, match="logit_upsampling must be one of"):
        EvalProtocol(logit_upsampling="nearest")
