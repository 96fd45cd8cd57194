"""ONNX export with onnxruntime parity for every registered model, the exporter choice, and the TensorRT path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import rgbxseg
from conftest import ASYMFORMER_MODELS
from rgbxseg import export
from rgbxseg.cli import main
from rgbxseg.export import OnnxParityError, build_tensorrt_engine, export_onnx, fp16_sensitive_nodes
from rgbxseg.inputs import IMAGENET_RGB, ChannelNormalization, InputSpec, ModalityInput
from rgbxseg.metadata import WeightsMetadata
from rgbxseg.runtime import BackendUnavailableError

THERMAL = ModalityInput("thermal", "thermal_8bit", 3, ChannelNormalization(255.0, (0.5,), (0.25,)))


class TinyRGBT(rgbxseg.SegmentationModel):
    """Two conv branches and a 1×1 head on RGB + thermal tiled to 3 channels: exports in a fraction of a second."""

    input_spec = InputSpec("tiny_rgbt", IMAGENET_RGB, THERMAL, multiple=8)

    def __init__(self) -> None:
        super().__init__("tiny_rgbt", num_classes=3)
        self.rgb = nn.Conv2d(3, 4, 3, padding=1)
        self.thermal = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 3, 1)
        self.weights_metadata = WeightsMetadata(
            "tiny_rgbt", 3, ("a", "b", "c"), ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)), self.input_spec
        )

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor) -> torch.Tensor:
        self.check_inputs(rgb, thermal)
        return self.head(torch.cat((self.rgb(rgb), self.thermal(thermal)), 1))


@pytest.mark.parametrize("name", [*ASYMFORMER_MODELS, "geminifusion_mit_b0"])
def test_asymformer_variants_and_geminifusion_b0_export_with_parity_at_two_shapes(name: str, tmp_path: Path) -> None:
    """Legacy exporter (≈ 5 s per model here; the dynamo one takes ≈ 60 s dynamic): dynamic batch, H and W."""
    model = rgbxseg.create_model(name).eval()
    report = export_onnx(model, tmp_path / "m.onnx", height=32, width=32, dynamic=True, exporter="legacy")
    multiple = model.input_multiple
    assert [check.shape for check in report.parity] == [(2, 32, 32), (3, 32 + multiple, 32 + 2 * multiple)]
    assert max(check.max_abs_diff for check in report.parity) < 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["rgb", "depth"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert report.opset == 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"])[0] == "wall"
    assert json.loads(props["rgbxseg_metadata"])["model"] == name
    assert rgbxseg.InputSpec.from_dict(json.loads(props["input_spec"])) == model.input_spec


def test_cli_default_export_is_dynamo_static_and_rejects_other_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default path (dynamo, opset 18) on the flagship model: two inputs checked, another shape refused."""
    out = tmp_path / "asymformer.onnx"
    argv = ["export", "onnx", "--model", "asymformer_b0_t", "--out", str(out), "--height", "32", "--width", "64"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "dynamo exporter, opset 18, static 1×32×64" in printed
    assert printed.count("onnxruntime vs PyTorch at 1×32×64") == 2
    assert "another input shape rejected by onnxruntime: yes" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[1, 3, 32, 64], [1, 1, 32, 64]]


def test_parity_failure_is_loud_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = TinyRGBT().eval()
    original = export._export_legacy

    def export_then_perturb(net: nn.Module, *args: object) -> None:
        with torch.no_grad():
            net.head.bias += 1e-2  # the file gets the perturbed weights, PyTorch then compares with the originals
        try:
            original(net, *args)
        finally:
            with torch.no_grad():
                net.head.bias -= 1e-2

    monkeypatch.setitem(export.EXPORTERS, "legacy", export_then_perturb)
    with pytest.raises(OnnxParityError, match=r"differs from PyTorch by 1\.0\d*e-02"):
        export_onnx(model, tmp_path / "bad.onnx", height=16, width=16, exporter="legacy")
    assert list(tmp_path.iterdir()) == []


def test_auto_falls_back_to_legacy_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setitem(export.EXPORTERS, "dynamo", broken)
    report = export_onnx(TinyRGBT(), tmp_path / "t.onnx", height=16, width=24, dynamic=True)
    assert report.exporter == "legacy" and report.opset == 18
    assert "aten::frobnicate" in report.fallback_reason
    assert [c.shape for c in report.parity] == [(2, 16, 24), (3, 24, 40)]


def test_input_names_and_metadata_follow_the_input_spec(tmp_path: Path) -> None:
    """An RGB-thermal model exports inputs ``rgb`` and ``thermal`` (3 channels) and says how to normalise them."""
    report = export_onnx(TinyRGBT(), tmp_path / "t.onnx", height=16, width=16, exporter="legacy")
    assert report.parity
    proto = onnx.load(str(tmp_path / "t.onnx"))
    assert [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in proto.graph.input] == [
        ("rgb", [1, 3, 16, 16]),
        ("thermal", [1, 3, 16, 16]),
    ]
    props = {p.key: p.value for p in proto.metadata_props}
    assert InputSpec.from_dict(json.loads(props["input_spec"])) == TinyRGBT.input_spec
    assert "thermal (B, 3, H, W)" in proto.doc_string


def test_opset_selects_the_exporter(tmp_path: Path) -> None:
    report = export_onnx(TinyRGBT(), tmp_path / "t.onnx", height=16, width=16, opset=17)
    assert (report.exporter, report.opset) == ("legacy", 17)
    assert report.other_shape_rejected
    with pytest.raises(ValueError, match="dynamo exporter emits opset ≥ 18, not 17"):
        export_onnx(TinyRGBT(), tmp_path / "t.onnx", height=16, width=16, opset=17, exporter="dynamo")
    with pytest.raises(ValueError, match="multiples of 8"):
        export_onnx(TinyRGBT(), tmp_path / "t.onnx", height=12, width=16)


def test_fp16_sensitive_nodes_follow_the_official_rule() -> None:
    weights = {
        "fine": np.array([0.5, -0.25], np.float32),
        "overflow": np.array([1e5, 1.0], np.float32),  # fp16 max is 65504
        "coarse": np.array([2049.0], np.float32),  # fp16 rounds 2049 to 2048: change 1 > 1e-3
        "zero": np.array([0.0, 1.0], np.float32),  # |w| ≤ 1e-7 is flushed in fp16
        "shape": np.array([0, -1], np.int64),  # integer initializers are not weights
    }
    nodes = [helper.make_node("Mul", ["x", name], [f"y_{name}"], name=f"mul_{name}") for name in weights]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [2]) for name in weights],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    assert fp16_sensitive_nodes(helper.make_model(graph)) == ["mul_overflow", "mul_coarse", "mul_zero"]


def test_tensorrt_says_clearly_when_it_is_not_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'rgbxseg\[tensorrt\]'"):
        build_tensorrt_engine(tmp_path / "m.onnx", tmp_path / "m.engine")
    assert main(["export", "tensorrt", "--onnx", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "e")]) == 2
    assert "needs the Python package 'tensorrt', which is not installed" in capsys.readouterr().err
