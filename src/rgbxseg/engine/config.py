"""Typed training configuration: dataclasses filled from YAML plus dotted ``key=value`` overrides.

Configs are data: YAML is read with ``yaml.safe_load`` and every value is type-checked against the dataclass
fields, so a config can never execute code and a typo fails with the list of valid keys. The values each field
accepts are declared next to it (:func:`at_least`, :func:`between`, :func:`one_of`) and checked whenever a config is
built, from YAML or in code, so that a bad value fails before any data is read instead of an epoch into training.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..models.base import ParamGroupRule
from ..models.registry import get_model_spec
from .evaluate import EVAL_PROTOCOLS, LOGIT_UPSAMPLING, EvalProtocol


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message names the key.

    ``keys`` are the dotted keys the error is about (the message starts with the first), so that
    :func:`load_config` can say whether their values came from the file or from an override.
    """

    def __init__(self, message: str, *keys: str) -> None:
        super().__init__(message)
        self.keys = keys

    def within(self, prefix: str) -> ConfigError:
        """The same error about the fields of the section at ``prefix`` (e.g. ``"data."``)."""
        return ConfigError(f"{prefix}{self}", *(f"{prefix}{key}" for key in self.keys))


@dataclass(frozen=True)
class Rule:
    """The values a field accepts besides its type: numbers in an interval, or names. An optional field left at None
    passes; a list passes when it has values and each of them does."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def accepts(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok

    def __str__(self) -> str:
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.high is None:
            return f"{'>' if self.low_open else '≥'} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def check(self, key: str, value: Any) -> None:
        if value is None:
            return
        many = isinstance(value, tuple)
        values = value if many else (value,)
        if not values or not all(map(self.accepts, values)):
            what, shown = ("list values", list(value)) if many else ("be", value)
            raise ConfigError(f"{key} must {what} {self}, got {shown!r}", key)


_RULE = "rgbxseg.rule"


def at_least(low: float, *, default: Any = dataclasses.MISSING) -> Any:
    """A field whose values are ≥ ``low``."""
    return field(default=default, metadata={_RULE: Rule(low)})


def above(low: float, *, default: Any = dataclasses.MISSING) -> Any:
    """A field whose values are > ``low``."""
    return field(default=default, metadata={_RULE: Rule(low, low_open=True)})


def between(low: float, high: float, *, default: Any = dataclasses.MISSING, high_open: bool = False) -> Any:
    """A field whose values lie in [``low``, ``high``] (or [``low``, ``high``) with ``high_open``)."""
    return field(default=default, metadata={_RULE: Rule(low, high, high_open=high_open)})


def one_of(*choices: str, default: str | None) -> Any:
    """A field that takes one of the names ``choices``."""
    return field(default=default, metadata={_RULE: Rule(choices=choices)})


class _Checked:
    """Checks each field's declared :class:`Rule` when a config is built (``from_dict``, in code, ``replace``)."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if _RULE in item.metadata:
                item.metadata[_RULE].check(item.name, getattr(self, item.name))


OPTIMIZER_NAMES = ("adamw", "sgd")
"""The values of ``optim.name`` (:data:`rgbxseg.engine.optim.OPTIMIZERS` builds each)."""

_SET_BY_THE_REGISTRY = ("num_classes", "model_name")
"""Constructor arguments that come from the dataset and the registered name, never from ``model.kwargs``."""


def _keyword_arguments(target: Callable[..., Any]) -> tuple[str, ...] | None:
    """The keyword arguments ``target`` takes; a builder that forwards ``**kwargs`` is followed to the class its
    return annotation names. None when they cannot be known (a ``**kwargs`` that leads nowhere)."""
    parameters = inspect.signature(target).parameters.values()
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        try:
            returned = typing.get_type_hints(target).get("return")
        except NameError:  # an annotation that does not resolve
            return None
        forwarded = _keyword_arguments(returned) if isinstance(returned, type) else None
        if forwarded is None:
            return None
        names += forwarded
    return tuple(name for name in dict.fromkeys(names) if name not in _SET_BY_THE_REGISTRY)


def model_kwargs(name: str) -> tuple[str, ...] | None:
    """The ``model.kwargs`` that the registered model ``name`` takes (None: any, they cannot be known).

    Read from the signatures of its builder and of the model class the builder returns, so a new constructor
    argument needs no list kept here. A variant's builder may fix some of them (e.g. its ``backbone``); passing
    those fails when the model is built.
    """
    return _keyword_arguments(get_model_spec(name).builder)


@dataclass
class ModelConfig(_Checked):
    name: str = "asymformer_b0_t"
    """A registered model (``rgbxseg info`` lists them)."""
    weights: str | None = None
    """Initial weights (fine-tuning); loaded with ``strict`` below."""
    strict: bool = True
    backbone_weights: dict[str, str] = field(default_factory=dict)
    """ImageNet checkpoints per branch, e.g. ``{rgb: convnext_tiny_1k_224_ema.pth, depth: mit_b0.pth}``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the model (e.g. drop-path rates); see :func:`model_kwargs`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            accepted = model_kwargs(self.name)
        except KeyError as err:
            raise ConfigError(f"name: {err.args[0]}", "name") from None
        unknown = sorted(set(self.kwargs) - set(accepted)) if accepted is not None else []
        if unknown:
            key = f"kwargs.{unknown[0]}"
            raise ConfigError(
                f"{key}: {self.name} takes no argument {unknown[0]!r} (got {self.kwargs[unknown[0]]!r}); "
                f"valid kwargs: {', '.join(accepted) or 'none'}",
                key,
            )


@dataclass
class DataConfig(_Checked):
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
    crop_size: tuple[int, int] = at_least(1, default=(480, 640))
    scale_range: tuple[float, float] = above(0, default=(1.0, 2.0))
    flip_prob: float = between(0, 1, default=0.5)
    hsv_jitter: bool = True
    """AsymFormer's HSV jitter of the RGB image."""
    colour_jitter_p: float = between(0, 1, default=0.0)
    """Probability of a brightness/contrast/saturation jitter of the RGB image (GeminiFusion: 0.2)."""
    colour_jitter: float = between(0, 1, default=0.5)
    """Its factors are drawn from U(1 − colour_jitter, 1 + colour_jitter)."""
    blur_p: float = between(0, 1, default=0.0)
    """Probability of a 3×3 Gaussian blur of the RGB image (GeminiFusion: 0.2, σ = blur_sigma)."""
    blur_sigma: float = above(0, default=0.8)
    drop_rgb: float = between(0, 1, default=0.0)
    """Robust training: per sample, the probability that the RGB input is zeros (after normalisation)."""
    drop_x: float = between(0, 1, default=0.0)
    """… and that the X input is zeros; never both in one sample (``drop_rgb + drop_x`` ≤ 1)."""
    sensor_failures: float = between(0, 1, default=0.0)
    """Robust training: per sample, the probability that its depth suffers one of the realistic sensor failures of the
    robustness evaluation (:data:`rgbxseg.data.failures.SENSOR_FAILURES`, depth ones, chosen uniformly)."""
    batch_size: int = at_least(1, default=8)
    val_batch_size: int = at_least(1, default=1)
    workers: int = at_least(0, default=4)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.drop_rgb + self.drop_x > 1:
            raise ConfigError(
                f"drop_rgb + drop_x = {self.drop_rgb + self.drop_x:g}: at most one input is dropped per sample, so "
                "their probabilities add up to at most 1",
                "drop_rgb",
                "drop_x",
            )


@dataclass
class OptimConfig(_Checked):
    name: str = one_of(*OPTIMIZER_NAMES, default="adamw")
    """``adamw`` (betas, eps) or ``sgd`` (momentum, nesterov)."""
    lr: float = at_least(0, default=5e-5)
    weight_decay: float = at_least(0, default=0.01)
    betas: tuple[float, float] = between(0, 1, default=(0.9, 0.999), high_open=True)
    eps: float = at_least(0, default=1e-8)
    momentum: float = at_least(0, default=0.9)
    nesterov: bool = False
    grad_clip: float | None = above(0, default=None)
    """Clip the global gradient norm to this value (off by default, as in the paper)."""
    param_groups: tuple[ParamGroupRule, ...] | None = None
    """Rules ``{pattern, lr_mult, weight_decay}`` by parameter name, replacing the model's own (None keeps them)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError("nesterov needs name: sgd and a positive momentum", "nesterov")


@dataclass
class StageConfig(_Checked):
    epochs: int = at_least(1)
    lr: float = at_least(0)


@dataclass
class ScheduleConfig(_Checked):
    warmup_epochs: float = at_least(0, default=4.0)
    warmup_iterations: int | None = at_least(0, default=None)
    """Warm-up length in iterations (replaces ``warmup_epochs`` when set)."""
    warmup_start_factor: float = between(0, 1, default=1e-3)
    power: float = at_least(0, default=0.9)
    poly_iterations: int | None = at_least(1, default=None)
    """Iteration at which the polynomial decay would reach 0 (default: the end of the run, or of each stage); the
    rate is held at its last value beyond it."""
    poly_extra_epochs: float = at_least(0, default=0.0)
    """Without ``poly_iterations``: the decay reaches 0 this many epochs after the end of the run (or stage), so the
    last rate is not 0 (KTB: 1 — its WarmupPolyLR counts ``epochs + 1`` epochs)."""
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
class EvalConfig(_Checked):
    every_epochs: int = at_least(0, default=0)
    """Validate every N epochs during training (0 = only at the end)."""
    start_after_epoch: int = at_least(0, default=0)
    """… but only after this many epochs (KTB's ``EVAL_START``: 200 on NYUv2); the last epoch always validates."""
    scales: tuple[float, ...] = above(0, default=(1.0,))
    flip: bool = False
    shorter_side: int | None = at_least(1, default=None)
    """Validate at this shorter side, rounded up to a multiple of 32 (GeminiFusion: 480); None = native."""
    logit_upsampling: str = one_of(*LOGIT_UPSAMPLING, default="bilinear")
    """``bilinear`` or ``bicubic`` (GeminiFusion) upsampling of the logits to the evaluated resolution."""
    base_protocol: str | None = one_of(*EVAL_PROTOCOLS, default=None)
    """Validate with this registered protocol (``rgbxseg eval --protocol``; KTB: ``ktb``) instead of the fields
    above; ``shorter_side``, when set, replaces its evaluation size."""

    def protocol(self) -> EvalProtocol:
        """How training validates (``rgbxseg eval`` takes the same as options; its defaults are this class's)."""
        if self.base_protocol is not None:
            base = EVAL_PROTOCOLS[self.base_protocol]
            return base if self.shorter_side is None else replace(base, shorter_side=self.shorter_side)
        return EvalProtocol(
            scales=self.scales, flip=self.flip, shorter_side=self.shorter_side, logit_upsampling=self.logit_upsampling
        )


AMP_PRECISIONS = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}
"""``amp`` config values → precision names of :mod:`rgbxseg.runtime`."""


@dataclass
class TrainConfig(_Checked):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    epochs: int = at_least(1, default=500)
    output_dir: str = "runs/train"
    seed: int = at_least(0, default=2333)
    deterministic: bool = False
    amp: str = one_of(*AMP_PRECISIONS, default="none")
    """``none``, ``bf16`` or ``fp16`` (fp16 uses a gradient scaler)."""
    channels_last: bool = False
    ema_decay: float | None = between(0, 1, default=None, high_open=True)
    """Decay of an exponential moving average of the weights, evaluated and saved instead of them (None or 0: off)."""
    sync_bn: bool = False
    checkpoint_every: int = at_least(1, default=50)
    """Write a resumable checkpoint every N epochs (and always at the end)."""
    log_every: int = at_least(1, default=10)
    tensorboard: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        stages = [stage.epochs for stage in self.schedule.stages]
        if stages and sum(stages) != self.epochs:
            raise ConfigError(
                f"schedule.stages: their epochs {stages} add up to {sum(stages)}, not to epochs ({self.epochs})",
                "schedule.stages",
                "epochs",
            )


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
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {args}", key)


def _check_tuple(value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}: expected a list, got {value!r}", key)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_check_value(v, args[0], key) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}", key)
    return tuple(_check_value(v, a, key) for v, a in zip(value, args, strict=True))


def _check_dict(value: Any, args: tuple[Any, ...], key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}", key)
    return {str(k): _check_value(v, args[1], f"{key}.{k}") for k, v in value.items()}


def _check_value(value: Any, annotation: Any, key: str) -> Any:
    """Coerce ``value`` to ``annotation`` where lossless (int → float, list → tuple), else raise ConfigError."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, args, key)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {annotation.__name__} fields, got {value!r}", key)
        try:
            return from_dict(annotation, value, prefix=f"{key}.")
        except ConfigError:
            raise
        except ValueError as err:  # the own check of a dataclass from elsewhere (ParamGroupRule)
            raise ConfigError(f"{key}: {err}", key) from None
    checker = {tuple: _check_tuple, dict: _check_dict}.get(origin)
    if checker is not None:
        return checker(value, args, key)
    if annotation in _SCALARS:
        if not _SCALARS[annotation](value):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}", key)
        return annotation(value)
    return value  # typing.Any


RENAMED_KEYS = {"data.normalization": "data.input_spec (a registered input spec, e.g. asymformer_nyuv2_eval)"}
"""Keys of rgbxseg 0.1 configs that have another name now."""


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys, ill-typed values and values out of range."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{prefix}{unknown[0]}"
        if key in RENAMED_KEYS:
            raise ConfigError(f"{key} is now {RENAMED_KEYS[key]}; rename it in the config", key)
        raise ConfigError(f"unknown key {key}; valid keys here: {', '.join(sorted(names))}", key)
    values = {k: _check_value(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as err:  # a rule of cls's own fields, which names them without the prefix
        raise err.within(prefix) from None


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
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: {raw!r} is not a YAML value ({err})") from None
    return data


def bundled_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (file stem)."""
    folder = resources.files("rgbxseg") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def _source(keys: tuple[str, ...], path: Path, overrides: list[str]) -> str:
    """Where the values of ``keys`` came from: for each, the last ``--set`` of it or of a section holding it (which
    replaced it), else the file."""
    sources = []
    for key in keys:
        setting = [item for item in overrides if f"{key}.".startswith(f"{item.partition('=')[0]}.")]
        sources.append(f"--set {setting[-1]}" if setting else str(path))
    return ", ".join(dict.fromkeys(sources or [str(path)]))


def load_config(source: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config (a path, or the name of a bundled config) and apply dotted overrides.

    An error starts with where the offending value came from: the file, or the ``--set key=value`` override.
    """
    overrides = list(overrides)
    path = Path(source)
    if not path.is_file():
        bundled = bundled_configs()
        if str(source) not in bundled:
            names = ", ".join(sorted(bundled))
            raise ConfigError(f"config {source} not found; give a YAML path or one of the bundled configs: {names}")
        path = bundled[str(source)]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start : err.start + 1]!r}); save the config "
            "as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config sections")
    data = apply_overrides(data, overrides)  # its errors name the override
    try:
        return from_dict(TrainConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{_source(err.keys, path, overrides)}: {err}", *err.keys) from None
