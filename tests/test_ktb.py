"""KTB: the released code's logits on the public fixture, parameter counts, frozen-but-stochastic Swin, masked
modality self-teaching, DSCF and head invariants, checkpoints (released and pretrained Swin), recipes, training and
export."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import rgbxseg
from conftest import DATA, regenerate_fixture_weights
from rgbxseg.engine.config import ConfigError, OptimConfig, load_config
from rgbxseg.engine.optim import build_optimizer
from rgbxseg.engine.schedule import build_scheduler
from rgbxseg.engine.train import train
from rgbxseg.export import export_onnx
from rgbxseg.models import CheckpointMismatchError, mask_modalities
from rgbxseg.models.backbones.swin import SWIN_CONFIGS, SwinTransformer, relative_position_index
from rgbxseg.models.fusion import dat_reference_points
from rgbxseg.models.ktb import released_to_current
from rgbxseg.models.losses import VOID, cross_entropy
from rgbxseg.models.registry import describe_model

FIXTURE = DATA / "ktb_swin_b_public_fixture.pt"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def fixture() -> dict:
    """The released code's inputs and logits (see tests/data/README.md)."""
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def official_state(fixture: dict) -> dict[str, torch.Tensor]:
    """The regenerated weights in the released layout and order, the 24 index buffers included."""
    drawn = regenerate_fixture_weights(fixture["keys"], fixture["shapes"], fixture["weight_seed"])
    digest = hashlib.sha256()
    for key, tensor in drawn.items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == fixture["fill_check"]["sha256"]
    index = relative_position_index(12)
    return {k: index if k.endswith("relative_position_index") else drawn[k] for k in fixture["official_keys"]}


@pytest.fixture(scope="module")
def official_checkpoint(official_state: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ktb") / "ktb_nyu_swin_b.pth"
    torch.save({"state_dict": official_state}, path)
    return path


@pytest.fixture(scope="module")
def official_model(official_checkpoint: Path) -> rgbxseg.SegmentationModel:
    return rgbxseg.create_model("ktb_swin_b", num_classes=40, weights=official_checkpoint).eval()


def _inputs(fixture: dict) -> dict[str, torch.Tensor]:
    """The fixture's model inputs, recomputed from its 8-bit images as its spec states (bit-exact)."""
    return {
        "rgb": (fixture["rgb_uint8"].float() / 255 - IMAGENET_MEAN) / IMAGENET_STD,
        "hha": fixture["hha_uint8"].float() / 255,
        "tiled": (fixture["depth_uint8"].float() / 255).repeat(1, 3, 1, 1),
    }


@pytest.mark.parametrize("case", ["hha", "tiled"])
def test_released_checkpoint_gives_the_released_logits(
    fixture: dict, official_model: rgbxseg.SegmentationModel, case: str
) -> None:
    inputs = _inputs(fixture)
    rgb, x = inputs["rgb"], inputs[case]
    with torch.inference_mode():
        outputs = official_model.forward_outputs(rgb, x)
        fused = official_model.forward_decoder(rgb, x)
        logits = official_model(rgb, x)
    for head in ("fused", "rgb", "x"):
        expected = fixture[f"logits_{case}_{head}"]
        assert outputs[head].shape == (2, 40, 22, 30)
        assert (outputs[head] - expected).abs().max() < 1e-4, head
    assert torch.equal(fused, outputs["fused"]), "the inference path skips the single heads, same fused logits"
    upsampled = F.interpolate(fixture[f"logits_{case}_fused"], size=(88, 120), mode="bilinear", align_corners=False)
    assert logits.shape == (2, 40, 88, 120) and (logits - upsampled).abs().max() < 1e-4


def test_stage_maps_match_the_released_code(fixture: dict, official_model: rgbxseg.SegmentationModel) -> None:
    inputs = _inputs(fixture)
    with torch.inference_mode():
        fused, rgb_maps, x_maps = official_model.encode(inputs["rgb"], inputs["hha"])
    assert [tuple(m.shape[-2:]) for m in fused] == [(22, 30), (11, 15), (6, 8), (3, 4)]
    assert [m.shape[1] for m in rgb_maps + x_maps] == [128, 256, 512, 1024] * 2
    reference = fixture["stage4_fused_fp16"].float()
    assert (fused[3] - reference).abs().max() < 1e-2 * reference.abs().max()  # stored in fp16


def test_released_layout_loads_strictly_and_round_trips(official_state: dict, tmp_path: Path) -> None:
    converted = released_to_current(official_state)
    assert len(official_state) == 817 and len(converted) == 817 - 24  # index buffers checked, then dropped
    model = rgbxseg.create_model("ktb_swin_b", 40)
    assert sorted(converted) == sorted(model.state_dict())
    assert released_to_current(converted).keys() == converted.keys(), "our own layout passes unchanged"
    broken = dict(official_state)
    broken["backbone.stages.0.blocks.1.attn.w_msa.relative_position_index"] = relative_position_index(12).flip(0)
    with pytest.raises(ValueError, match="not the standard window-12 relative position index"):
        released_to_current(broken)
    swin_l = tmp_path / "swin_l_as_b.pth"
    torch.save({"backbone.patch_embed.projection.weight": torch.zeros(192, 3, 4, 4)}, swin_l)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)backbone\.patch_embed\.proj\.weight.*Nothing was loaded"):
        rgbxseg.create_model("ktb_swin_b", 40, weights=swin_l)


def test_parameter_counts_equal_the_released_code(fixture: dict) -> None:
    row = describe_model("ktb_swin_b")
    assert (row["params"], row["trainable_params"]) == (94_433_942, 7_545_886)
    assert (fixture["total_params"], fixture["trainable_params"]) == (94_433_942, 7_545_886)
    large = describe_model("ktb_swin_l")
    assert (large["params"], large["trainable_params"]) == (207_937_722, 12_724_998)  # the paper says 16.1 M
    for classes, trainable in ((37, 7_542_805), (9, 7_514_049), (5, 7_509_941), (25, 7_530_481), (20, 7_525_346)):
        assert describe_model("ktb_swin_b", classes)["trainable_params"] == trainable
    with torch.device("meta"):
        model = rgbxseg.get_model_spec("ktb_swin_b").builder(num_classes=40)
    model.freeze_declared()

    def count(pattern: str) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if re.search(pattern, n))

    assert count(r"\.adapter_") == 1_770_464 and count(r"^mapa\.") == 576_080 and count(r"^dscf\.") == 1_606_646
    assert count(r"^patch_embed_x\.") == 6_528 and count(r"^decode_head\.") == 2_055_208
    assert count(r"^decode_head_rgb\.") == count(r"^decode_head_x\.") == 765_480
    assert count(r"rel_pos_table") == 567_630 and count(r"^out_norm_|^backbone\.norm\d") == 11_520
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 423
    released = set(released_to_current({k: torch.zeros(1) for k in fixture["official_trainable"]}))
    assert released == set(trainable), "the same tensors train as under the released Adapter rule"


def test_one_step_changes_every_trainable_weight_and_no_swin_weight(tmp_path: Path) -> None:
    """The released optimiser: AdamW over the trainable set in one group, weight decay on all of it."""
    torch.manual_seed(0)
    model = rgbxseg.create_model("ktb_swin_t", 6).train()
    optimizer = build_optimizer(model, OptimConfig(name="adamw", lr=4e-4, weight_decay=0.01))
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["weight_decay"] == 0.01
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rgb, x = torch.randn(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    target = torch.randint(-1, 6, (2, 64, 64))

    def step() -> None:
        optimizer.zero_grad()
        sum(model.loss(model.forward_outputs(rgb, x), target).values()).backward()
        optimizer.step()

    step()
    # The adapters' up-projections start at 0, so their down-projections get no gradient at step 1: the weights move
    # by the decoupled weight decay alone, and the biases (0) cannot move until step 2.
    down = model.backbone.layers[0].blocks[0].adapter_rgb.down
    assert down.weight.grad is not None and not down.weight.grad.any()
    for name, parameter in model.named_parameters():
        changed = not torch.equal(parameter, before[name])
        assert changed == (parameter.requires_grad and not re.search(r"adapter_(rgb|x)\.down\.bias", name)), name
    step()
    for name, parameter in model.named_parameters():
        assert (not torch.equal(parameter, before[name])) == parameter.requires_grad, name


def test_frozen_blocks_keep_drop_path_while_training() -> None:
    model = rgbxseg.create_model("ktb_swin_t", 6).train()
    block = model.backbone.layers[2].blocks[5]
    assert not any(p.requires_grad for n, p in block.named_parameters() if "adapter" not in n)
    assert block.drop_path.training and block.drop_path.drop_prob == pytest.approx(0.3 * 9 / 11)
    assert block.attn.training, "frozen, yet in training mode: the released code never calls eval() on it"
    tokens = torch.randn(4, 16, 384)
    first, second = block(tokens, 4, 4, None, "x"), block(tokens, 4, 4, None, "x")
    assert not torch.equal(first, second), "independent drop-path masks per call"
    model.eval()
    assert torch.equal(block(tokens, 4, 4, None, "x"), block(tokens, 4, 4, None, "x"))


def test_adapters_start_as_an_exact_no_op_and_each_stream_uses_its_own() -> None:
    """Without the prompts, each stream's stage outputs are those of the plain frozen Swin at initialisation."""
    model = rgbxseg.create_model("ktb_swin_t", 6).eval()
    swin = SwinTransformer(SWIN_CONFIGS["swin_t"]).eval()
    swin.load_state_dict({k: v for k, v in model.backbone.state_dict().items() if "adapter_" not in k})
    for prompt in model.mapa:
        prompt.forward = lambda rgb, x: (torch.zeros_like(rgb), torch.zeros_like(x))
    rgb, x = torch.randn(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        _, rgb_maps, x_maps = model.encode(rgb, x)
        plain_rgb, plain_x = swin(rgb), swin(x)
    for ours, plain in zip(rgb_maps + x_maps, plain_rgb + plain_x, strict=True):
        torch.testing.assert_close(ours, plain, rtol=0, atol=1e-5)
    adapter = model.backbone.layers[0].blocks[0].adapter_x
    assert not adapter.up.weight.any() and torch.equal(model.patch_embed_x.proj.weight, swin.patch_embed.proj.weight)


def test_initial_values_are_the_released_ones() -> None:
    torch.manual_seed(1)
    model = rgbxseg.create_model("ktb_swin_b", 40)
    gammas = torch.cat([p.gamma_rgb for p in model.mapa] + [p.gamma_x for p in model.mapa]).detach()
    betas = torch.cat([p.beta_rgb for p in model.mapa] + [p.beta_x for p in model.mapa]).detach()
    assert abs(gammas.mean() - 1) < 2e-3 and abs(gammas.std() - 0.02) < 2e-3
    assert abs(betas.mean()) < 2e-3 and abs(betas.std() - 0.02) < 2e-3
    for stage, alpha in enumerate((1e-3, 1e-3, 1e-3, 1.0)):
        attention = model.dscf[stage].attention
        assert torch.equal(attention.alpha, torch.full_like(attention.alpha, alpha))
        assert torch.equal(attention.beta, torch.ones_like(attention.beta))
        assert attention.rel_pos_table.shape == (2 * 2**stage, 119, 159)
        assert abs(attention.rel_pos_table.std() - 0.01) < 1e-3
        assert abs(attention.offset_rgb.pointwise.weight.std() - 1.0) < 0.25  # N(0, 1): large initial offsets
    for norm in [*model.out_norm_x, *model.out_norm_fuse, model.backbone.norm3]:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()


def test_masking_zeroes_one_rgb_and_another_x_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(2, 4)
    for _ in range(400):
        rgb, x = mask_modalities(torch.ones(4, 10, 8), torch.ones(4, 10, 8), generator)
        rgb_zero, x_zero = (rgb == 0).all(dim=(1, 2)), (x == 0).all(dim=(1, 2))
        assert rgb_zero.sum() == 1 and x_zero.sum() == 1 and not (rgb_zero & x_zero).any()
        assert ((rgb == 0) | (rgb == 1)).all()
        counts += torch.stack([rgb_zero, x_zero]).float()
    assert (counts / 400 - 0.25).abs().max() < 0.07  # each sample masked in RGB (and in X) ≈ 1/4 of the time
    with pytest.raises(ValueError, match=r"batch of at least 2 samples; got 1.*data\.batch_size"):
        mask_modalities(torch.ones(1, 4, 8), torch.ones(1, 4, 8))


def test_training_forward_masks_tokens_and_inference_does_not() -> None:
    model = rgbxseg.create_model("ktb_swin_t", 6)
    seen = []
    model.mapa[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs))
    rgb, x = torch.randn(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    model.train().forward_outputs(rgb, x)
    model.eval().forward_outputs(rgb, x)
    (rgb_train, x_train), (rgb_eval, x_eval) = seen
    assert (rgb_train == 0).all(dim=(1, 2)).sum() == 1 and (x_train == 0).all(dim=(1, 2)).sum() == 1
    assert not (rgb_eval == 0).all(dim=(1, 2)).any() and not (x_eval == 0).all(dim=(1, 2)).any()
    with pytest.raises(ValueError, match="batch of at least 2"):
        model.train().forward_outputs(rgb[:1], x[:1])
    assert rgbxseg.create_model("ktb_swin_t", 6, modality_masking=False).min_train_batch == 1


def test_trainer_refuses_a_batch_the_masking_cannot_use(synthetic_scenes: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / 'run'}", "model.name=ktb_swin_t",
                 "data.input_spec=ktb_depth_mm", "data.batch_size=1", "data.workers=0"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"ktb_swin_t trains with batches of at least 2 .*data\.batch_size is 1"):
        train(load_config("ktb_nyuv2", overrides), progress=False)


def test_self_teaching_loss_is_the_released_one() -> None:
    model = rgbxseg.create_model("ktb_swin_t", 4)
    target = torch.tensor([[[0, 1, 2, VOID], [3, 0, 1, 2]]])  # (1, 2, 4)
    fused = torch.full((1, 4, 2, 4), -5.0)
    right = torch.tensor([[True, False, True, False], [False, True, True, False]])
    for i in range(2):
        for j in range(4):
            label = int(target[0, i, j])
            fused[0, (label if right[i, j] else (max(label, 0) + 1) % 4), i, j] = 5.0
    rgb = torch.randn(1, 4, 2, 4, requires_grad=True)
    x = torch.randn(1, 4, 2, 4, requires_grad=True)
    terms = model.loss({"fused": fused, "rgb": rgb, "x": x}, target)
    teacher = torch.where(right, target[0], VOID)[None]
    expected = cross_entropy(fused, target) + 0.01 * (cross_entropy(rgb, teacher) + cross_entropy(x, teacher))
    torch.testing.assert_close(sum(terms.values()), expected)
    sum(terms.values()).backward()
    assert not rgb.grad[0][:, ~right].any() and rgb.grad[0][:, right].abs().sum() > 0
    wrong = model.loss({"fused": -fused, "rgb": rgb, "x": x}, target)
    assert wrong["rgb"] == 0 and wrong["x"] == 0 and torch.isfinite(sum(wrong.values()))  # empty mask: 0, not NaN


def test_dscf_sampling_and_mixing_invariants() -> None:
    torch.manual_seed(2)
    model = rgbxseg.create_model("ktb_swin_t", 6).eval()
    fusion = model.dscf[1]
    attention = fusion.attention
    rgb, x = torch.randn(1, 48, 192), torch.randn(1, 48, 192)
    r, t = torch.randn(2, 24, 8, 6), torch.randn(2, 24, 8, 6)
    points = attention.sample_points(r, t)
    assert points.shape == (2 * attention.groups, 2 * 2 * 2, 2) and points.abs().max() <= 1
    reference = dat_reference_points(15, 20, torch.float32, torch.device("cpu"))
    assert reference[-1, 0, 0] == pytest.approx(1 + 1 / 14) and reference[0, -1, 1] == pytest.approx(1 + 1 / 19)
    # α = 0 leaves the fused query Q₀ (β = 1)
    with torch.no_grad():
        attention.alpha.zero_()
        out = fusion(rgb, x, 8, 6)
        query = attention.query(torch.cat([fusion.down_rgb(rgb), fusion.down_x(x)], -1).transpose(1, 2)
                                .reshape(1, 48, 8, 6))  # fmt: skip
        torch.testing.assert_close(out, fusion.up(query.flatten(2).transpose(1, 2)))
    # offset channel 0 is vertical: a constant (0, 2/(Wk − 1)) moves every RGB point one grid step to the right
    attention.offset_rgb.register_forward_hook(
        lambda module, inputs, output: torch.stack(
            [torch.zeros_like(output[:, 0]), torch.full_like(output[:, 1], 2 / 5)], 1
        )
    )
    r, t = torch.zeros(1, 24, 24, 24), torch.zeros(1, 24, 24, 24)
    moved = attention.sample_points(r, t)[:, :36].reshape(-1, 6, 6, 2)  # stride 4: a 6×6 grid
    grid = dat_reference_points(6, 6, torch.float32, torch.device("cpu"))
    torch.testing.assert_close(moved, (grid + torch.tensor([0.0, 2 / 5])).clamp(-1, 1).expand_as(moved))


def test_heads_concatenate_the_deepest_level_first() -> None:
    head = rgbxseg.create_model("ktb_swin_t", 6).decode_head.eval()
    with torch.no_grad():
        for level in (1, 2, 3):
            projection = head.projection(level - 1).proj
            projection.weight.zero_()
            projection.bias.zero_()
        head.linear_fuse[0].weight[:, :512].zero_()  # the block that reads level 4
    features = [torch.randn(1, c, 8 // 2**i, 8 // 2**i) for i, c in enumerate((96, 192, 384, 768))]
    out = head(features)
    features[3] = torch.randn_like(features[3])
    assert torch.equal(head(features), out), "with levels 1–3 silenced, only the first 512 fuse inputs read level 4"


def test_input_size_floor_is_refused_with_the_reason() -> None:
    model = rgbxseg.create_model("ktb_swin_t", 6).eval()
    with pytest.raises(rgbxseg.models.InputSizeError, match="33"):
        model(torch.randn(1, 3, 32, 64), torch.rand(1, 3, 32, 64))
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 33, 45), torch.rand(1, 3, 33, 45)).shape == (1, 6, 33, 45)


def test_schedule_is_warmup_poly_that_never_reaches_zero() -> None:
    """WarmupPolyLR with I = 198 (NYUv2: 795 images, batch 4): W = 1980, decaying towards (400 + 1)·I."""
    config = load_config("ktb_nyuv2")
    iterations = 198
    total = config.epochs * iterations + round(config.schedule.poly_extra_epochs * iterations)
    warmup = round(config.schedule.warmup_epochs * iterations)
    assert (total, warmup) == (79_398, 1_980)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = build_scheduler(optimizer, total, warmup, config.schedule.warmup_start_factor, config.schedule.power)
    factor = scheduler.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1) and factor(1980) == pytest.approx(1.0)
    assert factor(79_199) == pytest.approx(0.0046, abs=2e-4) and factor(79_398) == 0


def test_bundled_recipes_are_the_released_configs() -> None:
    released = {  # config: (input spec, crop, epochs, lr, weight decay, EVAL_START, evaluation shorter side)
        "ktb_nyuv2": ("ktb_nyuv2", (480, 640), 400, 4e-4, 0.01, 200, None),
        "ktb_sunrgbd": ("ktb_sunrgbd", (480, 480), 300, 4e-4, 0.01, 200, 480),
        "ktb_mfnet": ("ktb_thermal", (480, 640), 200, 8e-5, 5e-4, 150, None),
        "ktb_pst900": ("ktb_thermal", (480, 640), 200, 6e-4, 0.01, 150, 720),
        "ktb_deliver": ("ktb_event", (768, 768), 200, 2e-4, 0.01, 50, 1024),
    }
    for name, (spec, crop, epochs, lr, decay, start, side) in released.items():
        config = load_config(name)
        assert (config.data.input_spec, config.data.crop_size, config.epochs) == (spec, crop, epochs), name
        assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adamw", lr, decay), name
        assert (config.eval.start_after_epoch, config.eval.shorter_side) == (start, side), name
        assert config.eval.base_protocol == "ktb" and config.eval.protocol().absent_classes == "zero", name
        assert (config.data.batch_size, config.seed, config.amp, config.schedule.poly_extra_epochs) == (
            4,
            3407,
            "none",
            1,
        )
        assert (config.data.colour_jitter_p, config.data.blur_p, config.data.scale_range) == (0.2, 0.2, (0.5, 2.0))


def _swin_t_file(tmp_path: Path) -> tuple[Path, SwinTransformer]:
    swin = SwinTransformer(SWIN_CONFIGS["swin_t"])
    state = {k: torch.randn_like(v) for k, v in swin.state_dict().items() if not k.startswith("norm")}
    swin.load_state_dict(state, strict=False)
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": {**state, "norm.weight": torch.ones(768), "head.weight": torch.zeros(1000, 768)}}, path)
    return path, swin


def test_pretrained_swin_fills_the_frozen_backbone_and_the_x_patch_embedding(tmp_path: Path) -> None:
    path, swin = _swin_t_file(tmp_path)
    torch.manual_seed(3)
    model = rgbxseg.create_model("ktb_swin_t", 6, backbone_weights={"backbone": path})
    blocks = model.backbone.layers[2].blocks[3]
    assert torch.equal(blocks.attn.qkv.weight, swin.layers[2].blocks[3].attn.qkv.weight)
    assert torch.equal(model.backbone.layers[1].downsample.reduction.weight, swin.layers[1].downsample.reduction.weight)
    for ours, theirs in (
        (model.patch_embed_x.proj, swin.patch_embed.proj),
        (model.patch_embed_x.norm, swin.patch_embed.norm),
    ):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)
    assert not blocks.adapter_rgb.up.weight.any(), "adapters keep their initialisation"
    norm = model.backbone.norm0
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)), "the file's classification norm fills no output norm"
    assert not blocks.attn.qkv.weight.requires_grad and model.patch_embed_x.proj.weight.requires_grad
    truncated = tmp_path / "truncated.pth"
    state = torch.load(path, weights_only=True)["model"]
    del state["layers.3.blocks.1.mlp.fc2.weight"]
    torch.save({"model": state}, truncated)
    with pytest.raises(
        CheckpointMismatchError, match=r"(?s)layers\.3\.blocks\.1\.mlp\.fc2\.weight.*Nothing was loaded"
    ):
        rgbxseg.create_model("ktb_swin_t", 6, backbone_weights={"backbone": truncated})


def test_short_training_learns_on_rgbd(synthetic_scenes: Path, tmp_path: Path) -> None:
    """The NYUv2 recipe, smaller (Swin-T, random frozen Swin): the fused head's loss falls and the weights record
    KTB's metric-depth input."""
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / 'run'}", "model.name=ktb_swin_t",
                 "data.input_spec=ktb_depth_mm", "data.crop_size=[64,96]", "data.scale_range=[1.0,1.0]",
                 "data.colour_jitter_p=0", "data.blur_p=0", "data.batch_size=4", "data.workers=0", "optim.lr=1e-3",
                 "epochs=5", "checkpoint_every=5", "schedule.warmup_epochs=0", "eval.every_epochs=0",
                 "eval.shorter_side=96"]  # fmt: skip
    result = train(load_config("ktb_nyuv2", overrides), progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0]
    model = rgbxseg.load_model(result.weights)
    assert model.model_name == "ktb_swin_t" and model.input_spec.name == "ktb_depth_mm"
    assert 0.0 <= result.history[-1]["val_miou"] <= 1.0


def test_onnx_export_matches_onnxruntime(tmp_path: Path) -> None:
    """Parity relative to the logits' scale: the random heads' fan-out initialisation gives logits of O(100), where
    float32 rounding alone is O(1e-4)."""
    model = rgbxseg.create_model("ktb_swin_t", 6).eval()
    rgb, x = model.input_spec.example_inputs(1, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model(rgb, x).numpy()
    scale = float(np.abs(expected).max())
    report = export_onnx(model, tmp_path / "ktb.onnx", height=64, width=96, exporter="legacy", tolerance=1e-5 * scale)
    assert max(check.max_abs_diff for check in report.parity) < 1e-5 * scale
    session = ort.InferenceSession(str(tmp_path / "ktb.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"rgb": rgb.numpy(), "hha": x.numpy()})
    np.testing.assert_allclose(logits, expected, atol=1e-5 * scale)
    assert (logits.argmax(1) == expected.argmax(1)).mean() > 0.999
