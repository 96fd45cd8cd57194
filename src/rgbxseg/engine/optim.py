"""Optimisers built from the model's parameter groups, chosen by name in the config (``optim.name``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..models.base import SegmentationModel
from .config import ConfigError, OptimConfig

ParamGroups = list[dict[str, Any]]

OPTIMIZERS: dict[str, Callable[[ParamGroups, OptimConfig], torch.optim.Optimizer]] = {
    "adamw": lambda groups, c: torch.optim.AdamW(
        groups, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay
    ),
    "sgd": lambda groups, c: torch.optim.SGD(
        groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
    ),
}
"""Optimiser constructors by config name (:data:`~rgbxseg.engine.config.OPTIMIZER_NAMES`); each group's own ``lr``
and ``weight_decay`` win over the defaults."""


def build_optimizer(model: SegmentationModel, config: OptimConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the model's trainable parameters, grouped by :meth:`param_groups` (the config's
    ``param_groups`` rules replace the model's own when given)."""
    groups = model.param_groups(config.lr, config.weight_decay, config.param_groups)
    if not groups:
        raise ConfigError(f"{model.model_name} has no trainable parameter: everything is frozen")
    return OPTIMIZERS[config.name](groups, config)
