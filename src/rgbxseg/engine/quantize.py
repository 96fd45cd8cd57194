"""``rgbxseg quantize``: an int8 model from float weights, calibrated on one dataset split and checked on another.

The calibration frames are spread evenly over the calibration split and brought to one input size (the first
frame's, padded to the model's multiple; others resized to it). The check runs float32 (the inference form) and int8
on every frame of the test split at its own size and compares their label maps: the argmax agreement over all pixels
and the mIoU of each against the labels. Below the agreement threshold nothing is written
(:class:`~rgbxseg.models.quantize.AgreementTooLowError`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import torch
from tqdm import tqdm

from ..data.dataset import RGBXDataset
from ..models.aot import stderr_log
from ..models.base import SegmentationModel
from ..models.layers import pad_to_multiple, resize
from ..models.optimize import optimize_for_inference
from ..models.quantize import (
    DEFAULT_MIN_AGREEMENT,
    Int8Calibration,
    Int8Report,
    calibrate_int8,
    check_agreement,
    int8_inference,
    save_int8,
    versions,
)
from .evaluate import dataset_modalities, model_inputs, prepare_evaluation
from .metrics import ConfusionMatrix

PathLike = str | os.PathLike[str]


def _evenly_spaced(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread over ``range(count)`` (all of them when there are fewer)."""
    if wanted >= count:
        return list(range(count))
    return [round(i * (count - 1) / max(wanted - 1, 1)) for i in range(wanted)]


def _frame_inputs(model: SegmentationModel, sample: dict, x_modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised (rgb, x) of one dataset sample as a batch of one, on the CPU."""
    batch = {key: value.unsqueeze(0) if torch.is_tensor(value) else value for key, value in sample.items()}
    return model_inputs(batch, x_modality, torch.device("cpu"), model.x_channels)


def calibration_frames(
    model: SegmentationModel, dataset: RGBXDataset, x_modality: str, frames: int, progress: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (rgb, x) batches of one frame each, all at the first frame's padded size."""
    size: tuple[int, int] | None = None
    for index in tqdm(_evenly_spaced(len(dataset), frames), desc="calibrating", disable=not progress, leave=False):
        rgb, x = _frame_inputs(model, dataset[index], x_modality)
        if size is None:
            size = tuple(pad_to_multiple(rgb, model.input_multiple).shape[-2:])
        if tuple(rgb.shape[-2:]) != size:
            rgb, x = resize(rgb, size), torch.nn.functional.interpolate(x, size=size, mode="nearest")
        yield pad_to_multiple(rgb, model.input_multiple), pad_to_multiple(x, model.input_multiple)


@torch.inference_mode()
def compare_with_float(
    model: SegmentationModel,
    calibration: Int8Calibration,
    dataset: RGBXDataset,
    x_modality: str,
    *,
    compiled: bool,
    cache_dir: PathLike | None,
    progress: bool,
) -> tuple[float, float, float]:
    """(float32 mIoU, int8 mIoU, argmax agreement) over ``dataset`` (frames at their own sizes, padded)."""
    float_form = optimize_for_inference(model)
    int8_form = int8_inference(
        model, calibration, cache_dir=cache_dir, ahead_of_time=compiled, log=stderr_log("rgbxseg quantize")
    )
    matrices = {name: ConfusionMatrix(model.num_label_classes) for name in ("float", "int8")}
    same = total = 0
    for index in tqdm(range(len(dataset)), desc="checking int8 against float32", disable=not progress, leave=False):
        sample = dataset[index]
        rgb, x = _frame_inputs(model, sample, x_modality)
        height, width = rgb.shape[-2:]
        padded = pad_to_multiple(rgb, model.input_multiple), pad_to_multiple(x, model.input_multiple)
        labels = {}
        for name, form in (("float", float_form), ("int8", int8_form)):
            logits = form.class_logits(form(*padded))[..., :height, :width]
            labels[name] = logits.argmax(1)
            matrices[name].update(labels[name], sample["label"].unsqueeze(0))
        same += int((labels["float"] == labels["int8"]).sum())
        total += labels["float"].numel()
    float_metrics, int8_metrics = (matrix.compute() for matrix in matrices.values())
    return float_metrics.miou, int8_metrics.miou, same / max(total, 1)


def quantize_weights(
    weights: PathLike,
    data_root: PathLike,
    out: PathLike,
    *,
    model_name: str | None = None,
    calibration_split: str = "train",
    test_split: str = "test",
    frames: int = 64,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    compiled: bool = True,
    cache_dir: PathLike | None = None,
    progress: bool = True,
) -> Int8Report:
    """Calibrate the int8 form of ``weights`` on ``frames`` frames of ``calibration_split``, compare it with float32
    on ``test_split`` and write it to ``out`` if its argmax agreement reaches ``min_agreement``.

    ``compiled``: measure with the compiled int8 kernels that ``predict`` will run (one compile per test frame size,
    cached for later runs); otherwise with PyTorch's reference int8 kernels (no compile, same quantisation).
    """
    if not 0 < min_agreement <= 1:
        raise ValueError(f"min_agreement is a fraction of pixels in (0, 1], got {min_agreement}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    start = time.perf_counter()
    setup = prepare_evaluation(weights, data_root, split=test_split, model_name=model_name, device="cpu")
    if setup.int8 is not None:
        raise ValueError(f"{weights} is already an int8 model; quantise the float weights it was made from")
    model = setup.model.eval()
    calibration_set = RGBXDataset(
        data_root, calibration_split, dataset_modalities(setup.x_modality), input_spec=setup.spec
    )
    calibration = calibrate_int8(model, calibration_frames(model, calibration_set, setup.x_modality, frames, progress))
    used = min(frames, len(calibration_set))
    size = "×".join(map(str, calibration.input_size))
    float_miou, int8_miou, agreement = compare_with_float(
        model, calibration, setup.dataset, setup.x_modality, compiled=compiled, cache_dir=cache_dir,
        progress=progress,
    )  # fmt: skip
    report = Int8Report(
        model=model.model_name,
        calibration=f"{used} frames of {data_root} {calibration_split} at {size}",
        test_split=f"{data_root} {test_split}",
        test_frames=len(setup.dataset),
        float_miou=float_miou,
        int8_miou=int8_miou,
        agreement=agreement,
        min_agreement=min_agreement,
        float_modules=list(calibration.float_names),
        compiled=compiled,
        seconds=time.perf_counter() - start,
        versions=versions(),
    )
    check_agreement(report)
    save_int8(out, model, calibration, report)
    return report
