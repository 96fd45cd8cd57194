"""Input specs: what a network takes, in one place for the dataset, Segmenter, export, bench and training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbxseg.data import DatasetError, RGBXDataset, read_meta, resolve_input_spec
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.inputs import (
    DEFAULT_RGBD,
    IMAGENET_RGB,
    METRIC_DEPTH,
    ChannelNormalization,
    InputSpec,
    ModalityInput,
)
from rgbxseg.models import ASYMFORMER_TRAIN, create_model

TILED_DEPTH = ModalityInput("depth", "metric_mm", 3, ChannelNormalization(1000.0, (2.0,), (1.0,)))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs") / "synthetic"
    return generate_synthetic_dataset(root, num_train=2, num_test=1, height=32, width=48, progress=False)


def test_normalisation_is_the_declared_arithmetic() -> None:
    values = torch.tensor([[[[0, 1000], [2000, 65535]]]], dtype=torch.int32)
    expected = (values.float() / 1000.0 - METRIC_DEPTH.normalization.mean[0]) / METRIC_DEPTH.normalization.std[0]
    torch.testing.assert_close(METRIC_DEPTH.normalize(values), expected, rtol=0, atol=0)
    rgb = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    torch.testing.assert_close(
        IMAGENET_RGB.normalize(rgb)[0, :, 0, 0],
        (1 - torch.tensor((0.485, 0.456, 0.406))) / torch.tensor((0.229, 0.224, 0.225)),
    )


def test_one_channel_modalities_are_tiled_for_three_channel_networks() -> None:
    depth = torch.randint(0, 5000, (2, 1, 4, 5))
    tiled = TILED_DEPTH.normalize(depth)
    assert tiled.shape == (2, 3, 4, 5)
    assert torch.equal(tiled[:, 0], tiled[:, 2]) and torch.equal(tiled[:, :1], (depth / 1000.0 - 2.0).float())
    with pytest.raises(ValueError, match="a 3-channel hha image cannot feed 1 channels"):
        ModalityInput("hha", "hha", 1, ChannelNormalization(255.0, (0.0,), (1.0,)))
    with pytest.raises(ValueError, match="2 means for 3 channels"):
        ModalityInput("hha", "hha", 3, ChannelNormalization(255.0, (0.0, 0.0), (1.0, 1.0)))
    with pytest.raises(ValueError, match="unknown modality encoding 'jet'"):
        ModalityInput("depth", "jet", 1, ChannelNormalization(255.0, (0.0,), (1.0,)))
    with pytest.raises(ValueError, match="must be positive"):
        ChannelNormalization(255.0, (0.0,), (0.0,))


def test_specs_round_trip_and_describe_themselves() -> None:
    spec = replace(ASYMFORMER_TRAIN, x=TILED_DEPTH)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    assert spec.input_names == ("rgb", "depth")
    assert "depth: metric_mm" in spec.describe() and "tiled from 1" in spec.describe()
    rgb, x = spec.example_inputs(2, 32, 64, generator=torch.Generator().manual_seed(0))
    assert rgb.shape == (2, 3, 32, 64) and x.shape == (2, 3, 32, 64)
    thermal = ModalityInput("thermal", "thermal_8bit", 1, ChannelNormalization(255.0, (0.0,), (1.0,)))
    assert ASYMFORMER_TRAIN.with_x(thermal).name == "asymformer_train+thermal"
    with pytest.raises(ValueError, match="takes 1 X channels; depth gives 3"):
        ASYMFORMER_TRAIN.with_x(TILED_DEPTH)
    with pytest.raises(ValueError, match="reads 'depth' as metric_mm, but it is stored as minmax_8bit"):
        ASYMFORMER_TRAIN.for_modality("depth", "minmax_8bit")


def test_models_derive_channels_and_size_rule_from_their_spec() -> None:
    model = create_model("asymformer_b0_t")
    assert model.input_spec is ASYMFORMER_TRAIN
    assert (model.x_channels, model.input_multiple) == (1, 32)
    with pytest.raises(ValueError, match="takes 3 \\+ 1 input channels; input spec rgbd_metric declares 3 \\+ 3"):
        model.use_input_spec(replace(DEFAULT_RGBD, x=TILED_DEPTH))
    model.use_input_spec(DEFAULT_RGBD)  # a preset brings its normalisation; the size rule stays the network's
    assert (model.input_spec.name, model.input_multiple) == ("rgbd_metric", 32)


def test_the_dataset_normalises_as_the_spec_declares(scenes: Path) -> None:
    spec = InputSpec("tiled", IMAGENET_RGB, TILED_DEPTH)
    sample = RGBXDataset(scenes, "test", input_spec=spec)[0]
    raw = RGBXDataset(scenes, "test").load(0)["depth"]
    assert sample["depth"].shape == (3, 32, 48)
    expected = torch.from_numpy(raw.astype(np.float32) / 1000.0 - 2.0)
    assert all(torch.equal(sample["depth"][c], expected) for c in range(3))


def test_a_spec_is_resolved_against_what_the_dataset_stores(scenes: Path) -> None:
    meta, _ = read_meta(scenes)
    assert resolve_input_spec(ASYMFORMER_TRAIN, meta, "depth") is ASYMFORMER_TRAIN
    minmax = replace(ASYMFORMER_TRAIN, x=replace(METRIC_DEPTH, encoding="minmax_8bit"))
    with pytest.raises(DatasetError, match="reads 'depth' as minmax_8bit, but it is stored as metric_mm"):
        resolve_input_spec(minmax, meta, "depth")
    with pytest.raises(DatasetError, match="reads 'depth' as minmax_8bit, but it is stored as metric_mm"):
        RGBXDataset(scenes, "test", input_spec=minmax)
    with pytest.raises(DatasetError, match="no modality 'thermal'"):
        resolve_input_spec(ASYMFORMER_TRAIN, meta, "thermal")
