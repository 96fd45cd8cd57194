"""What a weights file says about itself: model, classes, palette and the inputs it was trained on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .classes import ClassSet
from .inputs import IMAGENET_RGB, METRIC_DEPTH, ChannelNormalization, InputSpec, ModalityInput
from .version import __version__


@dataclass(frozen=True)
class WeightsMetadata:
    """What a checkpoint needs to be used on new data without guessing."""

    model: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input_spec: InputSpec
    dataset: str = ""
    description: str = ""
    rgbxseg_version: str = __version__
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes + 1:
            raise ValueError(
                f"metadata for {self.model}: {self.num_classes} classes need {self.num_classes} names and "
                f"{self.num_classes + 1} palette colours (void first), "
                f"got {len(self.class_names)} and {len(self.palette)}"
            )

    @property
    def class_set(self) -> ClassSet:
        return ClassSet(self.dataset or self.model, self.class_names, self.palette)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "input_spec": self.input_spec.to_dict(),
            "dataset": self.dataset,
            "description": self.description,
            "rgbxseg_version": self.rgbxseg_version,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsMetadata:
        fields = dict(data)
        fields["class_names"] = tuple(fields["class_names"])
        fields["palette"] = tuple(tuple(int(v) for v in color) for color in fields["palette"])
        legacy = fields.pop("normalization", None)
        fields["input_spec"] = (
            InputSpec.from_dict(fields["input_spec"]) if "input_spec" in fields else legacy_input_spec(legacy)
        )
        return cls(**fields)


def legacy_input_spec(normalization: Mapping[str, Any]) -> InputSpec:
    """The input spec of a file written by rgbxseg 0.1 before input specs, whose metadata held an RGB-D
    ``normalization`` (RGB mean/std, depth unit, divisor, mean, std). Every such file is an AsymFormer (multiple 32)."""
    if normalization.get("depth_unit", "mm") != "mm":
        raise ValueError(f"metadata normalisation with depth unit {normalization['depth_unit']!r} is not supported")
    rgb = ModalityInput(
        IMAGENET_RGB.name,
        IMAGENET_RGB.encoding,
        3,
        ChannelNormalization(255.0, tuple(normalization["rgb_mean"]), tuple(normalization["rgb_std"])),
    )
    depth = ModalityInput(
        METRIC_DEPTH.name,
        METRIC_DEPTH.encoding,
        1,
        ChannelNormalization(
            float(normalization["depth_divisor"]),
            (float(normalization["depth_mean"]),),
            (float(normalization["depth_std"]),),
        ),
    )
    return InputSpec(str(normalization["name"]), rgb, depth, multiple=32)
