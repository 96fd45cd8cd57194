"""Multi-process training through ``torchrun``: NCCL on GPUs, gloo on CPUs, one code path.

Under ``torchrun`` the environment carries ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without it everything runs as
a single process of rank 0. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..runtime import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` set up (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a tensor (returned as a new tensor; identity in a single process)."""
    value = value.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (each rank's input feeds every output)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch of all ranks, on any device.

    ``torch.nn.SyncBatchNorm`` only runs on GPUs; this module does the same with two differentiable all-reduces
    (mean, then centred second moment), so ``sync_bn`` also works for gloo/CPU training.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        total = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), count[None]]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean[None, :, None, None]
        var = _AllReduceSum.apply((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), momentum)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return out * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else out


def _cross_rank_batchnorm(name: str, bn: _BatchNorm, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    if type(bn) is not nn.BatchNorm2d:
        raise ValueError(
            f"sync_bn on the CPU handles BatchNorm2d only; {name} is a {type(bn).__name__}: train with sync_bn=false "
            "or on GPUs"
        )
    replacement = CrossRankBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    replacement = replacement.to(bn.weight.device if bn.affine else device)
    replacement.load_state_dict(bn.state_dict())
    for new, old in zip(replacement.parameters(), bn.parameters(), strict=True):
        new.requires_grad_(old.requires_grad)
    return replacement.train(bn.training)


def convert_sync_batchnorm(
    model: nn.Module, device: torch.device, keep: Collection[str] = (), prefix: str = ""
) -> nn.Module:
    """Replace every BatchNorm whose name is not in ``keep`` by a cross-rank one (CUDA: ``nn.SyncBatchNorm``; else
    ours, for BatchNorm2d). ``keep`` names the BatchNorms whose statistics never move (frozen, or kept in eval mode
    by the model); ``requires_grad`` of the affine parameters is kept."""
    for name, child in model.named_children():
        full_name = f"{prefix}{name}"
        converted = isinstance(child, nn.SyncBatchNorm | CrossRankBatchNorm2d)
        if isinstance(child, _BatchNorm) and not converted and full_name not in keep:
            setattr(model, name, _cross_rank_batchnorm(full_name, child, device))
        else:
            convert_sync_batchnorm(child, device, keep, f"{full_name}.")
    return model
