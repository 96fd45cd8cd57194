"""How real RGB-D cameras fail, as functions of a frame's stored values: depth in millimetres (0 = invalid) and 8-bit
colour, each (C, H, W) float32 with every draw from the generator given, so that a failure is reproducible per frame.

The depth models follow the structured-light Kinect literature: the axial noise of Nguyen, Izadi and Lovell (3DIMPVT
2012), σ(z) = 1.2 mm + 1.9 mm · (z / 1 m − 0.4)², and the depth resolution of Khoshelham and Elberink (Sensors 2012),
where disparity is quantised so that the depth step grows as z² (2.85·10⁻³ per metre: 46 mm at 4 m).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..inputs import InputSpec

AXIAL_NOISE_MM = (1.2, 1.9, 0.4)
"""σ(z) = a + b (z − c)² in mm with z in metres: (a, b, c)."""
DISPARITY_STEP_PER_M = 2.85e-3
"""The quantisation step of 1/z (1/m): the depth step is about this × z²."""
EDGE_JUMP = (50.0, 0.05)
"""A depth discontinuity: neighbours differing by more than max(50 mm, 5 % of the depth)."""


@dataclass(frozen=True)
class SensorFailure:
    """A named failure of one input: ``apply(stored (C, H, W) float32, generator)`` → the failed stored values."""

    name: str
    modality: str
    """``"x"`` (metric depth) or ``"rgb"``."""
    apply: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    description: str

    def on_normalized(self, normalized: torch.Tensor, spec: InputSpec, generator: torch.Generator) -> torch.Tensor:
        """The failure applied to this input of one frame as the network takes it (normalised (C, H, W)): back to the
        stored values through ``spec``, failed, and normalised again."""
        modality = spec.rgb if self.modality == "rgb" else spec.x
        return modality.normalize(self.apply(modality.denormalize(normalized), generator))

    def check(self, spec: InputSpec) -> None:
        """Refuse an input this failure does not model (a depth failure needs metric depth)."""
        needed = "metric_mm" if self.modality == "x" else "rgb"
        found = spec.x.encoding if self.modality == "x" else spec.rgb.encoding
        if found != needed:
            raise ValueError(
                f"{self.name}: models {needed} input, but {spec.name} feeds {found}; leave the sensor suite out for "
                "this model (--robustness emm rmm nm)"
            )


def depth_edges(depth: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: valid pixels next to a depth discontinuity (:data:`EDGE_JUMP`) with a valid neighbour."""
    z = depth[0]
    edges = torch.zeros_like(z, dtype=torch.bool)
    for dim in (0, 1):
        a, b = z.narrow(dim, 0, z.shape[dim] - 1), z.narrow(dim, 1, z.shape[dim] - 1)
        limit = torch.maximum(torch.full_like(a, EDGE_JUMP[0]), EDGE_JUMP[1] * torch.minimum(a, b))
        jump = ((a - b).abs() > limit) & (a > 0) & (b > 0)
        edges.narrow(dim, 0, z.shape[dim] - 1).logical_or_(jump)
        edges.narrow(dim, 1, z.shape[dim] - 1).logical_or_(jump)
    return edges


def holes_at_edges(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Invalidate a 3-pixel band along depth discontinuities, where structured light loses its pattern."""
    band = F.max_pool2d(depth_edges(depth)[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    return depth.masked_fill(band, 0.0)


def hole_blobs(fraction: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Invalidate smooth random blobs covering exactly ``round(fraction · H · W)`` pixels (glass, black and shiny
    surfaces): a coarse uniform field upsampled bilinearly, its lowest values."""

    def fail(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = depth.shape[-2:]
        coarse = torch.rand(1, 1, max(height // 16, 2), max(width // 16, 2), generator=generator)
        field = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False).flatten()
        count = round(fraction * field.numel())
        holes = torch.zeros_like(field, dtype=torch.bool)
        holes[field.argsort()[:count]] = True
        return depth.masked_fill(holes.view(height, width).to(depth.device), 0.0)

    return fail


def axial_noise_sigma(depth_mm: torch.Tensor) -> torch.Tensor:
    """σ in mm of the Kinect axial noise at each depth (:data:`AXIAL_NOISE_MM`)."""
    a, b, c = AXIAL_NOISE_MM
    return a + b * (depth_mm / 1000 - c) ** 2


def axial_noise(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise whose σ grows with the square of the distance, on valid pixels (kept ≥ 1 mm, i.e. valid)."""
    noise = torch.randn(depth.shape, generator=generator).to(depth.device) * axial_noise_sigma(depth)
    return torch.where(depth > 0, (depth + noise).clamp(min=1.0), depth)


def far_quantisation(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Depth from disparity quantised in steps of :data:`DISPARITY_STEP_PER_M`: far depth in coarse steps."""
    steps = torch.round(1000.0 / depth.clamp(min=1.0) / DISPARITY_STEP_PER_M).clamp(min=1)
    return torch.where(depth > 0, 1000.0 / (steps * DISPARITY_STEP_PER_M), depth)


def shifted(pixels: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Depth misregistered by ``pixels`` to the right (the uncovered columns invalid), as an uncalibrated rig."""

    def fail(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = torch.zeros_like(depth)
        out[..., pixels:] = depth[..., : depth.shape[-1] - pixels]
        return out

    return fail


def scaled(factor: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Every depth × ``factor``: a wrong unit or depth scale in the driver."""
    return lambda depth, generator: depth * factor


def quarter_resolution(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Depth sampled at ¼ resolution and brought back with nearest neighbour (a low-resolution depth sensor)."""
    height, width = depth.shape[-2:]
    low = F.interpolate(depth[None], size=(max(height // 4, 1), max(width // 4, 1)), mode="nearest-exact")
    return F.interpolate(low, size=(height, width), mode="nearest-exact")[0]


def low_light(rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A quarter of the light, with sensor noise (σ 4 of 255) and 8-bit rounding."""
    noise = 4.0 * torch.randn(rgb.shape, generator=generator).to(rgb.device)
    return (rgb * 0.25 + noise).round().clamp(0, 255)


def over_exposure(rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Twice the exposure, clipped at 255."""
    return (rgb * 2.0).clamp(0, 255)


def motion_blur(rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A horizontal 9-pixel box blur (camera panning during the exposure), edges replicated."""
    kernel = torch.full((rgb.shape[0], 1, 1, 9), 1 / 9, dtype=rgb.dtype, device=rgb.device)
    padded = F.pad(rgb[None], (4, 4, 0, 0), mode="replicate")
    return F.conv2d(padded, kernel, groups=rgb.shape[0])[0]


SENSOR_FAILURES = (
    SensorFailure("depth:holes-edges", "x", holes_at_edges, "3-pixel invalid band along depth discontinuities"),
    *(
        SensorFailure(f"depth:holes-{round(f * 100)}", "x", hole_blobs(f), f"invalid blobs on {f:.0%} of pixels")
        for f in (0.1, 0.3, 0.5)
    ),
    SensorFailure("depth:axial-noise", "x", axial_noise, "Kinect axial noise, σ = 1.2 + 1.9 (z − 0.4)² mm"),
    SensorFailure("depth:far-quantisation", "x", far_quantisation, "disparity quantisation, step 2.85e-3 z²"),
    *(SensorFailure(f"depth:shift-{n}", "x", shifted(n), f"misregistered by {n} pixels") for n in (2, 4, 8)),
    *(SensorFailure(f"depth:scale-{f:g}", "x", scaled(f), f"every depth × {f:g} (a wrong unit)") for f in (0.8, 1.25)),
    SensorFailure("depth:quarter-res", "x", quarter_resolution, "¼ resolution, nearest-neighbour upsampled"),
    SensorFailure("rgb:low-light", "rgb", low_light, "¼ of the light with sensor noise"),
    SensorFailure("rgb:over-exposure", "rgb", over_exposure, "2× exposure, clipped"),
    SensorFailure("rgb:motion-blur", "rgb", motion_blur, "horizontal 9-pixel motion blur"),
)
"""The realistic failures of the ``sensor`` robustness suite, in report order."""
