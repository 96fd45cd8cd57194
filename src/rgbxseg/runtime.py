"""Devices, precisions and optional dependencies shared by inference, export and benchmarking."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import platform
from types import ModuleType

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
"""Precision names accepted by ``--dtype``; anything but fp32 runs under ``torch.autocast``."""


class BackendUnavailableError(ImportError):
    """An optional package (onnxruntime, tensorrt, OpenCV) or a device that this machine does not have."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{purpose} needs the Python package {module!r}, which is not installed: pip install 'rgbxseg[{extra}]'"
        ) from err


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """The torch device for ``device``, refusing CUDA on a machine without it instead of failing later.

    ``"auto"`` picks CUDA when available, else the CPU; a bare ``"cuda"`` means this process's GPU
    (``local_rank``, as set by ``torchrun``).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available here (torch {torch.__version__}); "
            "use --device cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    return resolved


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for a precision name; fp16 only on CUDA (CPU fp16 kernels are slow or missing)."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA device (got {device.type}); on CPU use --dtype bf16 (autocast) or fp32")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[object]:
    """Mixed precision for ``dtype`` (no-op for fp32): matmuls and convolutions in low precision, reductions in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> mallopt parameters
_M_MMAP_THRESHOLD = -3


class _AllocatorState:
    retained = False


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Let this process keep and reuse freed memory instead of handing it back to the OS (glibc malloc).

    glibc serves large allocations with fresh ``mmap`` pages and unmaps them when freed, and trims the heap top; an
    inference loop that allocates the same big activations every frame then page-faults all of them in again every
    frame (AsymFormer at 480×640 on 2 CPU cores: about 0.25 s of 0.88 s per frame, measured with
    ``benchmarks/inference_speed.py --allocators default retain``). Raising the mmap and trim thresholds to
    ``threshold_bytes`` makes later frames reuse the pages. Process-wide and permanent: the process keeps its peak
    memory. Returns whether the setting is in effect (False where the C library is not glibc).
    """
    if _AllocatorState.retained:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    retained = libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    _AllocatorState.retained = bool(retained)
    return _AllocatorState.retained


def freed_memory_retained() -> bool:
    """Whether :func:`retain_freed_memory` is in effect in this process (benchmarks report it)."""
    return _AllocatorState.retained
