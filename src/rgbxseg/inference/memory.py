"""The memory guard's numbers: what a prediction needs, measured per model, and what the device has free.

A prediction's peak memory grows linearly with its pixels — the network's activations with the pixels at its input
size, the frame's own arrays (normalised inputs, full-resolution logits, labels) with the frame's pixels and its
classes. Measured with ``python benchmarks/activation_memory.py`` (fp32 on the CPU, peak RSS growth of
``Segmenter.predict`` in fresh processes, slopes between two sizes): AsymFormer B0-T takes the same bytes per pixel at
960×1280 and 1440×1920 (949 and 950 for its forward alone), so the slope extrapolates to large frames. bf16, the
inference form (``optimize``) and CUDA need less, so on those the estimate errs on the safe side.
"""

from __future__ import annotations

from pathlib import Path

import torch

DEFAULT_MAX_PIXELS = 4096 * 4096
"""Frames above 16,777,216 pixels at the network's input size (4096×4096; twice a 4K UHD frame) are refused by
default: AsymFormer B0-T would need about 16 GiB for one, the larger models several times more."""

NETWORK_BYTES_PER_PIXEL: dict[str, int] = {
    "asymformer_b0_t": 784,
    "asymformer_b0_t_cat": 816,
    "asymformer_b0_t_cma": 736,
    "asymformer_b0_t_lafs": 777,
    "asymformer_b0_t_se_mhsa": 787,
    "dplnet_mit_b0": 2498,
    "dplnet_mit_b2": 2460,
    "dplnet_mit_b5": 2344,
    "geminifusion_mit_b0": 1363,
    "geminifusion_mit_b1": 1670,
    "geminifusion_mit_b2": 1406,
    "geminifusion_mit_b3": 1699,
    "geminifusion_mit_b4": 1591,
    "geminifusion_mit_b5": 1630,
    "geminifusion_swin_t": 1439,
    "geminifusion_swin_s": 1871,
    "geminifusion_swin_l": 1607,
    "geminifusion_swin_l_w12": 1244,
    "ktb_swin_t": 1892,
    "ktb_swin_b": 2043,
    "ktb_swin_l": 2113,
}
"""Peak activation bytes per pixel of the network's input, per registered model (fp32, CPU, batch 1; results in
``benchmarks/results/activation_memory_cpu.json``). A model registered later without a value gets only the pixel
limit."""

FRAME_BYTES_PER_PIXEL = 19.2
"""Bytes per frame pixel that do not depend on the classes: the inputs as tensors, normalised, and the labels."""
FRAME_BYTES_PER_CLASS_PIXEL = 4.35
"""Bytes per frame pixel and class: the logits brought back to the frame's resolution."""

GIB = 2**30


class FrameTooLargeError(ValueError):
    """A frame whose prediction would exceed ``max_pixels`` or the free memory; refused before anything is allocated."""


def estimate_bytes(
    model_name: str, num_classes: int, network_pixels: int, frame_pixels: int, return_logits: bool = False
) -> int | None:
    """Peak bytes of predicting one frame (None for a model without a measurement): the network at ``network_pixels``
    and the outputs at ``frame_pixels`` (``return_logits`` adds the float32 logits handed back)."""
    per_network_pixel = NETWORK_BYTES_PER_PIXEL.get(model_name)
    if per_network_pixel is None:
        return None
    per_frame_pixel = FRAME_BYTES_PER_PIXEL + num_classes * (FRAME_BYTES_PER_CLASS_PIXEL + 4 * return_logits)
    return round(per_network_pixel * network_pixels + per_frame_pixel * frame_pixels)


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup v2 memory limit (containers), None without one."""
    limit, usage = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        maximum = limit.read_text().strip()
        return None if maximum == "max" else int(maximum) - int(usage.read_text())
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still hand out: free CUDA memory; on Linux ``MemAvailable`` (within a container's
    limit); None where it cannot be read (then only ``max_pixels`` guards)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    available = next((int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")), None)
    headroom = _cgroup_headroom()
    return available if headroom is None or available is None else min(available, headroom)


def format_bytes(size: int) -> str:
    """``1.5 GiB`` or ``320 MiB``."""
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / 2**20:.0f} MiB"
