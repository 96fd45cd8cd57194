"""Toy models. ``FrozenTwoHeadToy`` uses every part of the model contract the seed systems need: a frozen part with a
BatchNorm and dropout, two named outputs with their own loss terms, and parameter groups; it trains through the
unchanged engine. ``TinySegmenter`` compiles in seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
import torch
from torch import nn

from rgbxseg.inputs import DEFAULT_RGBD
from rgbxseg.models import ModelSpec, PaperFacts, ParamGroupRule, SegmentationModel, registry
from rgbxseg.models.layers import resize
from rgbxseg.models.losses import cross_entropy

TOY_NAME = "toy_frozen_two_head"


class FrozenTwoHeadToy(SegmentationModel):
    """A frozen stem (conv, BatchNorm, dropout), a trainable neck with its own BatchNorm, and two heads: ``main`` (the
    prediction) and ``aux``, each with a loss term; the aux head learns 10× faster and biases have no weight decay."""

    input_spec = replace(DEFAULT_RGBD, name="toy_rgbd", multiple=4)
    classifier_key = "main_head.weight"
    outputs = ("main", "aux")
    prediction_output = "main"
    loss_terms = ("main", "aux")
    frozen = (r"stem",)
    param_group_rules = (ParamGroupRule(r"^aux_head\.", lr_mult=10.0), ParamGroupRule(r"\.bias$", weight_decay=0.0))

    def __init__(self, num_classes: int = 40, frozen_train_mode: str = "eval") -> None:
        super().__init__(TOY_NAME, num_classes)
        self.frozen_train_mode = frozen_train_mode
        self.stem = nn.Sequential(nn.Conv2d(4, 8, 4, stride=4), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5))
        self.neck = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.main_head = nn.Conv2d(8, num_classes, 1)
        self.aux_head = nn.Conv2d(8, num_classes, 1)

    def _features(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.stem(torch.cat((rgb, x), dim=1)))

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.main_head(self._features(rgb, x))

    def forward_outputs(self, rgb: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self._features(rgb, x)
        return {"main": self.main_head(features), "aux": self.aux_head(features)}

    def loss(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        size = target.shape[-2:]
        return {
            "main": cross_entropy(resize(outputs["main"], size), target),
            "aux": 0.4 * cross_entropy(resize(outputs["aux"], size), target),
        }


def register_toy(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the toy model for the duration of one test (the registry is left as it was afterwards)."""
    spec = ModelSpec(TOY_NAME, FrozenTwoHeadToy, "toy: frozen stem, two heads", PaperFacts())
    monkeypatch.setitem(registry._MODELS, TOY_NAME, spec)
    return TOY_NAME


def randomise_batchnorms(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that every fold is exercised."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.running_mean, 0.0, 0.3)
            nn.init.uniform_(module.running_var, 0.5, 2.0)
            nn.init.normal_(module.weight, 1.0, 0.3)
            nn.init.normal_(module.bias, 0.0, 0.3)
        if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.normal_(module.weight, 1.0, 0.3)
            nn.init.normal_(module.bias, 0.0, 0.3)
    return model.eval()


class TinySegmenter(SegmentationModel):
    """Conv + BN stem and a linear head: enough to see what the compiled inference form does with weights, and
    compiled in seconds (AsymFormer takes minutes on 2 cores; its compiled form is measured by the benchmark)."""

    input_spec = replace(DEFAULT_RGBD, name="tiny", multiple=4)

    def __init__(self) -> None:
        super().__init__("tiny", num_classes=3)
        self.stem = nn.Sequential(nn.Conv2d(4, 16, 4, stride=4), nn.BatchNorm2d(16), nn.GELU())
        self.head = nn.Linear(16, 3)

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(torch.cat((rgb, x), dim=1))
        return self.head(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
