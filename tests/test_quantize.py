"""int8 inference: calibrated on synthetic scenes with trained demo weights it agrees with float32 at or above its
threshold, is refused below it, runs compiled on the user's path (predict, Segmenter) from a cached package, and its
file is told apart from float weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rgbxseg
from rgbxseg.cli import main
from rgbxseg.engine.quantize import quantize_weights
from rgbxseg.models.quantize import (
    DEFAULT_MIN_AGREEMENT,
    AgreementTooLowError,
    Int8FileError,
    calibrate_int8,
    int8_inference,
    load_int8,
)
from rgbxseg.models.weights import CheckpointError
from toy_models import TinySegmenter, randomise_batchnorms

pytest.importorskip("torchao", reason="int8 needs rgbxseg[int8]")


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AsymFormer B0-T trained by ``rgbxseg demo --quick`` on synthetic scenes."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    return out / "rgbd" / "model.safetensors"


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled-package folder the int8 tests share (a later test loads what an earlier one compiled)."""
    return tmp_path_factory.mktemp("int8-cache")


@pytest.fixture(scope="module")
def int8_file(demo_weights: Path, synthetic_scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model-int8.safetensors"
    report = quantize_weights(
        demo_weights, synthetic_scenes, out, frames=6, compiled=False, progress=False
    )  # reference int8 kernels: the same quantisation without a compile
    assert report.agreement >= DEFAULT_MIN_AGREEMENT
    return out


def test_int8_of_trained_demo_weights_agrees_with_float32_and_records_its_report(
    int8_file: Path, demo_weights: Path
) -> None:
    model, calibration, report = load_int8(int8_file)
    assert model.model_name == "asymformer_b0_t" and not model.training
    assert report["agreement"] >= report["min_agreement"] == DEFAULT_MIN_AGREEMENT
    assert report["test_frames"] == 8 and "6 frames" in report["calibration"]
    assert abs(report["miou_change"]) < 0.05 and report["versions"]["torchao"]
    assert calibration.float_names == tuple(report["float_modules"])
    assert len(calibration.observers) > 100
    float_state = rgbxseg.load_model(demo_weights).state_dict()
    for key, value in model.state_dict().items():  # the float weights, unchanged, next to the observers
        assert torch.equal(value, float_state[key]), key


def test_the_quantiser_refuses_a_model_below_its_threshold(
    demo_weights: Path, synthetic_scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "int8.safetensors"
    with pytest.raises(AgreementTooLowError, match=r"agrees with float32 on .* below the threshold of 99\.99 %"):
        quantize_weights(demo_weights, synthetic_scenes, out, frames=2, min_agreement=0.9999, compiled=False,
                         progress=False)  # fmt: skip
    assert not out.exists() and not list(tmp_path.iterdir()), "nothing written, no temporary left"
    argv = ["quantize", "--weights", str(demo_weights), "--data", str(synthetic_scenes), "--out", str(out)]
    assert main([*argv, "--frames", "2", "--reference-kernels", "--quiet", "--min-agreement", "0.9999"]) == 2
    error = capsys.readouterr().err
    assert "rgbxseg quantize: error:" in error and "nothing was written" in error and "--min-agreement" in error
    assert not out.exists()
    with pytest.raises(ValueError, match="min_agreement"):
        quantize_weights(demo_weights, synthetic_scenes, out, min_agreement=1.5)


def test_int8_files_are_told_apart_from_float_weights(int8_file: Path, demo_weights: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is an int8 model .* rgbxseg predict --weights"):
        rgbxseg.load_model(int8_file)
    with pytest.raises(Int8FileError, match="is not an int8 model: make one .* rgbxseg quantize"):
        load_int8(demo_weights)
    damaged = int8_file.parent / "damaged.safetensors"
    damaged.write_bytes(int8_file.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="damaged.safetensors is not a readable"):
        load_int8(damaged)


def test_predict_runs_the_int8_file_compiled_and_matches_float32(
    int8_file: Path, demo_weights: Path, synthetic_scenes: Path, tmp_path: Path, int8_cache: Path
) -> None:
    rgb_dir, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    rgb_dir.mkdir(), depth_dir.mkdir()
    name = sorted((synthetic_scenes / "rgb").iterdir())[0].name
    # a frame of another size than the calibration: one calibration serves every shape
    Image.open(synthetic_scenes / "rgb" / name).crop((0, 0, 96, 64)).save(rgb_dir / "frame.png")
    Image.open(synthetic_scenes / "depth" / name).crop((0, 0, 96, 64)).save(depth_dir / "frame.png")
    cache = int8_cache
    outputs = {}
    for kind, weights in (("int8", int8_file), ("float", demo_weights)):
        out = tmp_path / kind
        argv = ["predict", "--weights", str(weights), "--rgb-dir", str(rgb_dir), "--x-dir", str(depth_dir)]
        assert main([*argv, "--out", str(out), "--compile-cache", str(cache), "--compile", "off", "--no-progress"]) == 0
        outputs[kind] = np.asarray(Image.open(out / "labels" / "frame.png"))
    assert outputs["int8"].shape == (64, 96)
    assert (outputs["int8"] == outputs["float"]).mean() >= DEFAULT_MIN_AGREEMENT
    (package,) = cache.glob("asymformer_b0_t-int8-1x3x64x96-*.pt2")

    again = rgbxseg.Segmenter.from_int8(int8_file, compile_cache=cache)
    rgb = np.asarray(Image.open(rgb_dir / "frame.png"))
    depth = np.asarray(Image.open(depth_dir / "frame.png"))
    assert np.array_equal(again.predict(rgb, depth).labels, outputs["int8"])
    assert [event for event, *_ in again.run_model.events] == ["loaded"], "the second run loads the package"
    assert sorted(cache.iterdir()) == [package]


def test_bench_times_the_int8_file(
    int8_file: Path,
    int8_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RGBXSEG_COMPILE_CACHE", str(int8_cache))  # the package predict compiled at 64×96
    out = tmp_path / "bench.json"
    argv = ["bench", "--int8", str(int8_file), "--height", "64", "--width", "96", "--runs", "2", "--warmup", "0"]
    assert main([*argv, "--no-flops", "--threads", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["backend"] == "int8" and result["model"] == "asymformer_b0_t" and result["median_ms"] > 0
    assert "loaded the compiled asymformer_b0_t for 1×3×64×96" in capsys.readouterr().err
    assert main(["bench", "--model", "asymformer_b0_t", "--backend", "int8", "--height", "64", "--width", "96"]) == 2
    assert "rgbxseg bench --int8 FILE" in capsys.readouterr().err
    assert main(["bench", "--int8", str(int8_file), "--model", "asymformer_b0_t_cat"]) == 2
    assert "leave --model out" in capsys.readouterr().err


def test_compiled_int8_equals_the_reference_int8_kernels(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise_batchnorms(TinySegmenter()).eval()
    frames = [(torch.randn(1, 3, 32, 48), torch.randn(1, 1, 32, 48)) for _ in range(4)]
    calibration = calibrate_int8(model, frames)
    assert calibration.input_size == (32, 48)
    reference = int8_inference(model, calibration, ahead_of_time=False)
    compiled = int8_inference(model, calibration, cache_dir=tmp_path)
    rgb, x = torch.randn(2, 3, 16, 32), torch.randn(2, 1, 16, 32)
    with torch.inference_mode():
        expected, actual, fp32 = reference(rgb, x), compiled(rgb, x), model(rgb, x)
    assert [event for event, *_ in compiled.events] == ["compiled"]
    scale = fp32.abs().max().item()
    assert (actual - expected).abs().max().item() < 0.02 * scale, "same quantisation, other kernels"
    assert 0 < (actual - fp32).abs().max().item() < 0.1 * scale, "int8: close to float32, not equal"
    with pytest.raises(ValueError, match="share one shape"):
        calibrate_int8(model, [frames[0], (torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16))])
    with pytest.raises(ValueError, match="no calibration frames"):
        calibrate_int8(model, [])


def test_quantize_writes_its_report_as_json_and_never_overwrites(
    int8_file: Path, demo_weights: Path, synthetic_scenes: Path, tmp_path: Path
) -> None:
    argv = ["quantize", "--weights", str(demo_weights), "--data", str(synthetic_scenes), "--out", str(int8_file)]
    before = int8_file.read_bytes()
    assert main([*argv, "--quiet"]) == 2
    assert int8_file.read_bytes() == before
    out, report = tmp_path / "q.safetensors", tmp_path / "report.json"
    argv[-1] = str(out)
    assert main([*argv, "--frames", "2", "--reference-kernels", "--quiet", "--json", str(report)]) == 0
    written = json.loads(report.read_text())
    assert written["agreement"] >= DEFAULT_MIN_AGREEMENT and out.is_file()


def test_eval_scores_the_int8_file_as_quantize_reported(
    int8_file: Path, synthetic_scenes: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "eval.json"
    argv = ["eval", "--weights", str(int8_file), "--data", str(synthetic_scenes), "--device", "cpu", "--quiet"]
    assert main([*argv, "--compile-cache", str(tmp_path / "cache"), "--json", str(report_path)]) == 0
    evaluated = json.loads(report_path.read_text())
    assert evaluated["protocol"]["int8"] is True
    stored = load_int8(int8_file)[2]  # measured by quantize with the reference int8 kernels
    assert abs(evaluated["metrics"]["miou"] - stored["int8_miou"]) < 0.01
    with pytest.raises(ValueError, match="already an int8 model"):
        quantize_weights(int8_file, synthetic_scenes, tmp_path / "again.safetensors")
