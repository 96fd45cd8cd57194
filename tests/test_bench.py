"""``rgbxseg bench``: MACs that count attention, the reported protocol, clear errors; never wall-clock asserts."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from rgbxseg.bench import benchmark, count_macs
from rgbxseg.cli import main
from rgbxseg.runtime import BackendUnavailableError


def test_asymformer_b0t_macs_and_parameters_at_480x640(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The paper's "36.0 GFLOPs" are Conv/Linear MACs; the attention matmuls as executed bring the total to 42.45 G.

    Like the official code, CMA pads its values from Cd/4 to Cr/4 channels so the fused attention kernel can run
    (the unpadded attention would be 4.82 G, 40.79 G in total); the counter reports what executes.
    """
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", "asymformer_b0_t", "--height", "480", "--width", "640", "--warmup", "0", "--runs", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "GMACs" in printed and "GFLOPs (= 2 × MACs)" in printed
    result = json.loads(out.read_text())
    macs = result["macs"]
    assert abs(macs["conv_linear_macs"] / 1e9 - 36.0) <= 0.1
    assert macs["conv_linear_macs"] / 1e9 == pytest.approx(35.98, abs=0.005)
    assert macs["attention_macs"] / 1e9 == pytest.approx(6.47, abs=0.005)  # MiT 1.43 + CMA 5.05 (values padded)
    assert macs["total_macs"] / 1e9 == pytest.approx(42.45, abs=0.01)
    assert macs["params"] == 33_059_576
    assert (result["height"], result["width"], result["batch"], result["runs"]) == (480, 640, 1, 1)
    assert result["threads"] == torch.get_num_threads() and result["device"] == "cpu"
    assert result["median_ms"] > 0 and result["fps"] > 0 and len(result["loadavg_before"]) == 3
    assert result["other_cpu_share"] is None or 0 <= result["other_cpu_share"] <= 1


class TwoHeadAttention(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.tokens = tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).unflatten(-1, (2, -1)).transpose(1, 2)
        return F.scaled_dot_product_attention(q, q, q).transpose(1, 2).flatten(2)


def test_cpu_sdpa_kernel_is_counted_and_matches_the_math_backend() -> None:
    tokens, dim = 64, 32
    model = TwoHeadAttention(tokens, dim).eval()
    x = torch.randn(3, tokens, dim)
    expected_attention = 3 * 2 * tokens * tokens * (dim // 2 + dim // 2)  # b·h·Sq·Sk·(d + d_v)
    flash = count_macs(model, (x,))
    assert flash.attention_macs == expected_attention
    assert flash.conv_linear_macs == 3 * tokens * dim * dim
    with sdpa_kernel(SDPBackend.MATH):
        math = count_macs(model, (x,))
    assert math == flash


def test_benchmark_reports_the_protocol() -> None:
    result = benchmark("asymformer_b0_t_cat", height=32, width=64, batch=2, warmup=1, runs=3, count_flops=False)
    assert (result.batch, result.runs, result.warmup, result.backend, result.dtype) == (2, 3, 1, "eager", "fp32")
    assert result.min_ms <= result.median_ms <= result.p90_ms <= result.max_ms
    assert result.fps == pytest.approx(2 * 1000 / result.median_ms)
    assert "logical cores" in result.device_name and result.macs is None
    assert result.memory_measure  # what was measured is always said, even where it could not be
    text = result.describe()
    assert "1 warm-up + 3 timed runs (synchronised)" in text and "load average before" in text


@pytest.mark.parametrize(("backend", "dtype"), [("onnxruntime", "fp32"), ("eager", "bf16")])
def test_other_cpu_backends_run(backend: str, dtype: str) -> None:
    result = benchmark(
        "asymformer_b0_t_cat", height=32, width=32, warmup=0, runs=1, backend=backend, dtype=dtype,
        count_flops=False, onnx_exporter="legacy",
    )  # fmt: skip
    assert result.backend == backend and result.dtype == dtype and result.median_ms > 0


def test_unavailable_devices_dtypes_and_backends_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["bench", "--model", "asymformer_b0_t_cat", "--height", "32", "--width", "32", "--runs", "1", "--no-flops"]
    assert main([*base, "--dtype", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(ValueError, match="onnxruntime backend runs the fp32 export"):
        benchmark("asymformer_b0_t_cat", height=32, width=32, runs=1, backend="onnxruntime", dtype="bf16")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(BackendUnavailableError, match="tensorrt"):
            benchmark("asymformer_b0_t_cat", height=32, width=32, runs=1, backend="tensorrt", count_flops=False)


def test_matrix_script_writes_markdown_and_json(tmp_path: Path, benchmark_script: Callable[[str], ModuleType]) -> None:
    run_matrix = benchmark_script("run_matrix")
    argv = ["--models", "asymformer_b0_t_cat", "--configs", "eager:fp32", "eager:bf16", "--height", "32"]
    markdown = run_matrix.main([*argv, "--width", "32", "--warmup", "0", "--runs", "2", "--out", str(tmp_path)])
    text = markdown.read_text()
    assert "| asymformer_b0_t_cat | eager | bf16 |" in text and "1.00×" in text and "Machine:" in text
    assert json.loads(markdown.with_suffix(".json").read_text())["results"][0]["backend"] == "eager"


def test_the_official_implementation_is_imported_from_a_checkout_with_stand_ins_for_timm_and_thop(
    tmp_path: Path, benchmark_script: Callable[[str], ModuleType]
) -> None:
    """A checkout shaped like Fourier7754/AsymFormer (its B0_T here is rgbxseg's network under the official name and
    imports): the loader imports it, shares one set of weights with rgbxseg's model, and says what it stood in for."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "AsymFormer.py").write_text(
        "from thop import profile\n"
        "from timm.models.layers import DropPath, to_2tuple, trunc_normal_\n"
        "import rgbxseg\n\n"
        "class B0_T(rgbxseg.AsymFormer):\n"
        "    def __init__(self, num_classes, pretrained_backbone=True):\n"
        "        super().__init__(num_classes=num_classes)\n"
        "        assert to_2tuple(3) == (3, 3) and DropPath(0.1).eval()\n"
    )

    def forget_imports() -> None:
        for name in [name for name in sys.modules if name.split(".")[0] in ("src", "timm", "thop")]:
            del sys.modules[name]

    forget_imports()
    try:
        for top in ("timm", "thop"):
            sys.modules[top] = None  # not importable, as on a torch build without torchvision
        loader = benchmark_script("official_asymformer")
        official, ours, replaced = loader.load_official(tmp_path)
        assert replaced == ["timm", "thop"]
        rgb, depth = torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 64)
        with torch.inference_mode():
            torch.testing.assert_close(official(rgb, depth), ours(rgb, depth), rtol=0, atol=1e-5)
        with pytest.raises(FileNotFoundError, match="must name a checkout of Fourier7754/AsymFormer"):
            loader.load_official(tmp_path / "elsewhere")
    finally:
        forget_imports()
