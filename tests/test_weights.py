"""Weights I/O: the released checkpoint layouts, our safetensors format, ImageNet backbones, and refusals."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import rgbxseg
from rgbxseg.classes import SUNRGBD_37
from rgbxseg.metadata import WeightsMetadata
from rgbxseg.models import ASYMFORMER_NYUV2_EVAL, CheckpointError, CheckpointMismatchError
from rgbxseg.models.asymformer import current_to_legacy, legacy_to_current
from rgbxseg.models.backbones import CONVNEXT_CONFIGS, MIT_CONFIGS, ConvNeXt, MixTransformer


def _logits(model: torch.nn.Module, reference: dict) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(reference["rgb"], reference["depth"])


@pytest.fixture(scope="module")
def reference_logits_ours(reference: dict, reference_state: dict) -> torch.Tensor:
    model = rgbxseg.AsymFormer(num_classes=40)
    model.load_state_dict(reference_state)
    return _logits(model, reference)


def test_legacy_layout_is_the_released_one(manifest: dict, reference_state: dict) -> None:
    legacy = current_to_legacy(reference_state)
    assert {k: list(v.shape) for k, v in legacy.items()} == {
        k: v["shape"] for k, v in manifest["legacy_2023_checkpoint_state_dict"].items()
    }
    back = legacy_to_current(legacy)
    assert list(back) == list(reference_state)
    assert all(torch.equal(back[k], reference_state[k]) for k in back)


def test_released_checkpoint_container_loads_losslessly(
    tmp_path: Path, reference: dict, reference_state: dict, reference_logits_ours: torch.Tensor
) -> None:
    path = tmp_path / "ckpt_epoch_500.00.pth"
    legacy = current_to_legacy(reference_state)
    torch.save({"global_step": 49700, "epoch": 500.0, "state_dict": legacy, "optimizer": {"state": {}}}, path)
    model = rgbxseg.create_model("asymformer_b0_t", weights=path)
    # The official loader drops the 15 SCC conv1/bn tensors of this layout; ours keeps every one.
    for stage in (2, 3, 4):
        for name in ("weight", "bias", "running_mean", "running_var"):
            key = f"down_sample_{stage}.SCC.conv_bn.1.{name}"
            assert torch.equal(model.state_dict()[key], reference_state[key])
    assert torch.equal(_logits(model, reference), reference_logits_ours)
    assert (reference_logits_ours - reference["logits"]).abs().max() <= 1e-4


def test_wrapped_and_prefixed_checkpoints_load(tmp_path: Path, reference_state: dict) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in reference_state.items()}}, path)
    model = rgbxseg.create_model("asymformer_b0_t", weights=path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference_state.items())


def test_safetensors_round_trip_is_bit_exact_and_keeps_metadata(tmp_path: Path, reference_state: dict) -> None:
    model = rgbxseg.create_model("asymformer_b0_t", num_classes=37)
    model.load_state_dict({k: v for k, v in reference_state.items() if "linear_pred" not in k}, strict=False)
    metadata = WeightsMetadata(
        model="asymformer_b0_t",
        num_classes=37,
        class_names=SUNRGBD_37.names,
        palette=SUNRGBD_37.palette,
        input_spec=ASYMFORMER_NYUV2_EVAL,
        dataset="sunrgbd",
        description="test run",
    )
    path = rgbxseg.save_weights(model, tmp_path / "weights.safetensors", metadata)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = rgbxseg.create_model("asymformer_b0_t", weights=path)
    assert loaded.num_classes == 37
    assert loaded.weights_metadata == metadata and loaded.input_spec == ASYMFORMER_NYUV2_EVAL
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    assert all(torch.equal(original[k], restored[k]) and original[k].dtype == restored[k].dtype for k in original)


def test_files_written_before_input_specs_still_load(tmp_path: Path) -> None:
    """rgbxseg 0.1 files stored an RGB-D ``normalization`` in their metadata; they load with the same inputs."""
    model = rgbxseg.create_model("asymformer_b0_t")
    metadata = model.weights_metadata.to_dict()
    del metadata["input_spec"]
    metadata["normalization"] = {
        "name": "asymformer_nyuv2_eval", "rgb_mean": list(ASYMFORMER_NYUV2_EVAL.rgb.normalization.mean),
        "rgb_std": list(ASYMFORMER_NYUV2_EVAL.rgb.normalization.std), "depth_unit": "mm", "depth_divisor": 1000.0,
        "depth_mean": 2.8424503515351494, "depth_std": 0.9932836506164299,
    }  # fmt: skip
    path = tmp_path / "old.safetensors"
    save_file(model.state_dict(), str(path), metadata={"rgbxseg": json.dumps(metadata), "format": "pt"})
    # those files fed R, G, B (channel orders came later), with the statistics of the spec they named
    rgb = replace(ASYMFORMER_NYUV2_EVAL.rgb, channel_order="rgb")
    assert rgbxseg.load_model(path).input_spec == replace(ASYMFORMER_NYUV2_EVAL, rgb=rgb)


def test_class_count_is_inferred_from_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "sun.pth"
    torch.save({"state_dict": rgbxseg.AsymFormer(num_classes=37).state_dict()}, path)
    assert rgbxseg.create_model("asymformer_b0_t", weights=path).num_classes == 37
    with pytest.raises(CheckpointMismatchError, match="trained for 37 classes"):
        rgbxseg.create_model("asymformer_b0_t", num_classes=40, weights=path)


def test_a_checkpoint_that_does_not_fit_lists_the_problems(tmp_path: Path, reference_state: dict) -> None:
    state = dict(reference_state)
    del state["down_sample_3.SCC.cross_atten.kq1.bias"]
    state["Decoder.extra.weight"] = torch.zeros(1)
    state["down_sample_1.depth_stem.proj.weight"] = torch.zeros(32, 3, 7, 7)
    model = rgbxseg.AsymFormer(num_classes=40)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        rgbxseg.load_weights(model, state)
    message = str(info.value)
    assert "1 missing from the checkpoint: down_sample_3.SCC.cross_atten.kq1.bias" in message
    assert "1 unexpected in the checkpoint: Decoder.extra.weight" in message
    assert "down_sample_1.depth_stem.proj.weight: [32, 3, 7, 7] vs [32, 1, 7, 7]" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "strict failure must load nothing"

    report = rgbxseg.load_weights(model, state, strict=False)
    assert not report.complete and len(report.loaded) == 468
    assert torch.equal(model.state_dict()["Decoder.linear_pred.bias"], reference_state["Decoder.linear_pred.bias"])


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    lafs_only = rgbxseg.create_model("asymformer_b0_t_lafs")
    path = rgbxseg.save_weights(lafs_only, tmp_path / "lafs.safetensors")
    with pytest.raises(CheckpointMismatchError, match="holds weights of 'asymformer_b0_t_lafs'"):
        rgbxseg.create_model("asymformer_b0_t", weights=path)
    with pytest.raises(CheckpointMismatchError, match="unexpected in the checkpoint"):
        extra = {"down_sample_2.SCC.cross_atten.kq1.bias": torch.zeros(96)}
        rgbxseg.load_weights(lafs_only, {**lafs_only.state_dict(), **extra})


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_weights_file_can_never_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"state_dict": {"x": torch.zeros(1)}, "payload": _RunsCodeWhenUnpickled(marker)}, f, protocol=2)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _RunsCodeWhenUnpickled(marker)}, tmp_path / "evil2.pth")
    for candidate in (path, tmp_path / "evil2.pth"):
        with pytest.raises(CheckpointError, match="refuses to"):
            rgbxseg.read_checkpoint(candidate)
    assert not marker.exists()


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        rgbxseg.create_model("asymformer_b0_t", weights=tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"a": torch.zeros(1000)}}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated.pth is not a readable PyTorch checkpoint"):
        rgbxseg.read_checkpoint(truncated)
    fake_safetensors = tmp_path / "bad.safetensors"
    fake_safetensors.write_bytes((20).to_bytes(8, "little") + b'{"a": 1}' + b"\0" * 40)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        rgbxseg.read_checkpoint(fake_safetensors)


def test_imagenet_convnext_initialises_exactly_the_rgb_branch(tmp_path: Path) -> None:
    convnext = ConvNeXt(CONVNEXT_CONFIGS["convnext_t"])
    state = {**convnext.state_dict(), "norm.weight": torch.ones(768), "head.weight": torch.zeros(1000, 768)}
    path = tmp_path / "convnext_tiny_1k_224_ema.pth"
    torch.save({"model": state}, path)
    model = rgbxseg.AsymFormer(num_classes=40)
    depth_before = model.down_sample_2.depth_layer[0].attn.q.weight.clone()
    report = rgbxseg.load_backbone_weights(model, path, "rgb")
    assert report.loaded_params == 27_818_592  # exactly the RGB branch
    assert torch.equal(model.down_sample_3.rgb_layer[8].pwconv2.weight, convnext.stages[2][8].pwconv2.weight)
    assert torch.equal(model.down_sample_1.rgb_stem[0].weight, convnext.downsample_layers[0][0].weight)
    assert torch.equal(model.down_sample_2.depth_layer[0].attn.q.weight, depth_before)

    small = tmp_path / "convnext_small.pth"
    torch.save({"model": ConvNeXt(CONVNEXT_CONFIGS["convnext_s"]).state_dict()}, small)
    with pytest.raises(CheckpointMismatchError, match="unexpected in the checkpoint: down_sample_3.rgb_layer.9"):
        rgbxseg.load_backbone_weights(model, small, "rgb")


def test_imagenet_mit_initialises_the_depth_branch_but_not_its_one_channel_stem(tmp_path: Path) -> None:
    mit = MixTransformer(MIT_CONFIGS["mit_b0"])
    path = tmp_path / "mit_b0.pth"
    torch.save({**mit.state_dict(), "head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}, path)
    model = rgbxseg.create_model("asymformer_b0_t", backbone_weights={"depth": path})
    assert torch.equal(model.down_sample_4.depth_layer[1].mlp.fc2.weight, mit.block4[1].mlp.fc2.weight)
    assert torch.equal(model.down_sample_2.depth_stem.proj.weight, mit.patch_embed2.proj.weight)
    assert torch.equal(model.down_sample_3.depth_norm.weight, mit.norm3.weight)
    assert model.down_sample_1.depth_stem.proj.weight.shape == (32, 1, 7, 7)

    truncated = {k: v for k, v in mit.state_dict().items() if not k.startswith("block3.1.")}
    torch.save(truncated, path)
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint: down_sample_3.depth_layer.1"):
        rgbxseg.load_backbone_weights(model, path, "depth")
    with pytest.raises(CheckpointError, match="no tensor maps onto the rgb part; expected convnext_tiny_1k_224_ema"):
        rgbxseg.load_backbone_weights(model, path, "rgb")
    with pytest.raises(ValueError, match="no pretrained backbone part 'thermal'"):
        rgbxseg.load_backbone_weights(model, path, "thermal")
