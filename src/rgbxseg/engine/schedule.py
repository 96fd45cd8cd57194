"""Learning-rate schedules: per-iteration linear warm-up, then polynomial decay (AsymFormer's, TokenFusion's as
GeminiFusion uses it, and DPLNet's per-epoch one)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_poly_factor(
    iteration: int,
    total: int,
    warmup: int,
    start_factor: float = 1e-3,
    power: float = 0.9,
    from_start: bool = False,
) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based).

    Warm-up: ``start_factor·(1 − α) + α`` with ``α = iteration / warmup``. Then, by default (AsymFormer),
    ``(1 − (iteration − warmup) / (total − warmup)) ** power``, reaching 0 at ``total``. With ``from_start``
    (TokenFusion/GeminiFusion) the decay counts from iteration 0, ``(1 − iteration / total) ** power``, so the rate
    drops when the warm-up ends, and it is held at its last value from ``total`` on.
    """
    if iteration < warmup:
        alpha = iteration / warmup
        return start_factor * (1.0 - alpha) + alpha
    if from_start:
        return (1.0 - min(iteration, total - 1) / total) ** power
    remaining = max(total - warmup, 1)
    return max(1.0 - (iteration - warmup) / remaining, 0.0) ** power


def build_scheduler(
    optimizer: Optimizer,
    total: int,
    warmup: int,
    start_factor: float = 1e-3,
    power: float = 0.9,
    from_start: bool = False,
    step_size: int = 1,
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per iteration (its state dict resumes exactly). With ``step_size`` > 1 the rate
    changes only every ``step_size`` iterations (per epoch, as DPLNet's schedule), held at its value at the start of
    each step."""
    if step_size < 1:
        raise ValueError(f"step_size must be ≥ 1, got {step_size}")
    return LambdaLR(
        optimizer,
        lambda it: warmup_poly_factor(it - it % step_size, total, warmup, start_factor, power, from_start),
    )
