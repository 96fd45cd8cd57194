"""The model contract: every model declares its outputs, losses, frozen parts, parameter groups and inputs, and the
engine honours them — for every registered model and for a toy model that needs all of it."""

from __future__ import annotations

import csv
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

import rgbxseg
from conftest import SMALL_MODELS
from rgbxseg.cli import main
from rgbxseg.engine.checkpoint import load_training_checkpoint
from rgbxseg.engine.config import OPTIMIZER_NAMES, ConfigError, OptimConfig, load_config
from rgbxseg.engine.distributed import CrossRankBatchNorm2d, convert_sync_batchnorm
from rgbxseg.engine.evaluate import evaluate_weights
from rgbxseg.engine.objective import TrainingObjective, total_loss
from rgbxseg.engine.optim import OPTIMIZERS, build_optimizer
from rgbxseg.engine.train import ModelEMA, Trainer, reseed, train
from rgbxseg.io import file_digest
from rgbxseg.models import (
    BackboneMapping,
    CheckpointMismatchError,
    ParamGroupRule,
    PretrainedSource,
    SegmentationModel,
)
from rgbxseg.models.layers import resize
from toy_models import TOY_NAME, FrozenTwoHeadToy, register_toy

Builder = Callable[[], SegmentationModel]
MODELS: dict[str, Builder] = {name: (lambda name=name: rgbxseg.create_model(name, 5)) for name in SMALL_MODELS}
MODELS["toy (frozen stem, eval)"] = lambda: _frozen(FrozenTwoHeadToy(5))
MODELS["toy (frozen stem, train mode)"] = lambda: _frozen(FrozenTwoHeadToy(5, frozen_train_mode="train"))


def _frozen(model: SegmentationModel) -> SegmentationModel:
    model.freeze_declared()
    return model


def _batch(model: SegmentationModel, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    rgb, x = model.input_spec.example_inputs(batch, 64, 64, generator=generator)
    target = torch.randint(-1, model.num_label_classes, (batch, 64, 64), generator=generator)
    return rgb, x, target


EXPECTED_FROZEN = {
    "toy (frozen stem, eval)": r"stem\.",
    "toy (frozen stem, train mode)": r"stem\.",
    **{name: r"alpha$" for name in SMALL_MODELS if name.startswith("geminifusion")},  # α is not optimised
    **{name: r"rgb\.(?!.*prompt)" for name in SMALL_MODELS if name.startswith("dplnet")},  # the pretrained MiT
    **{name: r"(backbone\.(?!.*adapter_)|out_norm_)" for name in SMALL_MODELS if name.startswith("ktb")},  # the Swin
}
"""The parameters each model freezes, by name (none for the others); a model that starts freezing parts must say so."""

STILL_AFTER_ONE_STEP = {name: r".*\.adapter_(rgb|x)\.down\.bias$" for name in SMALL_MODELS if name.startswith("ktb")}
"""Trainable parameters that one step cannot move, by construction: KTB's adapters start with a zero up-projection (an
exact no-op), so their down-projections get no gradient at step 1, and their zero biases no weight decay either."""


def _batchnorms(model: SegmentationModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Running means of the BatchNorms that must keep their statistics (parameters all frozen, or in eval mode in the
    training model), and of the others."""
    fixed, moving = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = not any(p.requires_grad for p in module.parameters())
            assert not (frozen and module.training), f"{name}: a frozen BatchNorm must not train its statistics"
            (fixed if frozen or not module.training else moving)[name] = module.running_mean.clone()
    return fixed, moving


@pytest.mark.parametrize("name", list(MODELS))
def test_one_step_moves_exactly_what_trains(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.trainable_parameters()}
    expected = EXPECTED_FROZEN.get(name)
    assert set(frozen) == {n for n, _ in model.named_parameters() if expected and re.match(expected, n)}
    fixed_bn, moving_bn = _batchnorms(model)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for _, p in model.trainable_parameters()}, "the optimiser holds exactly what trains"

    # 8 samples: stochastic depth (up to 0.3) practically never drops a whole block for all of them
    terms = TrainingObjective(model)(*_batch(model, batch=8))
    assert tuple(terms) == model.loss_terms
    total_loss(terms).backward()
    optimizer.step()

    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], value) for n, value in frozen.items()), "a frozen parameter moved"
    still = STILL_AFTER_ONE_STEP.get(name, "$^")
    unchanged = [n for n, value in trainable.items() if torch.equal(after[n], value) and not re.fullmatch(still, n)]
    assert not unchanged, f"trainable parameters did not change: {unchanged[:5]}"
    fixed_after, moving_after = _batchnorms(model)
    assert all(torch.equal(fixed_after[n], v) for n, v in fixed_bn.items()), "a frozen BatchNorm's statistics moved"
    assert all(not torch.equal(moving_after[n], v) for n, v in moving_bn.items()), "a trained BatchNorm kept its stats"


@pytest.mark.parametrize("name", rgbxseg.list_models())
def test_pretrained_sources_agree_with_what_the_model_freezes(name: str) -> None:
    with torch.device("meta"):
        model = rgbxseg.get_model_spec(name).builder(num_classes=5)
    model.freeze_declared()
    for part, mapping in model.pretrained_backbone_mappings().items():
        covered = [p for n, p in model.named_parameters() if mapping.covers.match(n)]
        assert covered, f"{part}: its pattern covers no parameter"
        assert all(p.requires_grad is not mapping.source.frozen for p in covered), part


@pytest.mark.parametrize("name", list(MODELS))
def test_prediction_is_the_declared_output_upsampled(name: str) -> None:
    model = MODELS[name]().eval()
    rgb, x, _ = _batch(model)
    with torch.inference_mode():
        outputs = model.forward_outputs(rgb, x)
        assert tuple(outputs) == model.outputs
        expected = resize(outputs[model.prediction_output], rgb.shape[-2:])
        torch.testing.assert_close(model(rgb, x), expected, rtol=0, atol=0)
        for output in model.outputs:
            torch.testing.assert_close(
                model.output_logits(rgb, x, output), resize(outputs[output], rgb.shape[-2:]), rtol=0, atol=0
            )


def test_declarations_that_name_nothing_or_an_unknown_mode_are_errors() -> None:
    model = FrozenTwoHeadToy(5)
    model.frozen = (r"steem",)
    with pytest.raises(ValueError, match=r"frozen patterns \[.steem.\] name nothing in the model"):
        model.freeze_declared()
    model = FrozenTwoHeadToy(5, frozen_train_mode="Train")
    with pytest.raises(ValueError, match="frozen_train_mode must be one of"):
        model.train()


def test_parameters_frozen_by_hand_count_as_frozen() -> None:
    """What is frozen is read from requires_grad: a backbone frozen with ``freeze()`` or by hand behaves like one
    declared frozen; a half-frozen BatchNorm still trains its statistics."""
    model = FrozenTwoHeadToy(5)
    model.neck.requires_grad_(False)
    model.main_head.bias.requires_grad_(False)
    assert {"neck", "neck.0", "neck.1", "neck.2"} <= model.frozen_modules()
    assert "main_head" not in model.frozen_modules()
    assert not model.train().neck[1].training
    assert {n for n, _ in model.trained_buffers()} >= {"stem.1.running_mean"}, "the stem was not frozen here"


def test_frozen_parts_run_as_declared_while_training() -> None:
    """Frozen parts stay in eval mode by default (no dropout, fixed BatchNorm); a model may keep their stochastic
    layers active (KTB's drop path in its frozen Swin) — its frozen BatchNorms still never move."""
    rgb, x, _ = _batch(FrozenTwoHeadToy(5))
    for mode, stochastic in (("eval", False), ("train", True)):
        model = _frozen(FrozenTwoHeadToy(5, frozen_train_mode=mode)).train()
        assert model.neck[1].training and not model.stem[1].training
        assert model.stem[3].training is stochastic
        with torch.no_grad():
            first, second = model.stem(torch.cat((rgb, x), 1)), model.stem(torch.cat((rgb, x), 1))
        assert torch.equal(first, second) is not stochastic
        model.eval()
        with torch.no_grad():
            assert torch.equal(model.stem(torch.cat((rgb, x), 1)), model.stem(torch.cat((rgb, x), 1)))


def test_param_groups_follow_the_rules_of_the_model_or_the_config() -> None:
    model = _frozen(FrozenTwoHeadToy(5))
    groups = {group["name"]: group for group in model.param_groups(lr=0.1, weight_decay=0.01)}
    names = {id(p): n for n, p in model.named_parameters()}
    members = {key: sorted(names[id(p)] for p in group["params"]) for key, group in groups.items()}
    assert members == {
        "base": ["main_head.weight", "neck.0.weight", "neck.1.weight"],
        r"^aux_head\.": ["aux_head.bias", "aux_head.weight"],
        r"\.bias$": ["main_head.bias", "neck.0.bias", "neck.1.bias"],
    }
    assert (groups[r"^aux_head\."]["lr"], groups[r"^aux_head\."]["weight_decay"]) == (pytest.approx(1.0), 0.01)
    assert (groups[r"\.bias$"]["lr"], groups[r"\.bias$"]["weight_decay"]) == (0.1, 0.0)
    single = model.param_groups(lr=0.1, weight_decay=0.01, rules=())
    assert len(single) == 1 and len(single[0]["params"]) == 8

    sgd = build_optimizer(model, OptimConfig(name="sgd", lr=0.04, momentum=0.9, nesterov=True, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["lr"] == 0.04
    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES), "every name the config accepts has a constructor"
    with pytest.raises(ConfigError, match="name must be one of adamw, sgd, got 'lion'"):
        OptimConfig(name="lion")
    with pytest.raises(ConfigError, match="nesterov needs name: sgd"):
        OptimConfig(name="adamw", nesterov=True)
    with pytest.raises(ValueError, match="not a regular expression"):
        ParamGroupRule("(")


def test_ema_averages_only_what_trains_and_shares_frozen_weights() -> None:
    model = _frozen(FrozenTwoHeadToy(5)).train()
    ema = ModelEMA(model, decay=0.5)
    assert ema.module.stem[0].weight is model.stem[0].weight, "frozen weights are shared, not copied"
    assert ema.module.stem[1].running_mean is model.stem[1].running_mean
    assert ema.module.neck[0].weight is not model.neck[0].weight
    assert len(ema.pairs) == 8 + 3  # trainable parameters + the buffers of the neck BatchNorm
    before = ema.module.neck[0].weight.detach().clone()
    with torch.no_grad():
        model.neck[0].weight.add_(1.0)
    ema.update()
    torch.testing.assert_close(ema.module.neck[0].weight, before + 0.5)


def test_sync_batchnorm_leaves_fixed_batchnorms_alone() -> None:
    model = _frozen(FrozenTwoHeadToy(5))
    model.neck[1].weight.requires_grad_(False)  # half frozen: its statistics still train
    fixed = {name for name, _ in model.modules_in_eval_while_training()}
    convert_sync_batchnorm(model, torch.device("cpu"), keep=fixed)
    assert type(model.stem[1]) is nn.BatchNorm2d
    assert type(model.neck[1]) is CrossRankBatchNorm2d
    assert not model.neck[1].weight.requires_grad and model.neck[1].bias.requires_grad
    with pytest.raises(ValueError, match=r"sync_bn on the CPU handles BatchNorm2d only; bn is a BatchNorm1d"):
        convert_sync_batchnorm(nn.Sequential(OrderedDict(bn=nn.BatchNorm1d(4))), torch.device("cpu"))


def test_a_pretrained_file_with_another_digest_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = FrozenTwoHeadToy(5)
    path = tmp_path / "stem.pth"
    torch.save({f"0.{k}": v for k, v in model.stem[0].state_dict().items()}, path)
    source = PretrainedSource("stem.pth", "tests", "the stem conv", sha256=file_digest(path), frozen=True)
    remap = lambda state: {f"stem.{k}": v for k, v in state.items()}  # noqa: E731
    mapping = BackboneMapping(remap, re.compile(r"stem\.0\."), source)
    monkeypatch.setattr(FrozenTwoHeadToy, "pretrained_backbone_mappings", lambda self: {"stem": mapping})
    assert rgbxseg.load_backbone_weights(model, path, "stem").loaded_params == 4 * 8 * 16 + 8
    torch.save({"0.weight": torch.zeros(8, 4, 4, 4), "0.bias": torch.zeros(8)}, path)
    with pytest.raises(CheckpointMismatchError, match=r"stem\.pth has SHA-256 [0-9a-f]{64}, not that of the published"):
        rgbxseg.load_backbone_weights(model, path, "stem")


def test_info_reports_total_and_trainable_parameters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    assert main(["info", TOY_NAME, "--num-classes", "5", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    model = _frozen(FrozenTwoHeadToy(5))
    assert row["params"] == sum(p.numel() for p in model.parameters()) == 520 + 16 + 72 + 16 + 2 * 45
    assert row["trainable_params"] == row["params"] - 520 - 16
    assert row["outputs"] == ["main", "aux"] and row["prediction_output"] == "main"
    assert main(["info", "asymformer_b0_t"]) == 0
    printed = capsys.readouterr().out
    assert "33,059,576 total" in printed and "33,059,576 trainable" in printed
    assert "pretrained rgb: convnext_tiny_1k_224_ema.pth" in printed and "inputs: asymformer_train" in printed


@pytest.fixture(scope="module")
def thermal_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB-thermal dataset in the MFNet layout (RGB + thermal in four channels), imported into the canonical one."""
    src = tmp_path_factory.mktemp("mfnet") / "ir_seg_dataset"
    rng = np.random.default_rng(0)
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for split, count in (("train", 8), ("val", 2), ("test", 2)):
        stems = [f"{split}{i:02d}" for i in range(count)]
        (src / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            labels = rng.integers(0, 9, (32, 48), dtype=np.uint8)
            thermal = (labels * 28).astype(np.uint8)  # the labels are visible in the thermal channel only
            rgba = np.dstack([rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), thermal])
            Image.fromarray(rgba).save(src / "images" / f"{stem}.png")
            Image.fromarray(labels).save(src / "labels" / f"{stem}.png")
    rgbxseg.data.import_mfnet(src, src.parent / "mfnet", progress=False)
    return src.parent / "mfnet"


def test_toy_model_trains_on_thermal_through_the_cli_with_sgd(
    thermal_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model the engine has never seen — frozen part, two outputs, SGD, thermal as X — trains through
    ``rgbxseg train``; its weights then record the thermal input, and eval, predict and export follow it."""
    register_toy(monkeypatch)
    config = {
        "data": {"root": str(thermal_scenes), "x_modality": "thermal", "val_split": "test", "crop_size": [32, 48],
                 "scale_range": [1.0, 1.0], "batch_size": 4, "val_batch_size": 2, "workers": 0},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"warmup_epochs": 0},
        "model": {"name": TOY_NAME, "kwargs": {"frozen_train_mode": "train"}},  # dropout active in the frozen stem
        "epochs": 2, "checkpoint_every": 1, "seed": 1, "ema_decay": 0.5, "output_dir": str(tmp_path / "run"),
    }  # fmt: skip
    config_path = tmp_path / "toy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(config_path), "--quiet"]) == 0
    assert main(["train", "--config", str(config_path), "--quiet", "--resume", "--set", "epochs=3"]) == 0
    capsys.readouterr()
    run = tmp_path / "run"

    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"train_loss", "loss_main", "loss_aux"} <= set(rows[0])
    for row in rows:
        assert float(row["train_loss"]) == pytest.approx(float(row["loss_main"]) + float(row["loss_aux"]), rel=1e-6)
    assert float(rows[-1]["loss_main"]) < float(rows[0]["loss_main"])

    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and len(rows) == 3
    assert len(state["optimizer"]["state"]) == 8, "SGD holds momentum for the 8 trainable tensors only"
    reseed(1, 0, None)
    initial = FrozenTwoHeadToy(9)
    stem = {n: t for n, t in [*initial.named_parameters(), *initial.named_buffers()] if n.startswith("stem.")}
    for weights in (state["model"], state["state_dict_ema"]):
        assert all(torch.equal(weights[n], t) for n, t in stem.items()), "the frozen stem (and its BN) moved"
    assert not torch.equal(state["model"]["neck.1.running_mean"], initial.neck[1].running_mean)
    assert not torch.equal(state["state_dict_ema"]["neck.0.weight"], state["model"]["neck.0.weight"])

    model = rgbxseg.load_model(run / "model.safetensors")
    assert model.input_spec.x.name == "thermal" and model.input_spec.x.encoding == "thermal_8bit"
    assert model.input_spec.name == "toy_rgbd+thermal" and not model.stem[0].weight.requires_grad

    report = tmp_path / "aux.json"
    weights = str(run / "model.safetensors")
    assert main(["eval", "--weights", weights, "--data", str(thermal_scenes), "--output", "aux", "--quiet",
                 "--json", str(report)]) == 0  # fmt: skip
    protocol = json.loads(report.read_text())["protocol"]
    assert protocol["scored_output"] == "aux" and protocol["x_modality"] == "thermal"
    assert "scored output: aux" in capsys.readouterr().out
    assert main(["eval", "--weights", weights, "--data", str(thermal_scenes), "--output", "ens", "--quiet"]) == 2
    assert "has no output 'ens'; its outputs: main, aux" in capsys.readouterr().err

    frame = thermal_scenes / "rgb" / "test00.png", thermal_scenes / "thermal" / "test00.png"
    out = tmp_path / "pred"
    argv = ["predict", "--weights", weights, "--rgb", str(frame[0]), "--x", str(frame[1]), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert (out / "labels" / "test00.png").is_file() and (out / "panel" / "test00.jpg").is_file()
    segmenter = rgbxseg.Segmenter(model)
    with pytest.raises(ValueError, match=r"second input \(thermal\) must be thermal_8bit as stored: \(H, W\) uint8"):
        segmenter.predict(np.zeros((32, 48, 3), np.uint8), np.zeros((32, 48), np.uint16))

    onnx_path = tmp_path / "toy.onnx"
    assert main(["export", "onnx", "--weights", weights, "--out", str(onnx_path), "--height", "32", "--width", "48",
                 "--exporter", "legacy"]) == 0  # fmt: skip
    onnx = pytest.importorskip("onnx")
    assert [i.name for i in onnx.load(str(onnx_path)).graph.input] == ["rgb", "thermal"]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.param_groups: parameter group pattern '\(' is not a regular"):
        load_config("synthetic_quick", ["optim.param_groups=[{pattern: '('}]"])
    config = load_config("synthetic_quick", ["optim.param_groups=[{pattern: decoder, lr_mult: 10}]"])
    assert config.optim.param_groups == (ParamGroupRule("decoder", lr_mult=10.0),)


def test_weights_trained_without_x_are_evaluated_without_it(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An RGB-only baseline (x_modality none) records it; eval then feeds zeros unless told otherwise, and refuses a
    second modality of another encoding."""
    register_toy(monkeypatch)
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / 'rgb_only'}", f"model.name={TOY_NAME}",
                 "data.x_modality=none", "data.crop_size=[64,96]", "epochs=1"]  # fmt: skip
    weights = train(load_config("synthetic_quick", overrides), progress=False).weights
    assert rgbxseg.load_model(weights).weights_metadata.extra == {"x_modality": "none"}
    report = evaluate_weights(weights, synthetic_scenes, progress=False)
    assert report.protocol["x_modality"] == "none"
    with_depth = evaluate_weights(weights, synthetic_scenes, x_modality="depth", progress=False)
    assert with_depth.protocol["x_modality"] == "depth"
    with pytest.raises(ValueError, match="no modality 'thermal'"):
        evaluate_weights(weights, synthetic_scenes, x_modality="thermal", progress=False)


def test_stages_restart_the_optimiser_and_resume_across_a_boundary(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GeminiFusion's three-stage recipe in small: each stage starts a fresh optimiser at its own rate, and a run
    stopped at a stage boundary or inside a stage resumes to the same weights as an uninterrupted one."""
    register_toy(monkeypatch)
    overrides = [f"data.root={synthetic_scenes}", f"model.name={TOY_NAME}", "data.crop_size=[64,96]", "epochs=3",
                 "schedule.stages=[{epochs: 1, lr: 0.01}, {epochs: 2, lr: 0.002}]", "schedule.warmup_iterations=2",
                 "schedule.warmup_start_factor=0.5", "schedule.poly_from_start=true", "checkpoint_every=1"]  # fmt: skip
    straight = train(
        load_config("synthetic_quick", [*overrides, f"output_dir={tmp_path / 'straight'}"]), progress=False
    )
    per_epoch = straight.iterations // 3
    assert [row["stage"] for row in straight.history] == [1, 2, 2]
    # the rate at the end of each epoch: stage 1 decays over its own iterations; stage 2 restarts at its own rate
    assert straight.history[0]["lr"] == pytest.approx(0.01 * (1 / per_epoch) ** 0.9)
    assert straight.history[1]["lr"] == pytest.approx(0.002 * 0.5**0.9)

    real_epoch = Trainer._train_epoch
    for stop in (1, 2):  # at the boundary of the stages, and inside the second one
        stopped = tmp_path / f"stopped_at_{stop}"

        def stop_there(self: Trainer, epoch: int, stop: int = stop) -> dict:
            if epoch == stop:
                raise KeyboardInterrupt
            return real_epoch(self, epoch)

        monkeypatch.setattr(Trainer, "_train_epoch", stop_there)
        with pytest.raises(KeyboardInterrupt):
            train(load_config("synthetic_quick", [*overrides, f"output_dir={stopped}"]), progress=False)
        state = load_training_checkpoint(stopped / "last.pt")
        assert (state["epoch"], state["stage"]) == (stop, stop - 1)
        monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
        config = load_config("synthetic_quick", [*overrides, f"output_dir={stopped}"])
        resumed = train(config, resume=True, progress=False)
        final = load_training_checkpoint(stopped / "last.pt")
        assert final["stage"] == 1 and all(v["step"] == 2 * per_epoch for v in final["optimizer"]["state"].values())
        ours, reference = rgbxseg.read_checkpoint(resumed.weights)[0], rgbxseg.read_checkpoint(straight.weights)[0]
        assert all(torch.equal(ours[k], reference[k]) for k in reference), f"stopped at epoch {stop}"
