"""Registry of model names with their builders and the facts their papers report, and of named input conventions."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from ..inputs import InputSpec
from .base import SegmentationModel

ModelBuilder = Callable[..., SegmentationModel]


@dataclass(frozen=True)
class PaperFacts:
    """Numbers as published, with the protocol in the keys (e.g. ``"nyuv2 ms"``, ``"RTX 3090 fp32"``)."""

    params_m: float | None = None
    trainable_params_m: float | None = None
    """Trainable parameters as published, for parameter-efficient methods (KTB)."""
    gmacs: float | None = None
    gmacs_input: tuple[int, int] = (480, 640)
    miou: Mapping[str, float] = field(default_factory=dict)
    fps: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "params_m": self.params_m,
            "trainable_params_m": self.trainable_params_m,
            "gmacs": self.gmacs,
            "gmacs_input": list(self.gmacs_input),
            "miou": dict(self.miou),
            "fps": dict(self.fps),
            "source": self.source,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what its paper reports."""

    name: str
    builder: ModelBuilder
    summary: str
    paper: PaperFacts
    default_num_classes: int = 40
    void_logit: bool = False
    """The model's output channel 0 scores void (its ``num_classes`` counts it): a dataset of K classes needs
    K + 1 outputs."""

    def outputs_for(self, label_classes: int) -> int:
        """The ``num_classes`` (output channels) that predict ``label_classes`` classes."""
        return label_classes + int(self.void_logit)


_MODELS: dict[str, ModelSpec] = {}
MODELS: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)


def register_model(
    name: str,
    *,
    summary: str,
    paper: PaperFacts,
    default_num_classes: int = 40,
    void_logit: bool = False,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``builder(num_classes=..., **kwargs) -> SegmentationModel`` under ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelSpec(name, builder, summary, paper, default_num_classes, void_logit)
        return builder

    return decorator


def get_model_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name raises a KeyError that lists the registered ones."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_MODELS))}") from None


def list_models() -> list[str]:
    return sorted(_MODELS)


def describe_model(name: str, num_classes: int | None = None) -> dict[str, Any]:
    """Name, summary, measured parameter counts (total and trainable), inputs and paper facts of a registered model.

    The model is built on the ``meta`` device: shapes only, no memory and no initialisation cost.
    """
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = spec.builder(num_classes=num_classes or spec.default_num_classes)
    model.freeze_declared()
    return {
        "name": name,
        "summary": spec.summary,
        "num_classes": model.num_classes,
        "void_logit": model.void_logit,
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for _, p in model.trainable_parameters()),
        "input_multiple": model.input_multiple,
        "input_spec": model.input_spec.to_dict(),
        "outputs": list(model.outputs),
        "prediction_output": model.prediction_output,
        "pretrained": {part: m.source.describe() for part, m in model.pretrained_backbone_mappings().items()},
        "paper": spec.paper.to_dict(),
    }


_INPUT_SPECS: dict[str, InputSpec] = {}
INPUT_SPECS: Mapping[str, InputSpec] = MappingProxyType(_INPUT_SPECS)
"""Named input conventions that configs and ``--input-spec`` can select (e.g. an official evaluation's)."""


def register_input_spec(spec: InputSpec) -> InputSpec:
    if spec.name in _INPUT_SPECS:
        raise ValueError(f"input spec {spec.name!r} is registered twice")
    _INPUT_SPECS[spec.name] = spec
    return spec


def get_input_spec(name: str) -> InputSpec:
    try:
        return _INPUT_SPECS[name]
    except KeyError:
        raise KeyError(f"unknown input spec {name!r}; registered: {', '.join(sorted(_INPUT_SPECS))}") from None
