"""AsymFormer B0-T against the official model: key layout, parameter counts, logits, fusion math, input errors."""

from __future__ import annotations

import hashlib

import pytest
import torch

import rgbxseg
from conftest import ASYMFORMER_MODELS
from rgbxseg.models.asymformer import AsymFormer
from rgbxseg.models.fusion import LAFS, CrossModalAttention
from rgbxseg.models.layers import InputShapeError, InputSizeError, pad_to_multiple

TABLE_I_PARAMS_M = {
    "asymformer_b0_t_cat": 31.9,
    "asymformer_b0_t_se_mhsa": 32.6,
    "asymformer_b0_t_lafs": 32.4,
    "asymformer_b0_t_cma": 32.5,
}
"""The four ablation variants; the full model (paper 33.0 M) is checked exactly against the release."""


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_state_dict_layout_equals_the_official_manifest(manifest: dict) -> None:
    state = AsymFormer(num_classes=40).state_dict()
    assert list(state) == list(manifest["state_dict"])  # same keys in the same order
    params = {name for name, _ in AsymFormer(num_classes=40).named_parameters()}
    for key, entry in manifest["state_dict"].items():
        assert list(state[key].shape) == entry["shape"], key
        assert str(state[key].dtype).removeprefix("torch.") == entry["dtype"], key
        assert (key in params) == (entry["kind"] == "parameter"), key
    assert len(state) == manifest["num_state_dict_entries"] == 470


def test_parameter_counts_match_the_release(manifest: dict) -> None:
    model = AsymFormer(num_classes=40)
    assert count_params(model) == 33_059_576
    assert rgbxseg.get_model_spec("asymformer_b0_t").paper.params_m == 33.0
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        group = manifest["state_dict"][name]["group"]
        groups[group] = groups.get(group, 0) + p.numel()
    assert groups == manifest["parameters_by_group"]
    assert count_params(AsymFormer(num_classes=37)) == 33_058_805  # SUN RGB-D: only linear_pred changes


@pytest.mark.parametrize("name", sorted(TABLE_I_PARAMS_M))
def test_table_i_variants_match_the_paper(name: str) -> None:
    with torch.device("meta"):
        model = rgbxseg.get_model_spec(name).builder(num_classes=40)
    measured_m = count_params(model) / 1e6
    assert abs(measured_m - TABLE_I_PARAMS_M[name]) < 0.05
    assert rgbxseg.get_model_spec(name).paper.params_m == TABLE_I_PARAMS_M[name]


def test_table_i_variant_counts_follow_the_documented_constructions() -> None:
    counts = {}
    for name in TABLE_I_PARAMS_M:
        with torch.device("meta"):
            counts[name] = count_params(rgbxseg.get_model_spec(name).builder(num_classes=40))
    assert counts["asymformer_b0_t_cat"] == 31_906_664
    assert counts["asymformer_b0_t_lafs"] == 31_906_664 + 528_768  # + LAFS at three stages
    assert counts["asymformer_b0_t_cma"] == 31_906_664 + 624_144  # + CMA at three stages
    assert counts["asymformer_b0_t_se_mhsa"] == 31_906_664 + 352_512 + 382_848  # SE r=8 (C²/4) + MHSA (4Cd² + 4Cd)


def test_regenerated_fixture_weights_are_the_official_ones(reference_state: dict) -> None:
    digest = hashlib.sha256()
    for key, tensor in reference_state.items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == "5b6ede916e51d1a30252699bc31ca8cf5df4436c9ef9b267e47bcb5f54725e0f"


def test_logits_equal_the_official_model(reference: dict, reference_state: dict) -> None:
    model = AsymFormer(num_classes=40).eval()
    model.load_state_dict(reference_state, strict=True)
    with torch.inference_mode():
        logits = model(reference["rgb"], reference["depth"])
    assert logits.shape == (1, 40, 128, 160)
    assert (logits - reference["logits"]).abs().max().item() <= 1e-4


def test_reference_inputs_follow_the_declared_normalisation(reference: dict) -> None:
    spec = rgbxseg.models.ASYMFORMER_TRAIN
    assert torch.equal(spec.rgb.normalize(reference["rgb_uint8"]), reference["rgb"])
    assert torch.equal(spec.x.normalize(reference["depth_mm"]), reference["depth"])


def test_lafs_matches_the_2023_formula() -> None:
    """The fixture cannot see an LAFS spatial-map error (spec §24), so test the formula directly."""
    torch.manual_seed(1)
    channels = 64
    lafs = LAFS(channels)
    x = torch.randn(2, channels, 5, 7) * 40  # large activations make the spatial gate depart from 0.5
    g = x.mean((2, 3))
    s = lafs.fc_spatial[2](torch.relu(lafs.fc_spatial[0](g)))
    c = torch.sigmoid(lafs.fc_channel[2](torch.relu(lafs.fc_channel[0](g))))
    spatial = torch.sigmoid((x * s[:, :, None, None]).sum(1, keepdim=True) / channels / channels)
    expected = spatial * x * c[:, :, None, None]
    assert (spatial - 0.5).abs().max() > 1e-2
    torch.testing.assert_close(lafs(x), expected, rtol=1e-5, atol=1e-5)


def test_cma_matches_an_explicit_two_map_computation() -> None:
    torch.manual_seed(2)
    cd, cr, h, w = 16, 32, 3, 4
    cma = CrossModalAttention(cd, cr).eval()
    for bn in (cma.bn_x1, cma.bn_x2, cma.bn_last):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 1.5)
    d, r, fused = torch.randn(2, cd, h, w), torch.randn(2, cr, h, w), torch.randn(2, cd, h, w)

    a = cma.bn_x1(d).flatten(2).transpose(1, 2)
    b = cma.bn_x2(r).flatten(2).transpose(1, 2)
    p, q = cma.kq1(a), cma.kq2(b)
    m2, m1 = cr // 4, cd // 4
    z = torch.empty(2, h * w, 4 * m2)
    z[..., 0::2], z[..., 1::2] = p, q
    k1, q1, k2, q2 = (z[..., i * m2 : (i + 1) * m2] for i in range(4))
    v = cma.v_conv(fused.flatten(2).transpose(1, 2))
    o1 = torch.softmax(q1 @ k1.transpose(1, 2) * m2**-0.5, dim=-1) @ v[..., :m1]
    o2 = torch.softmax(q2 @ k2.transpose(1, 2) * m2**-0.5, dim=-1) @ v[..., m1:]
    y = cma.out_conv(torch.cat([o1, o2], dim=-1)).transpose(1, 2).reshape(2, cd, h, w)
    expected = cma.bn_last(y) + fused
    with torch.no_grad():
        torch.testing.assert_close(cma(d, r, fused), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ASYMFORMER_MODELS)
def test_every_model_trains_forward_and_backward(name: str) -> None:
    model = rgbxseg.create_model(name, num_classes=5).train()
    rgb, depth = torch.randn(2, 3, 64, 96), torch.randn(2, 1, 64, 96)
    logits = model(rgb, depth)
    assert logits.shape == (2, 5, 64, 96)
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 5, (2, 64, 96)))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, no_grad


def test_h_w_not_multiple_of_32_names_the_valid_sizes() -> None:
    model = AsymFormer(num_classes=4).eval()
    with pytest.raises(InputSizeError, match=r"240×320.*224×320, 256×320"):
        model(torch.zeros(1, 3, 240, 320), torch.zeros(1, 1, 240, 320))


@pytest.mark.parametrize(
    ("rgb_shape", "depth_shape", "message"),
    [
        ((1, 3, 64, 64), (1, 1, 64, 96), "differ in batch or H×W"),
        ((2, 3, 64, 64), (1, 1, 64, 64), "differ in batch or H×W"),
        ((1, 3, 64, 64), (1, 3, 64, 64), r"second input \(depth\) must be \(B, 1, H, W\)"),
        ((1, 4, 64, 64), (1, 1, 64, 64), r"rgb must be \(B, 3, H, W\)"),
    ],
)
def test_mismatched_inputs_raise_a_clear_error(rgb_shape: tuple, depth_shape: tuple, message: str) -> None:
    model = AsymFormer(num_classes=4).eval()
    with pytest.raises(InputShapeError, match=message):
        model(torch.zeros(rgb_shape), torch.zeros(depth_shape))


def test_padding_to_a_multiple_and_cropping_back_works_for_odd_sizes() -> None:
    model = AsymFormer(num_classes=4).eval()
    rgb, depth = torch.randn(1, 3, 50, 70), torch.randn(1, 1, 50, 70)
    padded_rgb, padded_depth = pad_to_multiple(rgb, 32), pad_to_multiple(depth, 32)
    assert padded_rgb.shape[-2:] == (64, 96)
    assert torch.equal(padded_rgb[..., :50, :70], rgb)
    with torch.no_grad():
        logits = model(padded_rgb, padded_depth)[..., :50, :70]
    assert logits.shape == (1, 4, 50, 70)
