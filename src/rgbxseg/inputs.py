"""What a network takes as input: per modality the stored encoding, the channels and the normalisation, and the rule
that H and W must follow.

Every registered model declares an :class:`InputSpec`, and every weights file stores the one it was trained with.
The dataset, :class:`~rgbxseg.Segmenter`, the ONNX exporter, the benchmark and the trainer all take their inputs from
it, so the second modality is whatever the spec names — metric depth, thermal, HHA, a 3-channel 8-bit depth image —
and never assumed to be depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NYUV2_DEPTH_MEAN_M = 2.8424503515351494
"""Mean of the NYUv2 training depth in metres, as the AsymFormer code computed it."""
NYUV2_DEPTH_STD_M = 0.9932836506164299


@dataclass(frozen=True)
class ChannelNormalization:
    """``(x / divisor − mean) / std`` per channel in float32, in exactly this order (which reproduces the official
    inputs bit for bit): one mean and std per channel, or a single pair for every channel."""

    divisor: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"normalisation needs as many means as stds (at least one), got {self.mean}, {self.std}")
        if self.divisor <= 0 or min(self.std) <= 0:
            raise ValueError(f"normalisation divisor and stds must be positive, got {self.divisor}, {self.std}")

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """(…, C, H, W) stored values → normalised float32."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=values.device)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32, device=values.device)[:, None, None]
        return (values.to(torch.float32) / self.divisor - mean) / std

    def invert(self, normalized: torch.Tensor) -> torch.Tensor:
        """The stored values (float32) that :meth:`apply` maps to ``normalized``."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=normalized.device)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32, device=normalized.device)[:, None, None]
        return (normalized * std + mean) * self.divisor

    def to_dict(self) -> dict[str, Any]:
        return {"divisor": self.divisor, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelNormalization:
        return cls(float(data["divisor"]), tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


@dataclass(frozen=True)
class Encoding:
    """What the stored pixel values of a modality mean.

    ``normalization`` is the default a dataset declares for the encoding (None for ``rgb`` and ``metric_mm``, whose
    normalisation belongs to the model that reads them).
    """

    dtype: str
    channels: int
    description: str
    normalization: ChannelNormalization | None = None


_UNIT_SCALE_8BIT = ChannelNormalization(255.0, (0.0,), (1.0,))

ENCODINGS: dict[str, Encoding] = {
    "rgb": Encoding("uint8", 3, "8-bit colour in R, G, B order"),
    "metric_mm": Encoding("uint16", 1, "metric depth in millimetres, 0 = invalid"),
    "minmax_8bit": Encoding(
        "uint8",
        1,
        "per-image min-max normalised depth (DFormer/CMX packages): the metric scale is lost",
        ChannelNormalization(255.0, (0.48,), (0.28,)),
    ),
    "hha": Encoding(
        "uint8",
        3,
        "HHA (horizontal disparity, height above ground, angle with gravity) computed from depth",
        ChannelNormalization(255.0, IMAGENET_MEAN, IMAGENET_STD),
    ),
    "thermal_8bit": Encoding("uint8", 1, "thermal image after the camera's 8-bit AGC", _UNIT_SCALE_8BIT),
    "event_8bit": Encoding(
        "uint8", 3, "an event-camera frame: events accumulated into an 8-bit colour image (DeLiVER)", _UNIT_SCALE_8BIT
    ),
    "thermal_16bit": Encoding("uint16", 1, "raw 16-bit thermal counts", ChannelNormalization(65535.0, (0.0,), (1.0,))),
}
"""Pixel encodings a modality may have, on disk and at a model's input."""


def encoding(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown modality encoding {name!r}; known: {', '.join(sorted(ENCODINGS))}") from None


CHANNEL_ORDERS = ("rgb", "bgr")
"""How a network takes the colour channels of an ``rgb`` input (:attr:`ModalityInput.channel_order`)."""


@dataclass(frozen=True)
class ModalityInput:
    """One input of a network: which modality feeds it, how its values are stored, how they are normalised.

    Attributes:
        name: the dataset modality that feeds it (``rgb``, ``depth``, ``thermal``, ``hha``, ``depth_minmax``…).
        encoding: a key of :data:`ENCODINGS`: what the stored values mean.
        channels: channels the network takes; a 1-channel encoding is tiled when the network takes 3.
        normalization: applied to the stored values (one mean/std for all channels, or one per network channel).
        channel_order: the order in which the network takes the colour channels of an ``rgb`` input: ``"rgb"``, or
            ``"bgr"`` for weights trained on OpenCV's B, G, R arrays (the released AsymFormer checkpoint). Stored
            images are always R, G, B; the means and stds are per network channel, i.e. in this order.
    """

    name: str
    encoding: str
    channels: int
    normalization: ChannelNormalization
    channel_order: str = "rgb"

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"input {self.name!r}: channel_order must be one of {CHANNEL_ORDERS}, got "
                             f"{self.channel_order!r}")  # fmt: skip
        if self.channel_order != "rgb" and (self.encoding != "rgb" or self.channels != 3):
            raise ValueError(f"input {self.name!r}: only a 3-channel rgb input has a channel order")
        stored = encoding(self.encoding).channels
        if stored not in (self.channels, 1):
            raise ValueError(
                f"input {self.name!r}: a {stored}-channel {self.encoding} image cannot feed {self.channels} channels"
            )
        if len(self.normalization.mean) not in (1, self.channels):
            raise ValueError(
                f"input {self.name!r}: {len(self.normalization.mean)} means for {self.channels} channels; give one, "
                f"or one per channel"
            )

    @property
    def stored_channels(self) -> int:
        return encoding(self.encoding).channels

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """(…, stored channels, H, W) stored values → (…, channels, H, W) normalised float32."""
        if values.shape[-3] != self.channels:
            values = values.expand(*values.shape[:-3], self.channels, *values.shape[-2:])
        if self.channel_order == "bgr":
            values = values.flip(-3)
        return self.normalization.apply(values)

    def denormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """(…, channels, H, W) normalised → (…, stored channels, H, W) stored values (float32): the inverse of
        :meth:`normalize`, so that a stored value can be changed in its own unit (millimetres, 0..255)."""
        values = self.normalization.invert(normalized)
        if self.channel_order == "bgr":
            values = values.flip(-3)
        return values[..., : self.stored_channels, :, :]

    def describe(self) -> str:
        norm = self.normalization
        tiled = f", tiled from {self.stored_channels}" if self.stored_channels != self.channels else ""
        order = ", fed as B, G, R" if self.channel_order == "bgr" else ""
        return (
            f"{self.name}: {self.encoding} ({encoding(self.encoding).description}), {self.channels} "
            f"channel{'s' if self.channels > 1 else ''}{tiled}{order}, "
            f"(x / {norm.divisor:g} − mean {list(norm.mean)}) / std {list(norm.std)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "encoding": self.encoding,
            "channels": self.channels,
            "normalization": self.normalization.to_dict(),
            "channel_order": self.channel_order,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityInput:
        return cls(
            str(data["name"]),
            str(data["encoding"]),
            int(data["channels"]),
            ChannelNormalization.from_dict(data["normalization"]),
            str(data.get("channel_order", "rgb")),  # files written before channel orders hold R, G, B networks
        )


@dataclass(frozen=True)
class InputSpec:
    """The inputs of an RGB-X network: ``model(rgb, x)`` with ``rgb`` and ``x`` normalised as declared here.

    ``multiple``: H and W must be multiples of it; ``min_size``: and at least this large. ``name`` identifies the
    convention (weights record it).
    """

    name: str
    rgb: ModalityInput
    x: ModalityInput
    multiple: int = 1
    min_size: int = 1
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.multiple < 1 or self.min_size < 1:
            raise ValueError(f"input spec {self.name}: multiple and min_size must be ≥ 1")
        if self.rgb.name == self.x.name:
            raise ValueError(f"input spec {self.name}: rgb and x both read modality {self.rgb.name!r}")

    @property
    def modalities(self) -> tuple[ModalityInput, ModalityInput]:
        return self.rgb, self.x

    @property
    def input_names(self) -> tuple[str, str]:
        """Names of the two inputs (``rgb`` and the X modality), as ONNX files call them."""
        return self.rgb.name, self.x.name

    def for_modality(self, name: str, encoding_name: str) -> ModalityInput | None:
        """The input that normalises stored modality ``name``: the one reading it, else one with the same encoding."""
        for candidate in (m for m in self.modalities if m.name == name):
            if candidate.encoding != encoding_name:
                raise ValueError(
                    f"{self.name} reads {name!r} as {candidate.encoding}, but it is stored as {encoding_name}"
                )
            return candidate
        return next((m for m in self.modalities if m.encoding == encoding_name), None)

    def with_x(self, x: ModalityInput) -> InputSpec:
        """The same network fed another X modality (same channel count)."""
        if x.channels != self.x.channels:
            raise ValueError(f"{self.name} takes {self.x.channels} X channels; {x.name} gives {x.channels}")
        return replace(self, name=f"{self.name}+{x.name}", x=x, description="")

    def example_inputs(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random inputs on the normalised scale (standard normal), shaped as the network takes them."""
        rgb = torch.randn(batch, self.rgb.channels, height, width, generator=generator)
        x = torch.randn(batch, self.x.channels, height, width, generator=generator)
        return rgb.to(device), x.to(device)

    def describe(self) -> str:
        size = f"H, W multiples of {self.multiple}" + (f", at least {self.min_size}" if self.min_size > 1 else "")
        return f"{self.name}: {self.rgb.describe()}; {self.x.describe()}; {size}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rgb": self.rgb.to_dict(),
            "x": self.x.to_dict(),
            "multiple": self.multiple,
            "min_size": self.min_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            str(data["name"]),
            ModalityInput.from_dict(data["rgb"]),
            ModalityInput.from_dict(data["x"]),
            int(data.get("multiple", 1)),
            int(data.get("min_size", 1)),
        )


IMAGENET_RGB = ModalityInput("rgb", "rgb", 3, ChannelNormalization(255.0, IMAGENET_MEAN, IMAGENET_STD))
"""8-bit RGB ``/255`` with the ImageNet mean and std, the convention of every ImageNet-initialised backbone here."""

METRIC_DEPTH = ModalityInput(
    "depth", "metric_mm", 1, ChannelNormalization(1000.0, (NYUV2_DEPTH_MEAN_M,), (NYUV2_DEPTH_STD_M,))
)
"""Depth in millimetres → metres, standardised with the NYUv2 depth statistics; invalid (0) pixels are not masked."""

DEFAULT_RGBD = InputSpec(
    "rgbd_metric",
    IMAGENET_RGB,
    METRIC_DEPTH,
    description="ImageNet RGB statistics; metric depth in metres with the NYUv2 depth statistics",
)
"""The default RGB-D convention (AsymFormer trains with it), used by datasets when no model spec is given."""
