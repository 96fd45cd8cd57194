"""Segmentation metrics from one dataset-level confusion matrix (void pixels ignored), reducible across ranks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

ABSENT_CLASSES = ("skip", "zero")
"""How means treat classes without a score (:meth:`ConfusionMatrix.compute`)."""
SCORE_UNITS = (
    "miou, pixel_accuracy, mean_accuracy, frequency_weighted_iou and the per-class iou and accuracy are fractions in "
    "[0, 1] (null: a class absent from prediction and ground truth); the console prints them as percent. "
    "labelled_pixels, void_predicted_pixels and confusion_matrix are pixel counts."
)
"""The ``units`` note of :meth:`SegmentationMetrics.to_dict` (and so of ``rgbxseg eval --json``)."""


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores in [0, 1]. Per-class values are ``nan`` for classes absent from both prediction and ground truth (no
    IoU) or from the ground truth (no accuracy), and means skip them; computed with ``absent_classes="zero"`` they are
    0 and counted, as the official AsymFormer script does."""

    miou: float
    pixel_accuracy: float
    mean_accuracy: float
    frequency_weighted_iou: float
    iou: tuple[float, ...]
    accuracy: tuple[float, ...]
    class_names: tuple[str, ...]
    labelled_pixels: int
    confusion: torch.Tensor = field(compare=False, repr=False)
    """(K, K) int64 counts, rows ground truth, columns prediction."""
    void_predicted_pixels: int = 0
    """Labelled pixels left out because a void output won them (only under the official DPLNet metric)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with a ``units`` note: the scores stay fractions here while :meth:`table` prints percent."""

        def clean(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "units": SCORE_UNITS,
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "frequency_weighted_iou": self.frequency_weighted_iou,
            "labelled_pixels": self.labelled_pixels,
            "void_predicted_pixels": self.void_predicted_pixels,
            "confusion_matrix": self.confusion.tolist(),
            "per_class": [
                {"id": i + 1, "name": name, "iou": clean(iou), "accuracy": clean(acc)}
                for i, (name, iou, acc) in enumerate(zip(self.class_names, self.iou, self.accuracy, strict=True))
            ],
        }

    def table(self) -> str:
        """Per-class IoU/accuracy table followed by the summary, as printed by ``rgbxseg eval``."""
        width = max(len(n) for n in self.class_names)
        lines = [f"{'id':>3}  {'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
        for i, (name, iou, acc) in enumerate(zip(self.class_names, self.iou, self.accuracy, strict=True)):
            lines.append(f"{i + 1:>3}  {name:<{width}}  {_percent(iou)}  {_percent(acc)}")
        lines.append(
            f"mIoU {self.miou * 100:.2f}  pixel acc {self.pixel_accuracy * 100:.2f}  "
            f"mean acc {self.mean_accuracy * 100:.2f}  fwIoU {self.frequency_weighted_iou * 100:.2f}  "
            f"({self.labelled_pixels:,} labelled pixels"
            + (f"; {self.void_predicted_pixels:,} predicted void, left out)" if self.void_predicted_pixels else ")")
        )
        return "\n".join(lines)


def _percent(value: float) -> str:
    return "     -" if math.isnan(value) else f"{value * 100:6.2f}"


class ConfusionMatrix:
    """Counts (ground truth, prediction) pairs; rows are ground-truth classes 1..K, columns predictions."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.void_predicted = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, label: torch.Tensor, drop_void_predictions: bool = False) -> None:
        """``prediction``: class indices 0..K−1; ``label``: dataset labels (0 = void, 1..K), same shape.

        ``drop_void_predictions``: predictions may be −1 (void, which only the official DPLNet metric lets a model
        predict); those pixels are left out and counted, as that metric does by deleting the void row and column of
        its (K+1)-class matrix. Otherwise a negative prediction is an error."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape")
        k = self.num_classes
        valid = label > 0
        if drop_void_predictions:
            void = valid & (prediction < 0)
            self.void_predicted += void.sum().to(self.void_predicted.device)
            valid &= ~void
        elif prediction.numel() and int(prediction.min()) < 0:
            raise ValueError(f"prediction {int(prediction.min())} is not a class index 0..{k - 1}")
        truth = label[valid].to(torch.int64) - 1
        if truth.numel() and int(truth.max()) >= k:
            raise ValueError(f"label value {int(truth.max()) + 1} exceeds the {k} classes of this evaluation")
        index = truth * k + prediction[valid].to(torch.int64)
        self.matrix += torch.bincount(index, minlength=k * k).reshape(k, k).to(self.matrix.device)

    def all_reduce(self) -> None:
        """Sum the matrices of all ranks (no-op outside ``torch.distributed``)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)
            dist.all_reduce(self.void_predicted)

    def compute(self, class_names: Sequence[str] | None = None, absent_classes: str = "skip") -> SegmentationMetrics:
        """The metrics of the counted pixels. ``absent_classes``: a class without labelled pixels has no accuracy,
        and one absent from prediction and ground truth no IoU; ``"skip"`` leaves them out of the means (``nan``),
        ``"zero"`` counts them as 0 over all K classes (the official AsymFormer and SegFormer-style scripts)."""
        if absent_classes not in ABSENT_CLASSES:
            raise ValueError(f"absent_classes must be one of {ABSENT_CLASSES}, got {absent_classes!r}")
        m = self.matrix.to(torch.float64).cpu()
        true_positive = m.diag()
        per_truth, per_prediction = m.sum(1), m.sum(0)
        union = per_truth + per_prediction - true_positive
        iou = torch.where(union > 0, true_positive / union.clamp(min=1), torch.nan)
        accuracy = torch.where(per_truth > 0, true_positive / per_truth.clamp(min=1), torch.nan)
        if absent_classes == "zero":
            iou, accuracy = iou.nan_to_num(0.0), accuracy.nan_to_num(0.0)
        total = per_truth.sum().item()
        frequency = per_truth / max(total, 1)
        names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(1, self.num_classes + 1))
        return SegmentationMetrics(
            miou=_nanmean(iou),
            pixel_accuracy=true_positive.sum().item() / total if total else math.nan,
            mean_accuracy=_nanmean(accuracy),
            frequency_weighted_iou=(frequency * iou.nan_to_num()).sum().item() if total else math.nan,
            iou=tuple(iou.tolist()),
            accuracy=tuple(accuracy.tolist()),
            class_names=names,
            labelled_pixels=int(total) + int(self.void_predicted),
            confusion=self.matrix.cpu().clone(),
            void_predicted_pixels=int(self.void_predicted),
        )


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~values.isnan()]
    return valid.mean().item() if valid.numel() else math.nan
