"""The shared backbones: official key layouts, shapes, and the reuse paths the peer methods need."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rgbxseg.models.backbones import (
    CONVNEXT_CONFIGS,
    MIT_CONFIGS,
    ConvNeXt,
    ConvNeXtBlock,
    EfficientSelfAttention,
    MiTBlock,
    MixTransformer,
    StreamLayerNorm,
)
from rgbxseg.models.decoders import MLPDecoder
from rgbxseg.models.layers import DropPath, LayerNorm2d, check_spatial_size


@pytest.mark.parametrize(("name", "params"), [("convnext_t", 27_818_592), ("convnext_s", 49_453_152)])
def test_convnext_keeps_the_official_layout(name: str, params: int) -> None:
    with torch.device("meta"):
        model = ConvNeXt(CONVNEXT_CONFIGS[name])
    keys = list(model.state_dict())
    assert keys[:4] == ["downsample_layers.0.0.weight", "downsample_layers.0.0.bias", "downsample_layers.0.1.weight",
                        "downsample_layers.0.1.bias"]  # fmt: skip
    assert "stages.2.0.gamma" in keys and "stages.3.2.pwconv2.bias" in keys
    assert sum(p.numel() for p in model.parameters()) == params


def test_convnext_features_have_the_documented_strides() -> None:
    model = ConvNeXt(CONVNEXT_CONFIGS["convnext_t"]).eval()
    shapes = [tuple(f.shape) for f in model(torch.randn(1, 3, 64, 96))]
    assert shapes == [(1, 96, 16, 24), (1, 192, 8, 12), (1, 384, 4, 6), (1, 768, 2, 3)]


@pytest.mark.parametrize(("name", "params"), [("mit_b0", 3_319_392), ("mit_b5", 81_443_008)])
def test_mit_keeps_the_segformer_layout(name: str, params: int) -> None:
    with torch.device("meta"):
        model = MixTransformer(MIT_CONFIGS[name])
    keys = set(model.state_dict())
    assert {"patch_embed1.proj.weight", "block1.0.attn.sr.weight", "block1.0.attn.norm.weight",
            "block4.0.mlp.dwconv.dwconv.weight", "norm4.weight"} <= keys  # fmt: skip
    assert "block4.0.attn.sr.weight" not in keys  # sr ratio 1 at stage 4
    assert sum(p.numel() for p in model.parameters()) == params


def test_mit_attention_equals_explicit_spatial_reduction_attention() -> None:
    torch.manual_seed(3)
    attn = EfficientSelfAttention(dim=64, num_heads=2, sr_ratio=2).eval()
    x, h, w = torch.randn(2, 6 * 8, 64), 6, 8
    q = attn.q(x).reshape(2, 48, 2, 32).permute(0, 2, 1, 3)
    reduced = attn.sr(x.transpose(1, 2).reshape(2, 64, h, w)).flatten(2).transpose(1, 2)
    kv = attn.kv(attn.norm(reduced)).reshape(2, -1, 2, 2, 32).permute(2, 0, 3, 1, 4)
    out = (torch.softmax(q @ kv[0].transpose(-2, -1) * 32**-0.5, dim=-1) @ kv[1]).transpose(1, 2).reshape(2, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, h, w), attn.proj(out), rtol=1e-5, atol=1e-5)


def test_one_shared_mit_runs_two_modalities_with_their_own_norms() -> None:
    """GeminiFusion's dual stream: shared weights, per-modality LayerNorms, modalities stacked along the batch."""
    torch.manual_seed(4)
    shared = MixTransformer(MIT_CONFIGS["mit_b0"], norm_layer=lambda dim, eps: StreamLayerNorm(dim, eps, 2)).eval()
    for module in shared.modules():
        if isinstance(module, nn.LayerNorm):
            nn.init.normal_(module.weight, 1.0, 0.2)
            nn.init.normal_(module.bias, 0.0, 0.2)
    rgb, depth = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        both = shared(torch.cat([rgb, depth]))
    for stream, image in enumerate((rgb, depth)):
        single = MixTransformer(MIT_CONFIGS["mit_b0"]).eval()
        own = {k: v for k, v in shared.state_dict().items() if ".ln_" not in k or f".ln_{stream}." in k}
        single.load_state_dict({k.replace(f".ln_{stream}.", "."): v for k, v in own.items()})
        with torch.no_grad():
            expected = single(image)
        for fused, alone in zip(both, expected, strict=True):
            torch.testing.assert_close(fused[stream : stream + 1], alone, rtol=1e-5, atol=1e-5)


def test_mit_attention_can_be_extended_by_subclassing_and_frozen() -> None:
    """DPLNet-style: a prompt branch in every frozen block, fed one shared prompt tensor through the block's context,
    without forking the MiT."""

    class PromptedAttention(EfficientSelfAttention):
        def __init__(self, dim: int, *args: object) -> None:
            super().__init__(dim, *args)
            self.prompt_proj = nn.Linear(8, dim)

        def forward(self, x: torch.Tensor, h: int, w: int, context: torch.Tensor | None = None) -> torch.Tensor:
            _, out = self.attend(x, h, w)
            return self.proj(out) + self.prompt_proj(context).mean(1, keepdim=True)

    model = MixTransformer(MIT_CONFIGS["mit_b0"])
    extended = MixTransformer(MIT_CONFIGS["mit_b0"], attention_cls=PromptedAttention)
    extended.load_state_dict(model.state_dict(), strict=False)
    pretrained = {n for n, p in extended.named_parameters() if "prompt" not in n}
    extended.freeze()
    for block in extended.block1:
        block.attn.prompt_proj.requires_grad_(True)
    prompt = torch.randn(1, 30, 8, requires_grad=True)
    image = torch.randn(1, 3, 32, 32)
    extended(image, context=prompt)[-1].sum().backward()
    assert all(extended.get_parameter(n).grad is None for n in pretrained)
    assert extended.block1[0].attn.prompt_proj.weight.grad is not None
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0, "the shared context reaches the blocks"
    with torch.no_grad():
        assert not torch.equal(extended(image, context=prompt)[0], extended(image, context=prompt + 1)[0])


def test_backbones_announce_their_features_and_take_block_factories() -> None:
    x = torch.randn(1, 3, 64, 96)
    for backbone in (MixTransformer(MIT_CONFIGS["mit_b0"]), ConvNeXt(CONVNEXT_CONFIGS["convnext_t"])):
        features = backbone.eval()(x)
        assert [(info.channels, info.stride) for info in backbone.feature_info] == [
            (f.shape[1], x.shape[-1] // f.shape[-1]) for f in features
        ]
        assert [info.stride for info in backbone.feature_info] == [4, 8, 16, 32]

    class CountingBlock(MiTBlock):
        calls = 0

        def forward(self, x: torch.Tensor, h: int, w: int, context: object = None) -> torch.Tensor:
            CountingBlock.calls += 1
            return super().forward(x, h, w, context)

    MixTransformer(MIT_CONFIGS["mit_b0"], block_cls=CountingBlock)(x)
    assert CountingBlock.calls == sum(MIT_CONFIGS["mit_b0"].depths)

    class ScaledBlock(ConvNeXtBlock):
        pass

    convnext = ConvNeXt(CONVNEXT_CONFIGS["convnext_t"], block_cls=ScaledBlock)
    assert all(isinstance(block, ScaledBlock) for stage in convnext.stages for block in stage)


def test_layer_norm_2d_equals_layer_norm_over_channels() -> None:
    norm = LayerNorm2d(8, eps=1e-6)
    nn.init.normal_(norm.weight)
    x = torch.randn(2, 8, 3, 5)
    expected = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def test_drop_path_drops_whole_samples_and_keeps_the_expectation() -> None:
    drop = DropPath(0.5).train()
    out = drop(torch.ones(4000, 3, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert abs(out.mean().item() - 1.0) < 0.1
    assert torch.equal(copy.deepcopy(drop).eval()(torch.ones(3)), torch.ones(3))


def test_decoder_concatenates_coarse_to_fine() -> None:
    decoder = MLPDecoder([4, 8, 16, 32], num_classes=3, embed_dim=8).eval()
    assert [k.split(".")[0] for k in decoder.state_dict()][:8:2] == ["linear_c4", "linear_c3", "linear_c2", "linear_c1"]
    feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([4, 8, 16, 32])]
    with torch.no_grad():
        out = decoder(feats)
        fuse_in = decoder.linear_fuse[0].weight
        fuse_in.zero_()
        fuse_in[:, :8] = torch.eye(8)[:, :, None, None]  # only the first concatenated block: c4
        coarse_only = decoder(feats)
        feats[0] = torch.randn_like(feats[0])
        assert torch.equal(decoder(feats), coarse_only)  # c1 no longer matters
    assert out.shape == (1, 3, 16, 16)


def test_spatial_check_accepts_multiples_only() -> None:
    check_spatial_size(480, 640, 32, "m")
    with pytest.raises(ValueError, match="Nearest valid sizes: 32×32, 32×64"):
        check_spatial_size(20, 40, 32, "m")
