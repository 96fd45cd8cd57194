"""The contract every segmentation model of the package follows.

A model declares, besides its layers: its inputs (:class:`~rgbxseg.inputs.InputSpec`), its named outputs and which
one is the prediction, its loss terms, its frozen parts and how they behave while training, and how its parameters
split into optimiser groups. The training engine, the evaluator, the exporter, the benchmark and
:class:`~rgbxseg.Segmenter` use only this contract, so a new method is one module in ``models/`` plus a config.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..inputs import InputSpec
from .layers import InputShapeError, check_spatial_size, is_tracing, resize
from .losses import cross_entropy
from .pretrained import BackboneMapping, StateDict

if TYPE_CHECKING:
    from ..metadata import WeightsMetadata


@dataclass(frozen=True)
class ParamGroupRule:
    """Optimiser settings for the trainable parameters whose name matches ``pattern`` (``re.search``).

    ``lr_mult`` scales the base learning rate; ``weight_decay`` replaces the optimiser's (None keeps it). A parameter
    takes the first rule it matches; the rest form the base group.
    """

    pattern: str
    lr_mult: float = 1.0
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise ValueError(f"parameter group pattern {self.pattern!r} is not a regular expression: {err}") from None
        if self.lr_mult < 0 or (self.weight_decay is not None and self.weight_decay < 0):
            raise ValueError(f"parameter group {self.pattern!r}: lr_mult and weight_decay must be ≥ 0")


def _matches_path(patterns: Sequence[str], name: str) -> bool:
    """Whether ``name`` or one of its ancestors (``a``, ``a.b`` of ``a.b.c``) fully matches a pattern."""
    parts = name.split(".")
    return any(re.fullmatch(p, ".".join(parts[:end])) for end in range(1, len(parts) + 1) for p in patterns)


def matching_module_names(model: nn.Module, patterns: Sequence[str]) -> tuple[str, ...]:
    """The outermost sub-modules of ``model`` whose names fully match one of ``patterns`` (their children are
    covered by them)."""
    names: list[str] = []
    for name, _ in model.named_modules():
        if name and not any(name.startswith(kept + ".") for kept in names) and _matches_path(patterns, name):
            names.append(name)
    return tuple(names)


FROZEN_TRAIN_MODES = ("eval", "train")


class SegmentationModel(nn.Module):
    """Base class: ``model(rgb, x)`` → logits (B, num_classes, H, W) at input resolution (the prediction).

    Subclasses implement :meth:`forward_decoder` (the prediction at the decoder's resolution), declare
    ``input_spec`` and ``classifier_key`` (state-dict key of the classifier weight, from which a checkpoint's class
    count is read), and override what differs from the defaults below:

    * ``void_logit``: an output channel for void in front of the classes (see :meth:`class_logits`);

    * ``outputs`` / ``prediction_output`` and :meth:`forward_outputs`: every named output (default: one, ``out``);
    * ``loss_terms`` and :meth:`loss`: named loss terms, summed by the trainer (default: cross-entropy, void ignored);
    * ``frozen``: regular expressions that fully match the names of modules (or parameters) whose weights never
      train (:meth:`freeze_declared` clears their ``requires_grad``). What is frozen is then read from ``requires_grad``
      alone, so parameters frozen by hand count too: a module is frozen when no parameter below it trains and it
      has parameters or sits in a frozen module. ``frozen_train_mode`` says how frozen modules run while the model
      trains: ``"eval"`` (default: no dropout or drop path, fixed BatchNorm statistics) or ``"train"`` (stochastic
      layers stay active; frozen BatchNorms still keep their statistics);
    * ``eval_in_training``: regular expressions that fully match the names of further modules that run in eval
      mode while training (their parameters may still train, e.g. BatchNorms used as fixed affine maps);
    * ``param_group_rules``: learning-rate multipliers and weight decay for parameters whose name a pattern
      matches anywhere (``re.search``);
    * :meth:`convert_checkpoint` for legacy layouts and :meth:`pretrained_backbone_mappings` for initialisation.
    """

    input_spec: InputSpec
    """The inputs the network takes. The class value is the architecture's convention; an instance carries the
    convention of its weights (set by :func:`rgbxseg.create_model`), which may differ in normalisation or X modality."""
    classifier_key: str = ""
    void_logit: bool = False
    """Whether output channel 0 scores void ("unlabelled") and channels 1.. the classes: the layout of official
    heads that train void as a class (DPLNet's NYUv2 model has 41 outputs). ``num_classes`` then counts that channel;
    the package's label convention (void ignored, never predicted) reads :meth:`class_logits`."""
    outputs: tuple[str, ...] = ("out",)
    prediction_output: str = "out"
    loss_terms: tuple[str, ...] = ("ce",)
    frozen: tuple[str, ...] = ()
    frozen_train_mode: Literal["eval", "train"] = "eval"
    eval_in_training: tuple[str, ...] = ()
    param_group_rules: tuple[ParamGroupRule, ...] = ()
    min_train_batch: int = 1
    """The smallest training batch the model's training-time behaviour works with (KTB masks one sample's RGB and
    another's X: 2); the trainer refuses a smaller ``data.batch_size`` before it starts."""
    half_precision_modules: tuple[str, ...] = ()
    """Regular expressions of sub-module names that keep the argmax when run in bf16/fp16 (see
    :func:`rgbxseg.models.optimize.optimize_for_inference`)."""
    half_precision_outputs: tuple[str, ...] = ()
    """The subset of ``half_precision_modules`` whose outputs feed only other half-precision modules: they hand
    their outputs on in half precision instead of casting them back to float32 (and their consumers back again)."""
    int8_float_modules: tuple[str, ...] = ()
    """Regular expressions of sub-module names that stay float32 in the int8 form (the parts whose int8 error
    changes the argmax; see :mod:`rgbxseg.models.quantize`)."""
    weights_metadata: WeightsMetadata | None = None
    """Set by :func:`rgbxseg.create_model`: classes, palette and inputs of the loaded weights."""

    def __init__(self, model_name: str, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if self.prediction_output not in self.outputs:
            raise ValueError(f"{model_name}: prediction output {self.prediction_output!r} is not in {self.outputs}")
        self.model_name = model_name
        self.num_classes = num_classes

    # --- inputs -------------------------------------------------------------------------------------------------

    @property
    def num_label_classes(self) -> int:
        """The classes of the package's label convention that the model predicts (its outputs without void)."""
        return self.num_classes - int(self.void_logit)

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, …) → the label classes' logits, channel c = dataset label c + 1 (a void channel dropped)."""
        return logits[:, 1:] if self.void_logit else logits

    def logit_targets(self, target: torch.Tensor) -> torch.Tensor:
        """Class indices (void −1) → indices of the output channels (void stays −1)."""
        return torch.where(target >= 0, target + 1, target) if self.void_logit else target

    @property
    def x_channels(self) -> int:
        """Channels of the second input (from the input spec)."""
        return self.input_spec.x.channels

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this (from the input spec)."""
        return self.input_spec.multiple

    def adapt_input_spec(self, spec: InputSpec) -> InputSpec:
        """``spec``'s inputs (modalities, encodings, normalisation) with this network's size rule; a convention with
        other channel counts than the network's is refused."""
        own = self.input_spec
        if (spec.rgb.channels, spec.x.channels) != (own.rgb.channels, own.x.channels):
            raise ValueError(
                f"{self.model_name} takes {own.rgb.channels} + {own.x.channels} input channels; input spec "
                f"{spec.name} declares {spec.rgb.channels} + {spec.x.channels}"
            )
        return replace(spec, multiple=own.multiple, min_size=own.min_size)

    def use_input_spec(self, spec: InputSpec) -> None:
        """Take the input convention of a set of weights or a registered preset (same channels; the size rule stays
        the network's)."""
        self.input_spec = self.adapt_input_spec(spec)

    def check_inputs(self, rgb: torch.Tensor, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` with the fix when the inputs cannot go through the network."""
        if is_tracing():
            return
        rgb_name, x_name = self.input_spec.input_names
        if rgb.ndim != 4 or rgb.shape[1] != self.input_spec.rgb.channels:
            raise InputShapeError(
                f"{self.model_name}: {rgb_name} must be (B, {self.input_spec.rgb.channels}, H, W), "
                f"got {tuple(rgb.shape)}"
            )
        if x.ndim != 4 or x.shape[1] != self.x_channels:
            raise InputShapeError(
                f"{self.model_name}: the second input ({x_name}) must be (B, {self.x_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if rgb.shape[0] != x.shape[0] or rgb.shape[-2:] != x.shape[-2:]:
            raise InputShapeError(
                f"{self.model_name}: {rgb_name} {tuple(rgb.shape)} and {x_name} {tuple(x.shape)} differ in batch or "
                f"H×W; resize the {x_name} map to the RGB image (nearest interpolation for depth) before the model."
            )
        check_spatial_size(rgb.shape[-2], rgb.shape[-1], self.input_multiple, self.model_name, self.input_spec.min_size)

    # --- outputs and losses -------------------------------------------------------------------------------------

    def forward_decoder(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The prediction's logits at the decoder's resolution (e.g. H/4 × W/4), before the final upsampling."""
        raise NotImplementedError

    def forward_outputs(self, rgb: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named output (``outputs``) at the decoder's resolution."""
        return {self.prediction_output: self.forward_decoder(rgb, x)}

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.check_inputs(rgb, x)
        return resize(self.forward_decoder(rgb, x), rgb.shape[-2:])

    def output_logits(
        self, rgb: torch.Tensor, x: torch.Tensor, output: str | None = None, mode: str = "bilinear"
    ) -> torch.Tensor:
        """Logits of the named output (default: the prediction) at input resolution, upsampled with ``mode``
        (``bilinear`` as ``forward`` does, or ``bicubic``, align_corners=False)."""
        output = output or self.prediction_output
        if output == self.prediction_output and mode == "bilinear":
            return self(rgb, x)
        if output not in self.outputs:
            raise ValueError(f"{self.model_name} has no output {output!r}; its outputs: {', '.join(self.outputs)}")
        self.check_inputs(rgb, x)
        logits = self.forward_outputs(rgb, x)[output]
        return F.interpolate(logits, size=rgb.shape[-2:], mode=mode, align_corners=False)

    def loss(self, outputs: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms (keys ``loss_terms``; the trainer minimises their sum) of ``forward_outputs`` against
        ``target`` (B, H, W): class indices, void = −1. Default: cross-entropy of the upsampled prediction."""
        logits = resize(outputs[self.prediction_output], target.shape[-2:])
        return {"ce": cross_entropy(logits, self.logit_targets(target))}

    # --- frozen parts -------------------------------------------------------------------------------------------

    def freeze_declared(self) -> None:
        """Stop gradients of every parameter that ``frozen`` names, itself or through a module above it (idempotent;
        :func:`rgbxseg.create_model` calls it once the weights are loaded). A pattern that names nothing is an error,
        not a silent no-op (likewise for ``eval_in_training``, which names modules)."""
        modules = [name for name, _ in self.named_modules() if name]
        parameters = [name for name, _ in self.named_parameters()]
        for declaration, patterns, names in (
            ("frozen", self.frozen, modules + parameters),
            ("eval_in_training", self.eval_in_training, modules),
        ):
            unmatched = [p for p in patterns if not any(re.fullmatch(p, name) for name in names)]
            if unmatched:
                raise ValueError(f"{self.model_name}: {declaration} patterns {unmatched} name nothing in the model")
        for name, parameter in self.named_parameters():
            if _matches_path(self.frozen, name):
                parameter.requires_grad_(False)

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((name, p) for name, p in self.named_parameters() if p.requires_grad)

    def frozen_modules(self) -> set[str]:
        """Names of the frozen modules: no parameter below them trains, and they have parameters or lie in a frozen
        module (so a parameter-free BatchNorm or dropout inside a frozen part is frozen too)."""
        frozen: set[str] = set()
        for name, module in self.named_modules():  # parents come before their children
            parameters = list(module.parameters())
            inside_frozen = name.rpartition(".")[0] in frozen
            if name and not any(p.requires_grad for p in parameters) and (parameters or inside_frozen):
                frozen.add(name)
        return frozen

    def modules_in_eval_while_training(self) -> Iterator[tuple[str, nn.Module]]:
        """Modules that stay in eval mode while the model trains: frozen ones (all of them, or only their
        BatchNorms under ``frozen_train_mode = "train"``) and those matching ``eval_in_training``."""
        if self.frozen_train_mode not in FROZEN_TRAIN_MODES:
            raise ValueError(
                f"{self.model_name}: frozen_train_mode must be one of {FROZEN_TRAIN_MODES}, "
                f"got {self.frozen_train_mode!r}"
            )
        frozen = self.frozen_modules()
        for name, module in self.named_modules():
            fixed = name in frozen and (self.frozen_train_mode == "eval" or isinstance(module, _BatchNorm))
            if name and (fixed or _matches_path(self.eval_in_training, name)):
                yield name, module

    def trained_buffers(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Buffers that training changes: those of modules running in training mode (BatchNorm statistics)."""
        fixed = {name for name, _ in self.modules_in_eval_while_training()}
        return ((name, b) for name, b in self.named_buffers() if name.rpartition(".")[0] not in fixed)

    def train(self, mode: bool = True) -> SegmentationModel:
        """Training mode, except for the modules that the model keeps in eval mode (frozen or ``eval_in_training``)."""
        super().train(mode)
        if mode:
            for _, module in self.modules_in_eval_while_training():
                module.train(False)
        return self

    # --- optimisation -------------------------------------------------------------------------------------------

    def param_groups(
        self, lr: float, weight_decay: float, rules: Sequence[ParamGroupRule] | None = None
    ) -> list[dict[str, Any]]:
        """Optimiser parameter groups of the trainable parameters: the base group (``lr``, ``weight_decay``) and one
        group per rule that matches any (``rules`` default to the model's ``param_group_rules``)."""
        rules = self.param_group_rules if rules is None else tuple(rules)
        members: list[list[nn.Parameter]] = [[] for _ in range(len(rules) + 1)]
        for name, parameter in self.trainable_parameters():
            index = next((i for i, rule in enumerate(rules) if re.search(rule.pattern, name)), -1)
            members[index + 1 if index >= 0 else 0].append(parameter)
        settings = [("base", lr, weight_decay)] + [
            (rule.pattern, lr * rule.lr_mult, weight_decay if rule.weight_decay is None else rule.weight_decay)
            for rule in rules
        ]
        return [
            {"params": params, "lr": group_lr, "weight_decay": group_decay, "name": name}
            for params, (name, group_lr, group_decay) in zip(members, settings, strict=True)
            if params
        ]

    # --- checkpoints --------------------------------------------------------------------------------------------

    def convert_checkpoint(self, state: StateDict) -> StateDict:
        """Rename/reshape keys of older released layouts to the current one (identity by default)."""
        return state

    def checkpoint_input_spec(self, state: StateDict) -> InputSpec | None:
        """The input convention that a checkpoint without metadata was trained with, where its layout tells (a
        released file with its own channel order or statistics); None: the model's own (the default)."""
        return None

    def pretrained_backbone_mappings(self) -> dict[str, BackboneMapping]:
        """Pretrained checkpoints this model can start from, by part name (none by default)."""
        return {}
