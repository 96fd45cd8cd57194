"""GeminiFusion: the official outputs on the public fixtures, parameter counts, the fusion against the official loop,
released and ImageNet checkpoints, training, export and benchmark."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rgbxseg
from conftest import DATA, regenerate_fixture_weights
from rgbxseg.bench import benchmark
from rgbxseg.cli import main
from rgbxseg.engine.config import load_config
from rgbxseg.engine.train import train
from rgbxseg.models import CheckpointMismatchError
from rgbxseg.models.backbones import MIT_CONFIGS, MixTransformer, StreamLayerNorm
from rgbxseg.models.backbones.swin import (
    SWIN_CONFIGS,
    SwinTransformer,
    interpolate_bias_table,
    relative_position_index,
    shift_mask,
)
from rgbxseg.models.fusion import PixelwiseFusion
from rgbxseg.models.registry import describe_model

FIXTURES = {"geminifusion_mit_b0": "geminifusion_mit_b0_io.pt", "geminifusion_swin_t": "geminifusion_swin_t_io.pt"}


def _fixture(name: str) -> dict:
    return torch.load(DATA / FIXTURES[name], weights_only=True)


def _state(fixture: dict) -> dict[str, torch.Tensor]:
    return regenerate_fixture_weights(
        fixture["keys"], fixture["shapes"], fixture["weight_seed"], fixture.get("relative_position_index_w7")
    )


def _sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _released_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The layout of the released checkpoints: DDP keys, the epoch and a numpy best mIoU."""
    torch.save({"segmenter": {f"module.{k}": v for k, v in state.items()}, "epoch_start": 299,
                "best_val": np.float64(57.7)}, path)  # fmt: skip
    return path


@pytest.mark.parametrize("name", list(FIXTURES))
def test_released_layout_gives_the_official_outputs(name: str, tmp_path: Path) -> None:
    fixture = _fixture(name)
    state = _state(fixture)
    assert _sha256(state) == fixture["state_sha256"]
    model = rgbxseg.create_model(name, num_classes=40, weights=_released_file(tmp_path / "release.pth.tar", state))
    x = fixture["case0_x"] if model.x_channels == 3 else fixture["case0_x"][:, :1]
    with torch.inference_mode():
        outputs = model.eval().forward_outputs(fixture["case0_rgb"], x)
        prediction = model(fixture["case0_rgb"], x)
    for key in ("rgb", "x", "ens"):
        expected = fixture[f"case0_logits_{key}"]
        assert outputs[key].shape == expected.shape
        assert (outputs[key] - expected).abs().max() < 1e-4, key
    assert torch.equal(model.alpha.detach(), fixture["alpha"])
    assert prediction.shape == (2, 40, *fixture["case0_hw"])


def test_a_partial_release_is_refused_with_the_keys(tmp_path: Path) -> None:
    fixture = _fixture("geminifusion_mit_b0")
    state = _state(fixture)
    del state["encoder.block2.1.attn.k_noise.weight"]
    state["encoder.block2.1.attn.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as info:
        rgbxseg.create_model("geminifusion_mit_b0", weights=_released_file(tmp_path / "partial.pth", state))
    message = str(info.value)
    assert "missing from the checkpoint: encoder.block2.1.attn.fusion.k_noise.weight" in message
    assert "unexpected in the checkpoint: encoder.block2.1.attn.extra.weight" in message


def test_numpy_1_scalars_in_released_files_are_accepted(tmp_path: Path) -> None:
    """Files saved under numpy 1 name the scalar constructor ``numpy.core.multiarray.scalar``: rewrite the pickle of a
    numpy-2 file that way (protocol 2 names globals in plain text lines)."""
    saved = zipfile.ZipFile(_released_file(tmp_path / "numpy2.pth", {"alpha": torch.ones(2)}))
    old_numpy = tmp_path / "numpy1.pth"
    with zipfile.ZipFile(old_numpy, "w") as rewritten:
        for entry in saved.infolist():
            data = saved.read(entry.filename)
            if entry.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            rewritten.writestr(entry.filename, data)
    assert list(rgbxseg.read_checkpoint(old_numpy)[0]) == ["module.alpha"]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("geminifusion_mit_b0", 5_863_562),
        ("geminifusion_mit_b5", 137_209_322),
        ("geminifusion_swin_t", 51_950_180),
        ("geminifusion_swin_l_w12", 369_215_966),
    ],
)
def test_parameter_counts_equal_the_official_ones(name: str, params: int) -> None:
    row = describe_model(name, 40)
    assert row["params"] == params and row["trainable_params"] == params - 2  # α stays out of the optimiser
    assert abs(row["params"] / 1e6 - row["paper"]["params_m"]) < 0.01


def test_vectorised_fusion_equals_the_official_per_sample_loop() -> None:
    """The official code loops over the batch and calls nn.MultiheadAttention with the pixels as its batch."""
    torch.manual_seed(1)
    dim, batch, pixels = 32, 3, 40
    fusion = PixelwiseFusion(dim, num_heads=8).eval()
    rgb, x = torch.randn(batch, pixels, dim), torch.randn(batch, pixels, dim)
    attentions = {}
    for name in ("cross_attn_0_to_1", "cross_attn_1_to_0"):
        attentions[name] = nn.MultiheadAttention(dim, 8, dropout=0.0, batch_first=False).eval()
        attentions[name].load_state_dict(getattr(fusion, name).state_dict())
    streams, fused = [rgb, x], [[], []]
    with torch.no_grad():
        for b in range(batch):
            for row, name in enumerate(attentions):
                own, other = streams[row][b][None], streams[1 - row][b][None]
                relation = fusion.relation_judger(torch.cat([own, other], dim=-1))
                keys = torch.cat([fusion.k_noise.weight[row] + own, own * relation])
                values = torch.cat([fusion.v_noise.weight[row] + own, other])
                fused[row].append(own[0] + attentions[name](own, keys, values)[0][0])
        ours = fusion(rgb, x)
    for row in range(2):
        torch.testing.assert_close(ours[row], torch.stack(fused[row]), rtol=0, atol=1e-6)


def test_layer_norms_and_gelu_are_those_of_the_official_code() -> None:
    """What 1e-4 on the fixtures cannot see: MiT's per-modality norms all use eps 1e-6; Swin shares its block and
    patch-merging norms (eps 1e-5) and keeps the patch-embedding and output norms per modality (eps 1e-6); GELU is
    the exact one."""
    mit = rgbxseg.create_model("geminifusion_mit_b0")
    norms = [m for m in mit.encoder.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and {m.eps for m in norms} == {1e-6}
    assert all(isinstance(mit.encoder.get_submodule(name), StreamLayerNorm)
               for name in ("patch_embed1.norm", "block1.0.norm1", "block1.0.attn.norm", "norm4"))  # fmt: skip
    swin = rgbxseg.create_model("geminifusion_swin_t").encoder
    shared = [swin.layers[0].blocks[0].norm1, swin.layers[2].blocks[5].norm2, swin.layers[1].downsample.norm]
    assert all(type(m) is nn.LayerNorm and m.eps == 1e-5 for m in shared)
    streams = [swin.patch_embed.norm, swin.norm0, swin.norm3]
    assert all(isinstance(m, StreamLayerNorm) and m.ln_0.eps == m.ln_1.eps == 1e-6 for m in streams)
    gelus = [m for model in (mit, swin) for m in model.modules() if isinstance(m, nn.GELU)]
    assert gelus and {m.approximate for m in gelus} == {"none"}


def test_imagenet_mit_initialises_both_modalities_norms(tmp_path: Path) -> None:
    mit = MixTransformer(MIT_CONFIGS["mit_b0"])
    nn.init.normal_(mit.block1[0].norm1.weight)
    path = tmp_path / "mit_b0.pth"
    torch.save({**mit.state_dict(), "head.weight": torch.zeros(1000, 256), "head.bias": torch.zeros(1000)}, path)
    model = rgbxseg.create_model("geminifusion_mit_b0", backbone_weights={"backbone": path})
    norm1 = model.encoder.block1[0].norm1
    assert torch.equal(norm1.ln_0.weight, mit.block1[0].norm1.weight) and torch.equal(
        norm1.ln_1.weight, norm1.ln_0.weight
    )
    assert torch.equal(model.encoder.block4[1].mlp.fc2.weight, mit.block4[1].mlp.fc2.weight)
    assert torch.equal(model.encoder.patch_embed1.proj.weight, mit.patch_embed1.proj.weight)


def _microsoft_swin_t(tmp_path: Path) -> tuple[Path, SwinTransformer]:
    """A Swin-T file in Microsoft's layout (weights under 'model', with the classifier and index buffers)."""
    swin = SwinTransformer(SWIN_CONFIGS["swin_t"])
    state = {k: torch.randn_like(v) for k, v in swin.state_dict().items() if not k.startswith("norm")}
    swin.load_state_dict(state, strict=False)
    extra = {"norm.weight": torch.ones(768), "head.weight": torch.zeros(1000, 768),
             "layers.0.blocks.1.attn.relative_position_index": relative_position_index(7)}  # fmt: skip
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": {**state, **extra}}, path)
    return path, swin


def test_microsoft_and_openmmlab_swin_files_initialise_the_shared_encoder(tmp_path: Path) -> None:
    path, swin = _microsoft_swin_t(tmp_path)
    model = rgbxseg.create_model("geminifusion_swin_t", backbone_weights={"backbone": path})
    encoder = model.encoder
    assert torch.equal(encoder.layers[2].blocks[3].attn.qkv.weight, swin.layers[2].blocks[3].attn.qkv.weight)
    for norm in (encoder.patch_embed.norm.ln_0, encoder.patch_embed.norm.ln_1, encoder.norm0.ln_0):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)), "per-modality norms stay at 1, 0 (official)"

    # The same weights in OpenMMLab's layout: names of swin2mmseg.py, patch-merging features in unfold order
    # (W_mm[:, c·4 + j] = W_ms[:, π(j)·C + c] with π = [0, 2, 1, 3]).
    def to_mmseg(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
        if ".downsample." in key:
            channels = value.shape[-1] // 4
            order = [[0, 2, 1, 3][j] * channels + c for c in range(channels) for j in range(4)]
            value = value[..., order]
        key = re.sub(r"^layers\.", "stages.", key)
        for old, new in ((".attn.", ".attn.w_msa."), (".mlp.fc1.", ".ffn.layers.0.0."), (".mlp.fc2.", ".ffn.layers.1."),
                         ("patch_embed.proj.", "patch_embed.projection.")):  # fmt: skip
            key = key.replace(old, new)
        return f"backbone.{key}", value

    mmseg = dict(to_mmseg(k, v) for k, v in torch.load(path, weights_only=True)["model"].items())
    torch.save({"state_dict": mmseg}, tmp_path / "mmseg.pth")
    from_mmseg = rgbxseg.create_model("geminifusion_swin_t", backbone_weights={"backbone": tmp_path / "mmseg.pth"})
    merging = from_mmseg.encoder.layers[1].downsample
    assert torch.equal(merging.reduction.weight, swin.layers[1].downsample.reduction.weight)
    assert torch.equal(merging.norm.bias, swin.layers[1].downsample.norm.bias)


def test_bias_tables_are_interpolated_to_another_window() -> None:
    """As the official loader does: each head's (2w−1)² table as an image, resized bicubically."""
    table = torch.randn(13 * 13, 3)
    resized = interpolate_bias_table(table, 12)
    assert resized.shape == (23 * 23, 3)
    for head in range(3):
        image = table[:, head].reshape(1, 1, 13, 13)
        expected = torch.nn.functional.interpolate(image, size=(23, 23), mode="bicubic", align_corners=False)
        torch.testing.assert_close(resized[:, head], expected.flatten())
    assert interpolate_bias_table(table, 7) is table


def test_shift_masks_separate_the_nine_regions_of_the_padded_map() -> None:
    """An independent construction: region = (row band, column band) of the padded map, bands split at −window and
    −shift; within a window, tokens of different regions get −100."""
    height, width, window, shift = 14, 21, 7, 3
    band = lambda i, size: 0 if i < size - window else (1 if i < size - shift else 2)  # noqa: E731
    regions = torch.tensor([[3 * band(r, height) + band(c, width) for c in range(width)] for r in range(height)])
    windows = regions.reshape(height // window, window, width // window, window).permute(0, 2, 1, 3).reshape(-1, 49)
    expected = torch.where(windows[:, :, None] == windows[:, None, :], 0.0, -100.0)
    assert torch.equal(shift_mask(height, width, window, shift, torch.device("cpu")), expected)


@pytest.mark.parametrize("name", ["geminifusion_mit_b0", "geminifusion_swin_t"])
def test_samples_do_not_mix_through_the_stacked_streams(name: str) -> None:
    """RGB and X run stacked along the batch: every sample's outputs must equal those of the sample alone, at a size
    whose Swin maps are odd and smaller than the window at stage 4."""
    model = rgbxseg.create_model(name, num_classes=5).eval()
    rgb, x = model.input_spec.example_inputs(3, 100, 132, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        together = model.forward_outputs(rgb, x)
        alone = model.forward_outputs(rgb[1:2], x[1:2])
    for key in model.outputs:
        torch.testing.assert_close(together[key][1:2], alone[key], rtol=0, atol=1e-5)


def test_parameter_groups_and_drop_path_are_the_official_ones() -> None:
    """Encoder weights with decay, encoder parameters whose name says "norm" without, decoder at 10× the rate, α in
    no group; each variant's drop path is its NYUv2 recipe's (rising linearly to the last block)."""
    model = rgbxseg.create_model("geminifusion_mit_b0")
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: {names[id(p)] for p in g["params"]} for g in model.param_groups(lr=1.0, weight_decay=0.01)}
    decay = {g["name"]: (g["lr"], g["weight_decay"]) for g in model.param_groups(lr=1.0, weight_decay=0.01)}
    assert groups[r"^decoder\."] == {n for n in names.values() if n.startswith("decoder.")}
    assert groups[r"^encoder\..*norm"] == {n for n in names.values() if n.startswith("encoder.") and "norm" in n}
    assert (
        "alpha" not in set().union(*groups.values()) and "encoder.block1.0.attn.fusion.k_noise.weight" in groups["base"]
    )
    assert decay == {"base": (1.0, 0.01), r"^decoder\.": (10.0, 0.01), r"^encoder\..*norm": (1.0, 0.0)}
    rates = {name: rgbxseg.create_model(name).encoder for name in ("geminifusion_mit_b0", "geminifusion_swin_t")}
    assert rates["geminifusion_mit_b0"].block4[1].drop_path.drop_prob == pytest.approx(0.4)
    assert rates["geminifusion_swin_t"].layers[3].blocks[1].drop_path.drop_prob == pytest.approx(0.2)
    with torch.device("meta"):
        b5 = rgbxseg.get_model_spec("geminifusion_mit_b5").builder()
    assert b5.encoder.block4[2].drop_path.drop_prob == pytest.approx(0.35)


def test_bundled_configs_are_the_published_recipes() -> None:
    nyu, sun = load_config("geminifusion_nyuv2"), load_config("geminifusion_sunrgbd")
    for config in (nyu, sun):
        assert [(stage.epochs, stage.lr) for stage in config.schedule.stages] == [
            (100, 6e-5),
            (100, 3e-5),
            (100, 1.5e-5),
        ]
        schedule = config.schedule
        assert (schedule.warmup_iterations, schedule.warmup_start_factor, schedule.power) == (1500, 1e-6, 1.0)
        assert (schedule.poly_iterations, schedule.poly_from_start, config.epochs) == (40_000, True, 300)
        assert (config.optim.name, config.optim.betas, config.optim.eps) == ("adamw", (0.9, 0.999), 1e-8)
        data = config.data
        assert (data.scale_range, data.flip_prob, data.hsv_jitter, data.batch_size) == ((0.5, 2.0), 0.5, False, 2)
        assert (data.colour_jitter_p, data.colour_jitter, data.blur_p, data.blur_sigma) == (0.2, 0.5, 0.2, 0.8)
        assert (config.eval.shorter_side, config.eval.logit_upsampling, config.eval.every_epochs) == (480, "bicubic", 5)
    assert (nyu.model.name, nyu.data.crop_size, nyu.optim.weight_decay) == ("geminifusion_mit_b5", (480, 640), 0.01)
    assert (sun.data.crop_size, sun.optim.weight_decay, sun.model.kwargs) == ((480, 480), 0.05, {"drop_path": 0.4})
    assert sun.data.input_spec == "geminifusion_sunrgbd"


def test_short_training_learns_and_logs_the_three_loss_terms(synthetic_scenes: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={synthetic_scenes}", f"output_dir={tmp_path / 'run'}", "model.name=geminifusion_mit_b0",
                 "data.crop_size=[64,96]", "data.batch_size=4", "optim.lr=1e-3", "epochs=4",
                 "checkpoint_every=4"]  # fmt: skip
    result = train(load_config("synthetic_quick", overrides), progress=False)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0]
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"loss_rgb", "loss_x", "loss_ens"} <= set(rows[0])
    model = rgbxseg.load_model(result.weights)
    assert model.input_spec.name == "geminifusion_nyudv2" and torch.equal(model.alpha.detach(), torch.ones(2))


def test_bench_counts_the_fusion_attention() -> None:
    result = benchmark("geminifusion_mit_b0", height=64, width=96, warmup=0, runs=1)
    assert result.macs.attention_macs > 0 and result.macs.params == 5_863_562
    assert "geminifusion_mit_b0" in result.describe()


def test_eval_with_the_published_protocol_scores_the_ensemble(
    synthetic_scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = rgbxseg.save_weights(rgbxseg.create_model("geminifusion_mit_b0"), tmp_path / "gf.safetensors")
    report_path = tmp_path / "report.json"
    argv = ["eval", "--weights", str(weights), "--data", str(synthetic_scenes), "--protocol", "geminifusion",
            "--quiet", "--json", str(report_path)]  # fmt: skip
    assert main(argv) == 0
    protocol = json.loads(report_path.read_text())["protocol"]
    assert (protocol["scored_output"], protocol["shorter_side"], protocol["logit_upsampling"]) == (
        "ens",
        480,
        "bicubic",
    )
    assert protocol["resolution"].startswith("shorter side 480, both sides up to a multiple of 32")
    assert "scored output: ens" in capsys.readouterr().out
    model = rgbxseg.load_model(weights)
    rgb, x = model.input_spec.example_inputs(1, 64, 96)
    with torch.inference_mode():
        bicubic = model.output_logits(rgb, x, mode="bicubic")
        expected = torch.nn.functional.interpolate(model.forward_outputs(rgb, x)["ens"], size=(64, 96), mode="bicubic")
    assert torch.equal(bicubic, expected)
