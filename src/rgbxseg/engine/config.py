"""Typed training configuration: dataclasses filled from YAML plus dotted ``key=value`` overrides.

Configs are data: YAML is read with ``yaml.safe_load`` and every value is type-checked against the dataclass
fields, so a config can never execute code and a typo fails with the list of valid keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..models.base import ParamGroupRule


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


@dataclass
class ModelConfig:
    name: str = "asymformer_b0_t"
    weights: str | None = None
    """Initial weights (fine-tuning); loaded with ``strict`` below."""
    strict: bool = True
    backbone_weights: dict[str, str] = field(default_factory=dict)
    """ImageNet checkpoints per branch, e.g. ``{rgb: convnext_tiny_1k_224_ema.pth, depth: mit_b0.pth}``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the model (e.g. drop-path rates)."""


@dataclass
class DataConfig:
    root: str = ""
    train_split: str = "train"
    val_split: str = "test"
    x_modality: str | None = None
    """The dataset modality fed as the second input (default: the one the model's input spec names); ``"none"``
    feeds zeros (an RGB-only baseline of the same network)."""
    label_set: str | None = None
    input_spec: str | None = None
    """A registered input convention (``rgbxseg.models.INPUT_SPECS``) instead of the model's own; the weights record
    the one used."""
    crop_size: tuple[int, int] = (480, 640)
    scale_range: tuple[float, float] = (1.0, 2.0)
    flip_prob: float = 0.5
    hsv_jitter: bool = True
    """AsymFormer's HSV jitter of the RGB image."""
    colour_jitter_p: float = 0.0
    """Probability of a brightness/contrast/saturation jitter of the RGB image (GeminiFusion: 0.2)."""
    colour_jitter: float = 0.5
    """Its factors are drawn from U(1 − colour_jitter, 1 + colour_jitter)."""
    blur_p: float = 0.0
    """Probability of a 3×3 Gaussian blur of the RGB image (GeminiFusion: 0.2, σ = blur_sigma)."""
    blur_sigma: float = 0.8
    batch_size: int = 8
    val_batch_size: int = 1
    workers: int = 4


@dataclass
class OptimConfig:
    name: str = "adamw"
    """``adamw`` (betas, eps) or ``sgd`` (momentum, nesterov)."""
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    grad_clip: float | None = None
    """Clip the global gradient norm to this value (off by default, as in the paper)."""
    param_groups: tuple[ParamGroupRule, ...] | None = None
    """Rules ``{pattern, lr_mult, weight_decay}`` by parameter name, replacing the model's own (None keeps them)."""


@dataclass
class StageConfig:
    epochs: int
    lr: float


@dataclass
class ScheduleConfig:
    warmup_epochs: float = 4.0
    warmup_iterations: int | None = None
    """Warm-up length in iterations (replaces ``warmup_epochs`` when set)."""
    warmup_start_factor: float = 1e-3
    power: float = 0.9
    poly_iterations: int | None = None
    """Iteration at which the polynomial decay would reach 0 (default: the end of the run, or of each stage); the
    rate is held at its last value beyond it."""
    poly_from_start: bool = False
    """Count the decay from iteration 0 instead of from the end of the warm-up (TokenFusion, GeminiFusion)."""
    per_epoch: bool = False
    """Change the rate at epoch boundaries only, (1 − epoch / epochs) ** power (DPLNet); warm-up and decay are then
    counted in whole epochs too."""
    stages: tuple[StageConfig, ...] = ()
    """Consecutive training stages, each with its epochs and base learning rate; the optimiser (its state) and the
    schedule (warm-up included) restart at each one, as GeminiFusion's three stages do. Their epochs must add up to
    ``epochs``. Empty: one stage of ``epochs`` at ``optim.lr``."""


@dataclass
class EvalConfig:
    every_epochs: int = 0
    """Validate every N epochs during training (0 = only at the end)."""
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    shorter_side: int | None = None
    """Validate at this shorter side, rounded up to a multiple of 32 (GeminiFusion: 480); None = native."""
    logit_upsampling: str = "bilinear"
    """``bilinear`` or ``bicubic`` (GeminiFusion) upsampling of the logits to the evaluated resolution."""


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    epochs: int = 500
    output_dir: str = "runs/train"
    seed: int = 2333
    deterministic: bool = False
    amp: str = "none"
    """``none``, ``bf16`` or ``fp16`` (fp16 uses a gradient scaler)."""
    channels_last: bool = False
    ema_decay: float | None = None
    sync_bn: bool = False
    checkpoint_every: int = 50
    """Write a resumable checkpoint every N epochs (and always at the end)."""
    log_every: int = 10
    tensorboard: bool = False
    device: str = "auto"


T = TypeVar("T")


def _is_float(value: Any) -> bool:
    """Numbers, and strings such as ``"1e-4"`` that YAML 1.1 leaves unparsed for want of a decimal point."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


_SCALARS = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: _is_float,
    str: lambda v: isinstance(v, str),
}


def _check_union(value: Any, args: tuple[Any, ...], key: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return _check_value(value, option, key)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {args}")


def _check_tuple(value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_check_value(v, args[0], key) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
    return tuple(_check_value(v, a, key) for v, a in zip(value, args, strict=True))


def _check_dict(value: Any, args: tuple[Any, ...], key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return {str(k): _check_value(v, args[1], f"{key}.{k}") for k, v in value.items()}


def _check_value(value: Any, annotation: Any, key: str) -> Any:
    """Coerce ``value`` to ``annotation`` where lossless (int → float, list → tuple), else raise ConfigError."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, args, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        try:
            return from_dict(annotation, value, prefix=f"{key}.")
        except ConfigError:
            raise
        except ValueError as err:  # the dataclass's own check of the values
            raise ConfigError(f"{key}: {err}") from None
    checker = {tuple: _check_tuple, dict: _check_dict}.get(origin)
    if checker is not None:
        return checker(value, args, key)
    if annotation in _SCALARS:
        if not _SCALARS[annotation](value):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
        return annotation(value)
    return value  # typing.Any


RENAMED_KEYS = {"data.normalization": "data.input_spec (a registered input spec, e.g. asymformer_nyuv2_eval)"}
"""Keys of rgbxseg 0.1 configs that have another name now."""


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and ill-typed values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        if key in RENAMED_KEYS:
            raise ConfigError(f"{key} is now {RENAMED_KEYS[key]}; rename it in the config")
        raise ConfigError(f"unknown key {key}; valid keys here: {', '.join(sorted(names))}")
    return cls(**{k: _check_value(v, hints[k], f"{prefix}{k}") for k, v in data.items()})


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-YAML-serialisable dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML scalars/lists (``1e-4``, ``[480, 640]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def bundled_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (file stem)."""
    folder = resources.files("rgbxseg") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_config(source: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config (a path, or the name of a bundled config) and apply dotted overrides."""
    path = Path(source)
    if not path.is_file():
        bundled = bundled_configs()
        if str(source) not in bundled:
            names = ", ".join(sorted(bundled))
            raise ConfigError(f"config {source} not found; give a YAML path or one of the bundled configs: {names}")
        path = bundled[str(source)]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections")
    try:
        return from_dict(TrainConfig, apply_overrides(data, overrides))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
