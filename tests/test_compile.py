"""The compiled inference form on the user's path: equal to eager through Segmenter, predict and eval; its packages
cached across processes; when ``--compile auto`` compiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rgbxseg
from rgbxseg.engine.evaluate import evaluate_weights
from rgbxseg.models import aot
from rgbxseg.models.aot import AUTO_COMPILE_MIN_FRAMES, compile_for_inference, should_compile
from toy_models import TinySegmenter, randomise_batchnorms


def _tiny() -> TinySegmenter:
    torch.manual_seed(0)
    return randomise_batchnorms(TinySegmenter())


def test_compiled_segmenter_equals_eager_and_a_second_instance_loads_the_package(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    depth = rng.integers(500, 5000, (32, 48), dtype=np.uint16)
    eager = rgbxseg.Segmenter(_tiny()).predict(rgb, depth, return_logits=True)
    messages: list[str] = []
    compiled = rgbxseg.Segmenter(_tiny(), compile=True, compile_cache=tmp_path)
    compiled.run_model.log = messages.append
    prediction = compiled.predict(rgb, depth, return_logits=True)
    np.testing.assert_allclose(prediction.logits, eager.logits, rtol=0, atol=1e-4)
    assert np.array_equal(prediction.labels, eager.labels)
    assert [event for event, *_ in compiled.run_model.events] == ["compiled"]
    assert "compiling tiny for 1×3×32×48 ahead of time" in messages[0] and str(tmp_path) in messages[0]
    (package,) = tmp_path.glob("tiny-1x3x32x48-*.pt2")

    again = rgbxseg.Segmenter(_tiny(), compile=True, compile_cache=tmp_path)
    np.testing.assert_allclose(again.predict(rgb, depth, return_logits=True).logits, eager.logits, atol=1e-4)
    assert [event for event, *_ in again.run_model.events] == ["loaded"]
    key = ((1, 3, 32, 48), (1, 1, 32, 48), torch.float32, torch.float32, "cpu")
    other = compile_for_inference(TinySegmenter(), cache_dir=tmp_path)  # other weights: never the first package
    assert other.package_path(key) != again.run_model.package_path(key) == package
    assert sorted(tmp_path.iterdir()) == [package], "no temporary file is left behind"


def test_a_one_off_shape_runs_uncompiled_and_a_damaged_package_is_compiled_again(tmp_path: Path) -> None:
    model = compile_for_inference(_tiny(), cache_dir=tmp_path, compile_after=2)
    rgb, x = torch.randn(2, 3, 16, 16), torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        expected = _tiny()(rgb, x)
        torch.testing.assert_close(model(rgb, x), expected, rtol=0, atol=1e-5)
        assert model.events == [] and not list(tmp_path.iterdir()), "seen once: eager, nothing compiled"
        torch.testing.assert_close(model(rgb, x), expected, rtol=0, atol=1e-5)
        assert [event for event, *_ in model.events] == ["compiled"]
        (package,) = tmp_path.iterdir()
        package.write_bytes(b"not a package")
        damaged = compile_for_inference(_tiny(), cache_dir=tmp_path, log=print)
        torch.testing.assert_close(damaged(rgb, x), expected, rtol=0, atol=1e-5)
    assert [event for event, *_ in damaged.events] == ["recompiled"]


def test_auto_compiles_where_it_pays_and_on_needs_a_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aot, "compiler_available", lambda: True)
    assert should_compile("auto", frames=AUTO_COMPILE_MIN_FRAMES, stream=False, device="cpu")[0]
    assert not should_compile("auto", frames=AUTO_COMPILE_MIN_FRAMES - 1, stream=False, device="cpu")[0]
    assert not should_compile("auto", frames=None, stream=False, device="cpu")[0]  # a video of unknown length
    assert should_compile("auto", frames=None, stream=True, device="cpu") == (
        True,
        "a camera stream: its frame size is compiled once, then cached",
    )
    assert not should_compile("auto", frames=10_000, stream=False, device="cuda")[0]
    assert should_compile("on", frames=1, stream=False, device="cpu")[0]
    assert not should_compile("off", frames=10_000, stream=True, device="cpu")[0]
    monkeypatch.setattr(aot, "compiler_available", lambda: False)
    assert should_compile("auto", frames=10_000, stream=True, device="cpu") == (False, "no C++ compiler on the PATH")
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler .*apt install g\+\+"):
        should_compile("on", frames=1, stream=False, device="cpu")
    with pytest.raises(ValueError, match="compile must be one of auto, on, off"):
        should_compile("yes", frames=1, stream=False, device="cpu")


def _predict(weights: Path, folder: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "rgbxseg", "predict", "--weights", str(weights), "--rgb-dir",
               str(folder / "rgb"), "--x-dir", str(folder / "depth"), "--out", str(out), "--outputs", "labels",
               "--no-progress", *options]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env)


def test_predict_compiles_once_and_a_second_process_loads_the_package(weights: Path, tmp_path: Path) -> None:
    """The cheapest registered model, two frames of 64×96 in one batch: the first process compiles that shape
    (about half a minute here), the second loads the cached package and gives the same labels as eager."""
    rng = np.random.default_rng(1)
    for stem in ("a", "b"):
        (tmp_path / "rgb").mkdir(exist_ok=True)
        (tmp_path / "depth").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "rgb" / f"{stem}.png")
        Image.fromarray(rng.integers(500, 5000, (64, 96), dtype=np.uint16)).save(tmp_path / "depth" / f"{stem}.png")
    cache = tmp_path / "cache"
    first = _predict(weights, tmp_path, tmp_path / "first", "--compile", "on", "--compile-cache", str(cache))
    assert "compiling asymformer_b0_t_cat for 2×3×64×96 ahead of time" in first.stderr
    (package,) = cache.glob("*.pt2")
    written = package.stat().st_mtime_ns
    second = _predict(weights, tmp_path, tmp_path / "second", "--compile", "on", "--compile-cache", str(cache))
    assert "loaded the compiled asymformer_b0_t_cat for 2×3×64×96" in second.stderr
    assert "compiling" not in second.stderr.replace("rgbxseg predict: compiling (--compile on)", "")
    assert package.stat().st_mtime_ns == written and list(cache.glob("*.pt2")) == [package]
    eager = _predict(weights, tmp_path, tmp_path / "eager", "--compile", "off")
    assert "compil" not in eager.stderr
    for stem in ("a", "b"):
        labels = [
            np.asarray(Image.open(tmp_path / run / "labels" / f"{stem}.png")) for run in ("first", "second", "eager")
        ]
        assert np.array_equal(labels[0], labels[2]) and np.array_equal(labels[1], labels[2])


def test_eval_compiled_gives_the_same_metrics(weights: Path, synthetic_scenes: Path, tmp_path: Path) -> None:
    common = {"model_name": None, "progress": False, "device": "cpu"}
    eager = evaluate_weights(weights, synthetic_scenes, compile="off", **common)
    compiled = evaluate_weights(weights, synthetic_scenes, compile="on", compile_cache=tmp_path, **common)
    assert compiled.protocol["compiled"] and not eager.protocol["compiled"]
    assert compiled.metrics.miou == pytest.approx(eager.metrics.miou, abs=1e-6)
    assert np.array_equal(compiled.metrics.confusion, eager.metrics.confusion)
    assert len(list(tmp_path.glob("*.pt2"))) == 1, "the split's one frame size compiled once"
