"""DPLNet: the official logits on the public fixture, parameter counts, what stays frozen, the void logit, the
official checkpoint and ADE20K layouts, the loss, the evaluation protocols, training (RGB-D and RGB-T) and export."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import rgbxseg
from conftest import DATA, regenerate_fixture_weights
from rgbxseg.data.importers import import_mfnet
from rgbxseg.engine.config import OptimConfig, load_config
from rgbxseg.engine.evaluate import EVAL_PROTOCOLS, EvalProtocol, evaluate, evaluate_weights, predict_scores
from rgbxseg.engine.metrics import ConfusionMatrix
from rgbxseg.engine.optim import build_optimizer
from rgbxseg.engine.schedule import build_scheduler
from rgbxseg.engine.train import train
from rgbxseg.export import export_onnx
from rgbxseg.models import CheckpointMismatchError
from rgbxseg.models.backbones import MIT_CONFIGS, MixTransformer
from rgbxseg.models.dplnet import ENET_NYUV2_WEIGHTS, released_to_current
from rgbxseg.models.optimize import optimize_for_inference
from rgbxseg.models.registry import describe_model

FIXTURE = DATA / "dplnet_mit_b5_public_fixture.pt"


@pytest.fixture(scope="module")
def fixture() -> dict:
    """The official model's inputs, intermediates and outputs (see tests/data/README.md)."""
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def official_checkpoint(fixture: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regenerated weights as the official training script saves them: a bare state dict, ADE head included."""
    state = regenerate_fixture_weights(fixture["keys"], fixture["shapes"], fixture["weight_seed"])
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == fixture["state_sha256"]
    path = tmp_path_factory.mktemp("dplnet") / "model_best.pth"
    torch.save(state, path)
    return path


def test_official_checkpoint_gives_the_official_logits(fixture: dict, official_checkpoint: Path) -> None:
    model = rgbxseg.create_model("dplnet_mit_b5", num_classes=41, weights=official_checkpoint).eval()
    assert model.x_channels == 3 and model.void_logit
    rgb, x = fixture["rgb"], fixture["depth"]
    with torch.inference_mode():
        features, prompts = model.encode(rgb, x)
        decoder = model.forward_decoder(rgb, x)
        logits = model(rgb, x)
    for stage in range(4):
        assert (features[stage] - fixture[f"stage{stage + 1}"]).abs().max() < 1e-4, f"stage {stage + 1}"
        assert (prompts[stage] - fixture[f"prompt{stage + 1}"]).abs().max() < 1e-4, f"prompt {stage + 1}"
    assert decoder.shape == (2, 41, 16, 24) and (decoder - fixture["decoder_logits"]).abs().max() < 1e-4
    assert logits.shape == (2, 41, 64, 96) and (logits - fixture["logits"]).abs().max() < 1e-4
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7_146_271


def test_parameter_counts_equal_the_official_ones(fixture: dict) -> None:
    row = describe_model("dplnet_mit_b5")
    assert (row["params"], row["trainable_params"], row["num_classes"]) == (88_589_279, 7_146_271, 41)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    ade_head = sum(
        math.prod(shape)
        for key, shape in zip(fixture["keys"], fixture["shapes"], strict=True)
        if key.startswith("rgb.head.") and not key.endswith(buffers)
    )
    assert row["params"] + ade_head == 91_854_965
    with torch.device("meta"):
        model = rgbxseg.get_model_spec("dplnet_mit_b5").builder()
    model.freeze_declared()

    def count(prefix: str, contains: str = "") -> int:
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix) and contains in n)

    assert count("rgb.") - count("rgb.", "prompt") == 81_443_008  # the frozen MiT-B5
    assert (count("head."), count("conv1."), count("rgb.", "prompt"), count("learnable_prompt")) == (
        3_265_686, 6_191, 1_653_722, 960
    )  # fmt: skip
    assert sum(count(f"patch_embed{s}") for s in range(1, 5)) == 1_929_408
    dims, depths = MIT_CONFIGS["mit_b5"].embed_dims, MIT_CONFIGS["mit_b5"].depths
    assert [count(f"ada{s + 1}.") for s in range(4)] == [int(0.75 * d * d + 1.5 * d) for d in dims]
    per_block = [d * d // 8 + 67 * d + 3 * d // 32 + 64 for d in dims]
    assert [count(f"rgb.block{s + 1}.0.", "prompt") for s in range(4)] == per_block
    assert sum(n * b for n, b in zip(depths, per_block, strict=True)) == 1_653_722


def test_official_layout_loads_strictly_and_drops_only_the_ade_head(official_checkpoint: Path, tmp_path: Path) -> None:
    state = torch.load(official_checkpoint, weights_only=True)
    converted = released_to_current(state)
    assert len(state) - len(converted) == 16 and not any(k.startswith("rgb.head.") for k in converted)
    assert converted["head.linear_c4.proj.weight"].shape == (768, 512, 1, 1)
    assert torch.equal(converted["head.linear_fuse.1.running_var"], state["head.linear_fuse.bn.running_var"])
    broken = dict(state)
    del broken["rgb.block3.7.attn.k_prompt.weight"]
    broken["rgb.head.extra.weight"] = torch.zeros(2)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        rgbxseg.create_model("dplnet_mit_b5", weights=tmp_path / "broken.pth")
    assert "missing from the checkpoint: rgb.block3.7.attn.k_prompt.weight" in str(info.value)
    assert "unexpected in the checkpoint: rgb.head.extra.weight" in str(info.value)


def test_our_weights_round_trip_with_the_class_names_of_the_dataset(tmp_path: Path) -> None:
    model = rgbxseg.create_model("dplnet_mit_b0", num_classes=41).eval()
    assert model.num_label_classes == 40 and model.weights_metadata.num_classes == 40
    assert model.weights_metadata.class_names[0] == "wall"
    path = rgbxseg.save_weights(model, tmp_path / "dplnet.safetensors")
    loaded = rgbxseg.load_model(path)
    assert loaded.num_classes == 41 and loaded.void_logit
    rgb, x = model.input_spec.example_inputs(1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(loaded(rgb, x), model(rgb, x))


def _ade_segformer_file(path: Path) -> tuple[Path, MixTransformer]:
    """An mmseg ADE20K SegFormer checkpoint for MiT-B0: ``state_dict`` with ``backbone.`` and ``decode_head.``."""
    torch.manual_seed(4)
    mit = MixTransformer(MIT_CONFIGS["mit_b0"])
    state = {f"backbone.{k}": v for k, v in mit.state_dict().items()}
    state |= {"decode_head.linear_pred.weight": torch.zeros(150, 256, 1, 1), "decode_head.fuse.bias": torch.zeros(1)}
    torch.save({"state_dict": state, "meta": {"CLASSES": ["wall"]}}, path)
    return path, mit


def test_ade_segformer_initialises_the_frozen_encoder_only(tmp_path: Path) -> None:
    path, mit = _ade_segformer_file(tmp_path / "segformer.b0.512x512.ade.160k.pth")
    model = rgbxseg.create_model("dplnet_mit_b0", backbone_weights={"rgb": path})
    for name, value in mit.state_dict().items():
        assert torch.equal(model.rgb.state_dict()[name], value), name
        assert not model.get_parameter(f"rgb.{name}").requires_grad
    assert all(p.requires_grad for n, p in model.rgb.named_parameters() if "prompt" in n)
    truncated = torch.load(path, weights_only=True)
    del truncated["state_dict"]["backbone.block2.1.mlp.fc1.weight"]
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)rgb\.block2\.1\.mlp\.fc1\.weight.*Nothing was loaded"):
        rgbxseg.create_model("dplnet_mit_b0", backbone_weights={"rgb": tmp_path / "truncated.pth"})


def test_frozen_parts_run_in_eval_mode_while_the_frozen_blocks_keep_stochastic_depth() -> None:
    model = rgbxseg.create_model("dplnet_mit_b0", 5).train()
    module = model.get_submodule
    assert not module("rgb.patch_embed1").training and not module("rgb.block4.1.mlp").training
    assert not module("rgb.block2.0.attn.kv").training and module("rgb.block2.0.attn.q_prompt").training
    drop_path = module("rgb.block4.1.drop_path")
    assert drop_path.training and drop_path.drop_prob > 0  # the frozen blocks keep stochastic depth, as official
    optimizer = build_optimizer(model, OptimConfig(name="sgd", lr=0.04, weight_decay=5e-4))
    trained = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert trained == describe_model("dplnet_mit_b0", 5)["trainable_params"]


def test_loss_is_the_official_class_weighted_cross_entropy() -> None:
    model = rgbxseg.create_model("dplnet_mit_b0", 41, class_weights="enet_nyuv2")
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 41, 12, 16, generator=generator)
    official_labels = torch.randint(0, 41, (2, 12, 16), generator=generator)  # 0 = unlabelled
    weights = torch.tensor(ENET_NYUV2_WEIGHTS)
    official = F.cross_entropy(logits, official_labels, weight=weights)  # the official criterion, class-0 weight 0
    ours = model.loss({"out": logits}, official_labels - 1)["ce"]  # rgbxseg targets: void −1, classes 0..39
    torch.testing.assert_close(ours, official)
    unweighted = rgbxseg.create_model("dplnet_mit_b0", 41).loss({"out": logits}, official_labels - 1)["ce"]
    valid = official_labels > 0
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], official_labels[valid])
    torch.testing.assert_close(unweighted, expected)
    with pytest.raises(ValueError, match="41 class weights for 10 outputs"):
        rgbxseg.create_model("dplnet_mit_b0", 10, class_weights="enet_nyuv2")


def _void_winning_model(num_classes: int = 5) -> rgbxseg.SegmentationModel:
    """Class map with constant logits: void (channel 0) first, then class 2 (dataset label 2)."""
    model = rgbxseg.create_model("dplnet_mit_b0", num_classes).eval()
    with torch.no_grad():
        model.conv1.weight.zero_()
        model.conv1.bias.copy_(torch.tensor([10.0, 0.0, 5.0, 0.0, 0.0]))
    return model


def test_predictions_never_emit_void_unless_the_official_metric_is_asked() -> None:
    model = _void_winning_model()
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    depth = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    prediction = rgbxseg.Segmenter(model).predict(rgb, depth, return_logits=True)
    assert np.all(prediction.labels == 2) and prediction.logits.shape == (4, 64, 64)
    inputs = model.input_spec.example_inputs(1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.all(optimize_for_inference(model, output="labels")(*inputs) == 1)  # class 1 = dataset label 2
        torch.testing.assert_close(optimize_for_inference(model)(*inputs), model(*inputs), rtol=0, atol=1e-4)
    labels = torch.full((1, 64, 64), 2, dtype=torch.int64)
    labels[:, :8] = 0  # void pixels are never scored
    sample = {"rgb": torch.zeros(3, 64, 64), "depth_minmax": torch.zeros(3, 64, 64), "label": labels[0]}
    ours = evaluate(model, [sample], num_classes=4, progress=False)
    dropped = EvalProtocol(void_predictions="dropped")
    official = evaluate(model, [sample], num_classes=4, protocol=dropped, progress=False)
    assert int(ours.confusion.sum()) == 56 * 64 and ours.miou == 1.0
    assert int(official.confusion.sum()) == 0  # void won every pixel: all dropped, as the official metric does
    assert (official.labelled_pixels, official.void_predicted_pixels) == (56 * 64, 56 * 64)
    assert "3,584 predicted void, left out" in official.table()
    with pytest.raises(ValueError, match="prediction -1 is not a class index"):  # only the official metric drops −1
        ours_matrix = ConfusionMatrix(4)
        ours_matrix.update(torch.tensor([-1, 2]), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="needs a model with a void logit"):
        evaluate(rgbxseg.create_model("geminifusion_mit_b0", 4), [sample], num_classes=4, protocol=dropped)


def test_multi_scale_protocol_is_the_official_msc_evaluate() -> None:
    model = rgbxseg.create_model("dplnet_mit_b0", 5).eval()
    generator = torch.Generator().manual_seed(2)
    rgb, x = model.input_spec.example_inputs(1, 80, 112, generator=generator)
    with torch.inference_mode():
        ours = predict_scores(model, rgb, x, EVAL_PROTOCOLS["dplnet-ms"], model.input_multiple, 32)
        official = torch.zeros_like(ours)
        for scale in (0.5, 0.75, 1.0, 1.25, 1.5):  # RGBD/evaluate.py msc_evaluate
            size = (int(80 * scale // 32 * 32), int(112 * scale // 32 * 32))
            image = F.interpolate(rgb, size, mode="bilinear", align_corners=True)
            depth = F.interpolate(x, size, mode="bilinear", align_corners=True)
            for flip in (False, True):
                out = model(image.flip(3), depth.flip(3)).flip(3) if flip else model(image, depth)
                official += F.interpolate(out, (80, 112), mode="bilinear", align_corners=True).softmax(1)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-5)


def test_per_epoch_schedule_is_the_official_lambda() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.04)
    scheduler = build_scheduler(optimizer, total=500 * 3, warmup=0, power=0.9, step_size=3)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.04 * (1 - epoch / 500) ** 0.9 for epoch in range(4) for _ in range(3)]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_bundled_config_is_the_published_recipe() -> None:
    config = load_config("dplnet_nyuv2")
    assert (config.model.name, config.model.kwargs, config.epochs, config.amp) == (
        "dplnet_mit_b5", {"class_weights": "enet_nyuv2"}, 500, "fp16"
    )  # fmt: skip
    optim = config.optim
    assert (optim.name, optim.lr, optim.momentum, optim.weight_decay) == ("sgd", 0.04, 0.9, 5e-4)
    assert (config.schedule.warmup_epochs, config.schedule.power, config.schedule.per_epoch) == (0, 0.9, True)
    data = config.data
    assert (data.batch_size, data.crop_size, data.scale_range, data.flip_prob) == (32, (480, 640), (0.5, 2.0), 0.5)
    assert (data.colour_jitter_p, data.colour_jitter, data.hsv_jitter, data.blur_p) == (1.0, 0.5, False, 0.0)


def test_short_training_on_rgbd_learns_with_41_outputs(synthetic_scenes: Path, tmp_path: Path) -> None:
    """The published recipe, smaller: no pretrained encoder here, so only the prompts, adapters and head learn."""
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / 'run'}", "model.name=dplnet_mit_b0",
                 "model.kwargs={}", "data.crop_size=[64,96]", "data.scale_range=[1.0,1.0]", "data.colour_jitter_p=0",
                 "data.batch_size=4", "data.workers=0", "optim.lr=0.01", "epochs=6", "checkpoint_every=6",
                 "eval.every_epochs=0", "amp=none"]  # fmt: skip
    result = train(load_config("dplnet_nyuv2", overrides), progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.75 * losses[0]
    model = rgbxseg.load_model(result.weights)
    classes = len(model.weights_metadata.class_names)
    assert model.num_classes == classes + 1 and model.input_spec.name == "dplnet_depth_mm"
    assert 0.0 <= result.history[-1]["val_miou"] <= 1.0


def _mfnet_tree(src: Path) -> None:
    rng = np.random.default_rng(7)
    splits = {"train": [f"{i:05d}D" for i in range(8)], "val": ["00100N"], "test": ["00101N", "00102D"]}
    for split, stems in splits.items():
        (src / "images").mkdir(parents=True, exist_ok=True)
        (src / "labels").mkdir(parents=True, exist_ok=True)
        (src / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            labels = np.zeros((64, 96), np.uint8)
            labels[:, 48:] = 1 + rng.integers(0, 2)
            rgba = rng.integers(0, 256, (64, 96, 4), dtype=np.uint8)
            rgba[..., 3] = np.where(labels > 0, 220, 30)  # warm objects
            Image.fromarray(rgba).save(src / "images" / f"{stem}.png")
            Image.fromarray(labels).save(src / "labels" / f"{stem}.png")


def test_rgb_thermal_training_through_the_mfnet_importer(tmp_path: Path) -> None:
    _mfnet_tree(tmp_path / "ir_seg_dataset")
    root = tmp_path / "mfnet"
    import_mfnet(tmp_path / "ir_seg_dataset", root, progress=False)
    overrides = [f"data.root={root}", f"output_dir={tmp_path / 'run'}", "model.name=dplnet_mit_b0", "model.kwargs={}",
                 "data.input_spec=dplnet_thermal", "data.crop_size=[64,96]", "data.batch_size=4", "data.workers=0",
                 "epochs=2", "checkpoint_every=2", "eval.every_epochs=0", "amp=none"]  # fmt: skip
    result = train(load_config("dplnet_nyuv2", overrides), progress=False)
    model = rgbxseg.load_model(result.weights)
    assert model.num_classes == 10 and model.input_spec.x.name == "thermal"  # 9 MFNet classes + void
    report = evaluate_weights(result.weights, root, progress=False)
    assert report.protocol["x_modality"] == "thermal" and "never predicts" in report.protocol["void"]


def test_onnx_export_leaves_the_void_channel_out(tmp_path: Path) -> None:
    """Every ONNX file has one contract (dataset label = argmax + 1): the 40 class logits of the 41 outputs."""
    model = rgbxseg.create_model("dplnet_mit_b0", 41).eval()
    report = export_onnx(model, tmp_path / "dplnet.onnx", height=64, width=64, dynamic=True, exporter="legacy")
    assert max(check.max_abs_diff for check in report.parity) < 1e-4
    proto = onnx.load(str(tmp_path / "dplnet.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["label_offset"] == "1" and len(json.loads(props["class_names"])) == 40
    assert [i.name for i in proto.graph.input] == ["rgb", "depth_minmax"]
    assert "(B, 40, H, W)" in proto.doc_string and "void output is left out" in proto.doc_string
    session = ort.InferenceSession(str(tmp_path / "dplnet.onnx"), providers=["CPUExecutionProvider"])
    rgb, x = model.input_spec.example_inputs(1, 64, 64, generator=torch.Generator().manual_seed(3))
    (logits,) = session.run(None, {"rgb": rgb.numpy(), "depth_minmax": x.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(rgb, x)[:, 1:].numpy(), atol=1e-4)
