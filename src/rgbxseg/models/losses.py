"""Training losses. Targets are class indices with void = −1 (dataset label − 1), the convention of the engine."""

from __future__ import annotations

import torch
import torch.nn.functional as F

VOID = -1
"""Target value of void pixels (dataset label 0): ignored by every loss."""


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the non-void pixels, in float32; 0 (not NaN) for an all-void batch."""
    total = F.cross_entropy(logits.float(), target, ignore_index=VOID, reduction="sum")
    return total / (target >= 0).sum().clamp(min=1)
