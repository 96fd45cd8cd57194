"""PNG plots of training curves and confusion matrices (matplotlib, from the ``demo`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_path
from ..runtime import require


def _pyplot() -> Any:
    require("matplotlib", "demo", "plotting").use("Agg")  # files only, no display
    return require("matplotlib.pyplot", "demo", "plotting")


def plot_training_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss and learning rate per epoch, and validation mIoU where it was measured."""
    plt = _pyplot()
    fig, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [row["epoch"] for row in history]
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", markersize=3)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    lr_ax = loss_ax.twinx()
    lr_ax.plot(epochs, [row["lr"] for row in history], color="tab:gray", linestyle="--", linewidth=1)
    lr_ax.set_ylabel("learning rate", color="tab:gray")
    evaluated = [row for row in history if row.get("val_miou") is not None]
    miou_ax.plot([row["epoch"] for row in evaluated], [100 * row["val_miou"] for row in evaluated], marker="o")
    miou_ax.set(xlabel="epoch", ylabel="mIoU (%)", title="validation mIoU")
    miou_ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_bars(
    names: Sequence[str],
    values: Sequence[float],
    path: Path,
    *,
    ylabel: str,
    title: str,
    reference: float | None = None,
) -> Path:
    """One bar per name, labelled below at an angle; ``reference`` draws a dashed horizontal line (e.g. a clean run)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.2))
    ax.bar(range(len(names)), values, color="tab:blue")
    if reference is not None:
        ax.axhline(reference, color="tab:gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix: torch.Tensor, class_names: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction)."""
    plt = _pyplot()
    counts = matrix.to(torch.float64)
    rows = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = max(5.0, 0.22 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows.numpy(), cmap="viridis", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set(xlabel="prediction", ylabel="ground truth", title="confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
