"""The inference-optimised form computes what the trained model computes."""

from __future__ import annotations

import copy
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

import rgbxseg
from conftest import SMALL_MODELS
from rgbxseg.bench import benchmark
from rgbxseg.data.synthetic import render_scene
from rgbxseg.export import export_onnx
from rgbxseg.models import ASYMFORMER_TRAIN, layers
from rgbxseg.models.aot import CompiledInference
from rgbxseg.models.decoders import FusedMLPDecoder, MLPDecoder
from rgbxseg.models.fusion import CrossModalAttention
from rgbxseg.models.optimize import HalfPrecisionIsland, compiled_attention_dtype, optimize_for_inference
from toy_models import TinySegmenter, randomise_batchnorms


@pytest.fixture(scope="module")
def reference_model(reference_state: dict) -> rgbxseg.AsymFormer:
    model = rgbxseg.AsymFormer(num_classes=40).eval()
    model.load_state_dict(reference_state)
    return model


def test_fused_model_matches_the_fixture(reference: dict, reference_model: nn.Module) -> None:
    with torch.inference_mode():
        plain = reference_model(reference["rgb"], reference["depth"])
        for channels_last in (False, True):
            fused = optimize_for_inference(reference_model, channels_last=channels_last)
            out = fused(reference["rgb"], reference["depth"])
            assert (out - plain).abs().max() <= 1e-4
            assert (out - reference["logits"]).abs().max() <= 1e-4
    assert isinstance(fused.model.Decoder, FusedMLPDecoder)
    assert not any("linear_fuse" in name for name, _ in fused.named_modules())


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_every_variant_fuses_exactly(name: str) -> None:
    """Within 1e-4 for logits of O(10); relative beyond (KTB's fan-out initialised heads give random logits of O(100),
    where float32 rounding alone reaches 1e-4)."""
    model = randomise_batchnorms(rgbxseg.create_model(name, num_classes=7))
    rgb, depth = model.input_spec.example_inputs(2, 96, 128)
    with torch.inference_mode():
        expected = model(rgb, depth)
        fused = optimize_for_inference(model)
        tolerance = 1e-4 * max(1.0, float(expected.abs().max()) / 10)
        torch.testing.assert_close(fused(rgb, depth), expected, rtol=0, atol=tolerance)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules()), "every BatchNorm is folded"
    assert model.training is False and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "original kept"


def test_decoder_reordering_is_exact_and_cheaper() -> None:
    decoder = randomise_batchnorms(MLPDecoder([32, 64, 160, 256], num_classes=40, embed_dim=256))
    feats = [torch.randn(1, c, 32 // 2**i, 40 // 2**i) for i, c in enumerate([32, 64, 160, 256])]
    with torch.no_grad():
        expected = decoder(feats)
        fused = decoder.fuse()
        torch.testing.assert_close(fused(feats), expected, rtol=0, atol=1e-4)
    params = sum(p.numel() for p in fused.parameters())
    assert params == (32 + 64 + 160 + 256) * 256 + 256 + 256 * 40 + 40


@pytest.mark.parametrize("fuse_bias", [True, False])
def test_decoder_fuses_in_its_own_dtype(fuse_bias: bool) -> None:
    decoder = randomise_batchnorms(MLPDecoder([8, 16, 24, 32], num_classes=5, embed_dim=16, fuse_bias=fuse_bias))
    decoder = decoder.double().eval()
    feats = [torch.randn(1, c, 16 // 2**i, 20 // 2**i, dtype=torch.float64) for i, c in enumerate([8, 16, 24, 32])]
    with torch.no_grad():
        fused = decoder.fuse()
        assert {p.dtype for p in fused.parameters()} == {torch.float64}
        torch.testing.assert_close(fused(feats), decoder(feats), rtol=0, atol=1e-10)


def test_output_modes(reference: dict, reference_model: nn.Module) -> None:
    with torch.inference_mode():
        logits = reference_model(reference["rgb"], reference["depth"])
        quarter = optimize_for_inference(reference_model, output="quarter_logits")(reference["rgb"], reference["depth"])
        labels = optimize_for_inference(reference_model, output="labels")(reference["rgb"], reference["depth"])
    assert quarter.shape == (1, 40, 32, 40)
    assert labels.shape == (1, 128, 160) and labels.dtype == torch.int64
    assert (labels == logits.argmax(1)).float().mean() > 0.999
    with pytest.raises(ValueError, match="unknown output"):
        optimize_for_inference(reference_model, output="probabilities")


def test_bf16_keeps_the_argmax(reference: dict, reference_model: nn.Module) -> None:
    with torch.inference_mode():
        logits = reference_model(reference["rgb"], reference["depth"])
        half = optimize_for_inference(reference_model, dtype=torch.bfloat16)(reference["rgb"], reference["depth"])
    assert half.dtype == torch.float32
    agreement = (half.argmax(1) == logits.argmax(1)).float().mean().item()
    assert agreement >= 0.99, agreement


def test_bf16_keeps_the_argmax_on_synthetic_scenes(reference_model: nn.Module) -> None:
    scenes = [render_scene(seed, 96, 128) for seed in range(3)]
    rgb = ASYMFORMER_TRAIN.rgb.normalize(torch.stack([torch.from_numpy(s["rgb"]).permute(2, 0, 1) for s in scenes]))
    depth = ASYMFORMER_TRAIN.x.normalize(torch.stack([torch.from_numpy(s["depth"])[None] for s in scenes]))
    with torch.inference_mode():
        logits = reference_model(rgb, depth)
        half = optimize_for_inference(reference_model, dtype=torch.bfloat16)(rgb, depth)
    agreement = (half.argmax(1) == logits.argmax(1)).float().mean().item()
    assert agreement >= 0.99, agreement


def test_half_precision_islands_hand_rgb_features_on_without_casts(reference: dict, reference_model: nn.Module) -> None:
    """ConvNeXt stem → stage → next stem / SCC stay bf16; what feeds the float32 MiT branch comes back float32."""
    model = optimize_for_inference(reference_model, dtype=torch.bfloat16).model
    islands = {name: m for name, m in model.named_modules() if isinstance(m, HalfPrecisionIsland)}
    assert set(islands) == {f"down_sample_{k}.{part}" for k in range(1, 5) for part in ("rgb_stem", "rgb_layer")} | {
        f"down_sample_{k}.SCC" for k in range(2, 5)
    }
    seen: dict[str, torch.dtype] = {}
    for name, island in islands.items():
        island.register_forward_hook(lambda _m, _i, out, name=name: seen.update({name: out.dtype}))
    with torch.inference_mode():
        model(reference["rgb"], reference["depth"])
    assert {seen[n] for n in islands if ".rgb_" in n} == {torch.bfloat16}
    assert {seen[n] for n in islands if n.endswith("SCC")} == {torch.float32}
    assert {p.dtype for p in model.down_sample_2.depth_layer.parameters()} == {torch.float32}


def test_optimised_model_keeps_the_input_checks(reference_model: nn.Module) -> None:
    fused = optimize_for_inference(reference_model)
    with pytest.raises(rgbxseg.InputSizeError, match="Nearest valid sizes"):
        fused(torch.zeros(1, 3, 100, 128), torch.zeros(1, 1, 100, 128))
    with pytest.raises(ValueError, match="cuda_graphs=True needs the model on a CUDA device"):
        optimize_for_inference(reference_model, cuda_graphs=True)


def test_optimised_model_exports_to_onnx_with_parity(reference_model: nn.Module, tmp_path) -> None:
    fused = optimize_for_inference(reference_model, channels_last=False)
    report = export_onnx(fused, tmp_path / "fused.onnx", height=64, width=96, dynamic=True, exporter="legacy")
    assert len(report.parity) == 2 and max(check.max_abs_diff for check in report.parity) < 1e-4
    assert {check.shape for check in report.parity} == {(2, 64, 96), (3, 96, 160)}


def test_segmenter_and_bench_run_the_inference_form(reference_model: nn.Module) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    depth = rng.integers(500, 5000, (50, 70), dtype=np.uint16)
    plain = rgbxseg.Segmenter(reference_model).predict(rgb, depth, return_logits=True)
    fast = rgbxseg.Segmenter(reference_model, optimize=True).predict(rgb, depth, return_logits=True)
    assert np.abs(fast.logits - plain.logits).max() < 1e-4
    half = rgbxseg.Segmenter(reference_model, optimize=True, dtype="bf16").predict(rgb, depth)
    assert (half.labels == plain.labels).mean() > 0.98
    result = benchmark("asymformer_b0_t", height=64, width=96, warmup=0, runs=1, optimize=True, dtype="bf16")
    assert result.optimized and "inference form" in result.describe()
    assert result.freed_memory_retained == (platform.libc_ver()[0] == "glibc")
    assert (
        result.macs.conv_linear_macs
        < 0.9 * benchmark("asymformer_b0_t", height=64, width=96, warmup=0, runs=1).macs.conv_linear_macs
    )  # the reordered decoder does far less work


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_retained_memory_is_reused_instead_of_page_faulted_again() -> None:
    """Page faults (not times) of a loop allocating 64 MiB per call, with and without the setting: fresh processes,
    since it is process-wide. Retained, the heap grows during the first calls (small allocations between them split
    the freed block; measured: up to 8 growths in a bare process) and then reuses its pages; by default every call
    maps and faults in 16 Ki fresh 4 KiB pages."""
    probe = (
        "import resource, sys, torch; from rgbxseg.runtime import retain_freed_memory, freed_memory_retained\n"
        "if sys.argv[1] == 'retain': assert retain_freed_memory() and freed_memory_retained()\n"
        "for _ in range(20): torch.ones(16 << 20)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(10): torch.ones(16 << 20)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {
        mode: int(subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, check=True).stdout)
        for mode in ("default", "retain")
    }
    assert faults["default"] > 10 * 15_000, faults
    assert faults["retain"] < 2.5 * 16_384, faults


def test_inference_speed_script_measures_both_allocators(
    tmp_path: Path, benchmark_script: Callable[[str], ModuleType]
) -> None:
    script = benchmark_script("inference_speed")
    argv = ["--model", "asymformer_b0_t_cat", "--sizes", "40x64", "--batches", "1", "--runs", "1", "--warmup", "0"]
    assert script.main([*argv, "--out", str(tmp_path)]) == 0
    (markdown,) = tmp_path.glob("inference_speed_*.md")
    rows = json.loads(markdown.with_suffix(".json").read_text())["rows"]
    assert {(r["allocator"], r["size"]) for r in rows} == {("default", "40x64 (padded)"), ("retain", "40x64 (padded)")}
    assert len(rows) == 2 * 3  # the CPU forms without --forms (as trained, optimized fp32 and bf16), per setting
    baseline = rows[0]
    assert baseline["ratio"] == baseline["ratio_same_allocator"] == 1.0
    assert all(r["argmax_agreement"] >= 0.99 for r in rows if "fp32" in r["variant"])
    assert all(r["max_abs_logit_diff"] < 1e-4 for r in rows if "fp32" in r["variant"])
    assert "| 40x64 (padded) | 1 | rgbxseg as trained, eager fp32 | default |" in markdown.read_text()


def test_compiled_form_freezes_the_weights_and_matches() -> None:
    """``compile=True`` must really freeze (torch ignores freezing passed as a compile option): the weights then run
    as pre-packed oneDNN/MKL operators instead of aten convolutions and GEMMs."""
    model = randomise_batchnorms(TinySegmenter())
    rgb, depth = torch.randn(2, 3, 32, 48), torch.randn(2, 1, 32, 48)
    compiled = optimize_for_inference(model, compile=True)
    with torch.inference_mode():
        expected = model(rgb, depth)
        torch.testing.assert_close(compiled(rgb, depth), expected, rtol=0, atol=1e-5)
        with torch.profiler.profile() as profiler:
            compiled(rgb, depth)
    operators = {event.key for event in profiler.key_averages()}
    assert any(op.startswith(("mkldnn::", "mkl::")) for op in operators), sorted(operators)
    assert not operators & {"aten::addmm", "aten::mm", "aten::convolution"}, sorted(operators)


@pytest.mark.parametrize(
    ("heads", "queries", "keys", "key_width", "value_width"), [(2, 300, 300, 24, 8), (1, 70, 50, 16, 16)]
)
def test_matmul_attention_computes_the_fused_kernels_attention(
    monkeypatch: pytest.MonkeyPatch, heads: int, queries: int, keys: int, key_width: int, value_width: int
) -> None:
    """Blocks of queries (several here, the last one short), values narrower than keys, bf16 close to float32."""
    monkeypatch.setattr(layers, "MATMUL_ATTENTION_SCORES", 4000)
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, heads, n, key_width, generator=generator) for n in (queries, keys))
    v = torch.randn(1, heads, keys, value_width, generator=generator)
    padded = torch.nn.functional.pad(v, (0, key_width - value_width))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, padded, scale=0.3)[..., :value_width]
    torch.testing.assert_close(layers.token_attention(q, k, v, scale=0.3), exact, rtol=0, atol=1e-6)
    in_fp32 = layers.token_attention(q, k, v, scale=0.3, compute_dtype=torch.float32)
    torch.testing.assert_close(in_fp32, exact, rtol=0, atol=1e-5)
    in_bf16 = layers.token_attention(q, k, v, scale=0.3, compute_dtype=torch.bfloat16)
    assert in_bf16.dtype == torch.float32 and in_bf16.shape == exact.shape
    assert (in_bf16 - exact).abs().max() < 0.05
    with pytest.raises(ValueError, match="inference"):
        layers.token_attention(q, k, v, dropout_p=0.1, compute_dtype=torch.bfloat16)


def test_bf16_attention_keeps_the_argmax_and_training_keeps_the_fused_kernel(
    reference: dict, reference_model: nn.Module
) -> None:
    rgb, depth = reference["rgb"], reference["depth"]
    with torch.inference_mode():
        logits = reference_model(rgb, depth)
        for dtype in (None, torch.bfloat16):  # the int8 form's float graph, the compiled bf16 form
            form = optimize_for_inference(reference_model, dtype=dtype, attention_dtype=torch.bfloat16)
            attentions = [m for m in form.model.modules() if isinstance(m, CrossModalAttention)]
            assert len(attentions) == 3 and all(m.attention_dtype == torch.bfloat16 for m in attentions)
            agreement = (form(rgb, depth).argmax(1) == logits.argmax(1)).float().mean().item()
            assert agreement >= 0.99, (dtype, agreement)
    block = copy.deepcopy(reference_model.down_sample_2.SCC.cross_atten)
    block.attn_drop = 0.0
    inputs = [torch.randn(2, c, 6, 8) for c in (64, 192, 64)]
    block.train()
    trained = block(*inputs)
    block.attention_dtype = torch.bfloat16  # ignored while training: the exact fused kernel, which has dropout
    torch.testing.assert_close(block(*inputs), trained, rtol=0, atol=0)


def test_compiled_forms_choose_their_attention_precision_and_name_their_packages_by_it(tmp_path: Path) -> None:
    model = rgbxseg.AsymFormer(num_classes=40).eval()
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert compiled_attention_dtype(model, None) is None
    assert compiled_attention_dtype(model, torch.float16) is None
    assert compiled_attention_dtype(model, torch.bfloat16) == (torch.bfloat16 if native_bf16 else None)
    key = ((1, 3, 64, 64), (1, 1, 64, 64), torch.float32, torch.float32, "cpu")
    exact = CompiledInference(optimize_for_inference(model), tmp_path)
    matmul = CompiledInference(optimize_for_inference(model, attention_dtype=torch.bfloat16), tmp_path)
    assert exact.package_path(key) != matmul.package_path(key)
    assert compiled_attention_dtype(model.to("meta"), torch.bfloat16) is None  # not on a CPU
