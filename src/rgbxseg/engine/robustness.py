"""Robustness to missing and noisy modalities: the protocol of the multi-modal sensor-failure benchmark (Liao et al.,
"Benchmarking Multi-modal Semantic Segmentation under Sensor Failures: Missing and Noisy Modality Robustness", CVPR
2025 workshops, arXiv 2503.18445), for any model and dataset.

Every case corrupts the *normalised* inputs of each frame, as the benchmark does, from a generator seeded by (seed,
case, sample id), so a report is reproducible to the pixel:

* **EMM** (entire-missing modality): for every non-empty proper subset of the modalities, those inputs are zeros.
* **RMM** (random-missing modality): the same subsets, each pixel of a missing input zeroed with probability r.
* **NM** (noisy modality): salt-and-pepper noise (each element with probability d, half of those set to the tensor's
  maximum, half to its minimum) then additive Gaussian noise of standard deviation σ, on every input.
* **sensor** (ours): what real RGB-D cameras do, applied to the stored values (millimetres, 0..255) before
  normalisation: depth holes at discontinuities and in blobs, Kinect axial noise, disparity quantisation of far
  depth, misregistration, a wrong unit, low resolution; low light, over-exposure and motion blur
  (:data:`~rgbxseg.data.failures.SENSOR_FAILURES`).

The expectation mIoU^E over independent failures with probability p weighs each evaluated missing set S (|S| = k of N
modalities, k < N) by p^k (1 − p)^(N − k), normalised over the evaluated sets (:func:`expected_miou`).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..data.failures import SENSOR_FAILURES, SensorFailure
from ..inputs import InputSpec
from ..io import atomic_write_path
from .evaluate import SINGLE_SCALE, EvalProtocol, evaluate, prepare_evaluation
from .metrics import SegmentationMetrics
from .plots import plot_bars

MODALITIES = ("rgb", "x")
"""The two inputs of an RGB-X network, as the cases name them."""
RMM_RATES = (0.25, 0.5, 0.75)
EXPECTATION_P = (0.2, 0.1, 0.05)
NOISE_LEVELS: dict[str, tuple[float, float]] = {"low": (0.05, 0.1), "mid": (0.1, 0.2), "high": (0.2, 0.5)}
"""Salt-and-pepper density and Gaussian σ (on the normalised inputs) per noise level, as the benchmark defines them."""
SUITES = ("emm", "rmm", "nm", "sensor")

InputCorruption = Callable[[torch.Tensor, torch.Tensor, Sequence[str]], tuple[torch.Tensor, torch.Tensor]]
"""``(rgb, x, sample ids)`` → corrupted ``(rgb, x)``; inputs are normalised (B, C, H, W) tensors."""


def missing_sets(modalities: Sequence[str] = MODALITIES) -> list[frozenset[str]]:
    """Every non-empty proper subset of ``modalities``: what can be missing while something is left."""
    return [
        frozenset(subset) for size in range(1, len(modalities)) for subset in itertools.combinations(modalities, size)
    ]


def expected_miou(miou: Mapping[frozenset[str], float], modalities: Sequence[str], p: float) -> float:
    """mIoU^E: the mean of ``miou`` (by missing set; the empty set is the clean run) weighted by the probability
    p^k (1 − p)^(N − k) of that set when each of the N modalities fails independently with probability ``p``,
    normalised over the sets given (the benchmark evaluates k = 0 … N − 1)."""
    if not 0 <= p <= 1:
        raise ValueError(f"a failure probability lies in [0, 1], got {p}")
    n = len(modalities)
    weights = {missing: p ** len(missing) * (1 - p) ** (n - len(missing)) for missing in miou}
    total = sum(weights.values())
    if total == 0:
        raise ValueError(f"no evaluated case has a non-zero probability at p = {p}")
    return sum(weights[missing] * value for missing, value in miou.items()) / total


def _generator(seed: int, case: str, sample: str) -> torch.Generator:
    """A generator for one case of one frame, stable across runs, processes and batch sizes."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{case}/{sample}".encode()))


@dataclass(frozen=True)
class RobustnessCase:
    """One evaluated condition: ``missing`` inputs zeroed (entirely, or each pixel with probability ``rate``), or
    ``noise`` = (salt-and-pepper density, Gaussian σ) on every input."""

    name: str
    suite: str
    missing: frozenset[str] = frozenset()
    rate: float | None = None
    noise: tuple[float, float] | None = None
    failure: SensorFailure | None = None

    def corrupt_one(
        self, inputs: dict[str, torch.Tensor], generator: torch.Generator, spec: InputSpec | None = None
    ) -> dict[str, torch.Tensor]:
        """The case applied to one frame's normalised (C, H, W) inputs, drawing from ``generator``; a sensor failure
        needs the input ``spec`` to reach the stored values."""
        out = dict(inputs)
        if self.failure is not None:
            if spec is None:
                raise ValueError(f"{self.name}: a sensor failure needs the input spec")
            name = self.failure.modality
            out[name] = self.failure.on_normalized(inputs[name], spec, generator)
            return out
        for name in MODALITIES:
            tensor = inputs[name]
            if name in self.missing:
                if self.rate is None:
                    out[name] = torch.zeros_like(tensor)
                else:
                    dropped = torch.rand(tensor.shape[-2:], generator=generator) < self.rate
                    out[name] = tensor.masked_fill(dropped.to(tensor.device), 0.0)
            elif self.noise is not None:
                density, sigma = self.noise
                draw = torch.rand(tensor.shape, generator=generator).to(tensor.device)
                noisy = torch.where(draw < density / 2, tensor.max(), tensor)
                noisy = torch.where((draw >= density / 2) & (draw < density), tensor.min(), noisy)
                out[name] = noisy + sigma * torch.randn(tensor.shape, generator=generator).to(tensor.device)
        return out

    def corruption(self, seed: int, spec: InputSpec | None = None) -> InputCorruption:
        """This case as an :data:`InputCorruption` for :func:`~rgbxseg.engine.evaluate.evaluate`."""
        if self.failure is not None and spec is not None:
            self.failure.check(spec)

        def corrupt(rgb: torch.Tensor, x: torch.Tensor, ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
            frames = [
                self.corrupt_one({"rgb": rgb[i], "x": x[i]}, _generator(seed, self.name, sample), spec)
                for i, sample in enumerate(ids)
            ]
            return torch.stack([f["rgb"] for f in frames]), torch.stack([f["x"] for f in frames])

        return corrupt


DEPTH_FAILURES = tuple(failure for failure in SENSOR_FAILURES if failure.modality == "x")


@dataclass(frozen=True)
class RobustTraining:
    """The training side of the robustness evaluation (config ``data.drop_rgb``, ``data.drop_x``,
    ``data.sensor_failures``): per sample, one input zeroed (as EMM zeroes it), or its depth put through one of the
    depth failures. Draws come from torch's global generator, which the trainer reseeds every epoch, so a resumed run
    draws the same."""

    drop_rgb: float = 0.0
    drop_x: float = 0.0
    sensor_failures: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.drop_rgb or self.drop_x or self.sensor_failures)

    def check(self, spec: InputSpec) -> None:
        """Refuse depth failures for a network whose X input is not metric depth."""
        if self.sensor_failures:
            DEPTH_FAILURES[0].check(spec)

    def __call__(self, rgb: torch.Tensor, x: torch.Tensor, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's normalised (B, C, H, W) inputs, corrupted per sample."""
        batch = rgb.shape[0]
        draw = torch.rand(batch)
        drop_rgb = draw < self.drop_rgb
        drop_x = (draw >= self.drop_rgb) & (draw < self.drop_rgb + self.drop_x)
        rgb = rgb.masked_fill(drop_rgb.to(rgb.device)[:, None, None, None], 0.0)
        x = x.masked_fill(drop_x.to(x.device)[:, None, None, None], 0.0)
        if self.sensor_failures:
            fails = (torch.rand(batch) < self.sensor_failures) & ~drop_x
            choices = torch.randint(len(DEPTH_FAILURES), (batch,))
            seeds = torch.randint(2**62, (batch,))
            x = x.clone()
            for i in fails.nonzero().flatten().tolist():
                generator = torch.Generator().manual_seed(int(seeds[i]))
                x[i] = DEPTH_FAILURES[int(choices[i])].on_normalized(x[i], spec, generator)
        return rgb, x


def robustness_cases(suites: Sequence[str] = SUITES) -> list[RobustnessCase]:
    """The clean run and the cases of ``suites`` (``emm``, ``rmm``, ``nm``), in report order."""
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise ValueError(f"unknown robustness suites {unknown}; choose from {', '.join(SUITES)}")
    cases = [RobustnessCase("clean", "clean")]
    if "emm" in suites:
        cases += [RobustnessCase(f"emm:{'+'.join(sorted(m))}", "emm", m) for m in missing_sets()]
    if "rmm" in suites:
        cases += [
            RobustnessCase(f"rmm{rate:g}:{'+'.join(sorted(m))}", "rmm", m, rate=rate)
            for rate in RMM_RATES
            for m in missing_sets()
        ]
    if "nm" in suites:
        cases += [RobustnessCase(f"nm:{level}", "nm", noise=noise) for level, noise in NOISE_LEVELS.items()]
    if "sensor" in suites:
        cases += [RobustnessCase(failure.name, "sensor", failure=failure) for failure in SENSOR_FAILURES]
    return cases


@dataclass
class RobustnessReport:
    """mIoU per case, the benchmark's summaries, and how it was obtained."""

    metrics: dict[str, SegmentationMetrics]
    cases: list[RobustnessCase]
    seed: int
    seconds: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)

    def _miou_by_missing(self, suite: str, rate: float | None = None) -> dict[frozenset[str], float]:
        found = {c.missing: self.metrics[c.name].miou for c in self.cases if c.suite == suite and c.rate == rate}
        return {frozenset(): self.metrics["clean"].miou, **found}

    def summary(self) -> dict[str, float]:
        """mIoU^Avg (mean over the failure cases) and mIoU^E at each p, for EMM and for RMM at each rate; the
        mIoU of each NM level."""
        out: dict[str, float] = {"clean": self.metrics["clean"].miou}
        suites = {c.suite for c in self.cases}
        groups = [("emm", None)] if "emm" in suites else []
        groups += [("rmm", rate) for rate in RMM_RATES if "rmm" in suites]
        for suite, rate in groups:
            label = suite if rate is None else f"{suite}{rate:g}"
            miou = self._miou_by_missing(suite, rate)
            failures = [value for missing, value in miou.items() if missing]
            out[f"{label}_avg"] = sum(failures) / len(failures)
            for p in EXPECTATION_P:
                out[f"{label}_e{p:g}"] = expected_miou(miou, MODALITIES, p)
        for case in self.cases:
            if case.suite == "nm":
                out[case.name] = self.metrics[case.name].miou
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "cases": {
                case.name: {
                    "suite": case.suite,
                    "missing": sorted(case.missing),
                    "rate": case.rate,
                    "noise": None if case.noise is None else {"density": case.noise[0], "sigma": case.noise[1]},
                    "miou": self.metrics[case.name].miou,
                    "pixel_accuracy": self.metrics[case.name].pixel_accuracy,
                    "seconds": self.seconds[case.name],
                }
                for case in self.cases
            },
            "summary": self.summary(),
            "units": "mIoU and pixel accuracy are fractions in [0, 1]; the Markdown table prints percent",
        }

    def markdown(self) -> str:
        """A table of every case (mIoU, its drop from clean, pixel accuracy) and the summaries, in percent."""
        clean = self.metrics["clean"].miou
        lines = ["| case | mIoU | Δ clean | pixel acc | seconds |", "|---|---|---|---|---|"]
        for case in self.cases:
            m = self.metrics[case.name]
            lines.append(
                f"| {case.name} | {100 * m.miou:.2f} | {100 * (m.miou - clean):+.2f} | {100 * m.pixel_accuracy:.2f} "
                f"| {self.seconds[case.name]:.1f} |"
            )
        lines += ["", "| summary | mIoU |", "|---|---|"]
        lines += [f"| {name} | {100 * value:.2f} |" for name, value in self.summary().items()]
        return "\n".join(lines)


def evaluate_robustness(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    suites: Sequence[str] = SUITES,
    seed: int = 0,
    protocol: EvalProtocol = SINGLE_SCALE,
    x_modality: str | None = None,
    input_spec: InputSpec | None = None,
    output: str | None = None,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
) -> RobustnessReport:
    """Evaluate ``model`` on ``dataset`` clean and under every case of ``suites`` (:func:`robustness_cases`);
    ``input_spec`` is how ``dataset`` normalises (default: the model's), which sensor failures undo and redo. The
    other arguments are those of :func:`~rgbxseg.engine.evaluate.evaluate`."""
    cases = robustness_cases(suites)
    spec = input_spec or model.input_spec
    corruptions = {case.name: case.corruption(seed, spec) for case in cases[1:]}  # refuses what cannot apply, first
    metrics, seconds = {}, {}
    for case in tqdm(cases, desc="robustness", unit="case", disable=not progress):
        started = time.perf_counter()
        metrics[case.name] = evaluate(
            model, dataset, num_classes=num_classes, class_names=class_names, protocol=protocol,
            x_modality=x_modality, output=output, batch_size=batch_size, workers=workers, progress=False,
            corrupt=corruptions.get(case.name),
        )  # fmt: skip
        seconds[case.name] = time.perf_counter() - started
    return RobustnessReport(metrics, cases, seed, seconds)


def write_robustness_chart(report: RobustnessReport, path: str | Path) -> Path:
    """A bar chart PNG of mIoU per case, the clean level as a line (matplotlib, the ``demo`` extra)."""
    names = [case.name for case in report.cases]
    return plot_bars(
        names,
        [100 * report.metrics[name].miou for name in names],
        Path(path),
        ylabel="mIoU (%)",
        title="robustness: missing and noisy modalities",
        reference=100 * report.metrics["clean"].miou,
    )


def robustness_weights(
    weights: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    *,
    suites: Sequence[str] = SUITES,
    seed: int = 0,
    protocol: EvalProtocol = SINGLE_SCALE,
    batch_size: int = 1,
    workers: int = 0,
    json_path: str | os.PathLike[str] | None = None,
    chart_png: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **load: Any,
) -> RobustnessReport:
    """``rgbxseg eval --robustness``: :func:`evaluate_robustness` of a weights file on a dataset split, with the JSON
    report and the chart; ``load``: the keyword arguments of :func:`~rgbxseg.engine.evaluate.prepare_evaluation`."""
    setup = prepare_evaluation(weights, data_root, **load)
    if setup.int8 is not None:
        raise ValueError(f"{weights} is an int8 model; the robustness evaluation runs float weights: give the file it "
                         "was quantised from")  # fmt: skip
    dataset = setup.dataset
    report = evaluate_robustness(
        setup.model, dataset, num_classes=dataset.num_classes, class_names=dataset.class_set.names, suites=suites,
        seed=seed, protocol=protocol, x_modality=setup.x_modality, input_spec=setup.spec, output=setup.output,
        batch_size=batch_size,
        workers=workers, progress=progress,
    )  # fmt: skip
    report.protocol = setup.describe(protocol)
    if json_path is not None:
        with atomic_write_path(json_path) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2))
    if chart_png is not None:
        write_robustness_chart(report, chart_png)
    return report


def comparison_table(reports: Mapping[str, RobustnessReport]) -> str:
    """A Markdown table of mIoU (%) per case, one column per report (e.g. trained with and without depth dropout),
    then the summaries."""
    names = list(reports)
    first = reports[names[0]]
    lines = [f"| case | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for case in first.cases:
        values = " | ".join(f"{100 * reports[name].metrics[case.name].miou:.2f}" for name in names)
        lines.append(f"| {case.name} | {values} |")
    summaries = {name: report.summary() for name, report in reports.items()}
    for key in summaries[names[0]]:
        if key != "clean" and not key.startswith("nm:"):
            lines.append(f"| {key} | {' | '.join(f'{100 * summaries[name][key]:.2f}' for name in names)} |")
    return "\n".join(lines)
