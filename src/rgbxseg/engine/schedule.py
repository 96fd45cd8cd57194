"""The AsymFormer learning-rate schedule: per-iteration linear warm-up, then polynomial decay."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_poly_factor(
    iteration: int, total: int, warmup: int, start_factor: float = 1e-3, power: float = 0.9
) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based).

    Warm-up: ``start_factor·(1 − α) + α`` with ``α = iteration / warmup``; then
    ``(1 − (iteration − warmup) / (total − warmup)) ** power``, reaching 0 at ``total``.
    """
    if iteration < warmup:
        alpha = iteration / warmup
        return start_factor * (1.0 - alpha) + alpha
    remaining = max(total - warmup, 1)
    return max(1.0 - (iteration - warmup) / remaining, 0.0) ** power


def build_scheduler(
    optimizer: Optimizer, total: int, warmup: int, start_factor: float = 1e-3, power: float = 0.9
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per iteration (its state dict resumes exactly)."""
    return LambdaLR(optimizer, lambda it: warmup_poly_factor(it, total, warmup, start_factor, power))
