"""What one training step minimises, as a module: the model's named loss terms of its named outputs.

DDP wraps this module rather than the model, so the gradients of whatever the model's :meth:`loss` uses are
synchronised through the wrapper, whatever outputs and losses the model declares.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.base import SegmentationModel


class TrainingObjective(nn.Module):
    """``objective(rgb, x, target)`` → the model's loss terms, in the order of ``model.loss_terms``; ``target`` =
    label − 1."""

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.check_inputs(rgb, x)
        terms = self.model.loss(self.model.forward_outputs(rgb, x), target)
        if set(terms) != set(self.model.loss_terms):
            raise RuntimeError(
                f"{self.model.model_name}.loss returned the terms {sorted(terms)}, but the model declares "
                f"loss_terms = {list(self.model.loss_terms)}"
            )
        return {name: terms[name] for name in self.model.loss_terms}


def total_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the loss terms (the first term itself when there is one)."""
    values = iter(terms.values())
    total = next(values)
    for value in values:
        total = total + value
    return total
