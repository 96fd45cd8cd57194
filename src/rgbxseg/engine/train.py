"""The training engine every method uses: one loop for CPU and GPU, single process or ``torchrun``.

Reproducibility: all random streams are reseeded from (seed, rank, epoch) when an epoch starts, the sample order is
a function of (seed, epoch), and each sample's augmentation a function of (seed, epoch, index). A run resumed from
an epoch-boundary checkpoint therefore ends with the same weights as an uninterrupted run (bit for bit on CPU in a
single process).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..data.dataset import RGBXDataset, resolve_input_spec
from ..data.layout import DatasetMeta, read_meta
from ..data.transforms import TrainAugmentation
from ..errors import RgbxsegError, some_of
from ..inputs import InputSpec
from ..io import (
    LOCK_NAME,
    TEMPORARY_NAME,
    OutputExistsError,
    atomic_write_path,
    lock_directory,
    remove_stale_temporaries,
)
from ..metadata import WeightsMetadata
from ..models import create_model
from ..models.base import SegmentationModel
from ..models.registry import get_input_spec, get_model_spec
from ..models.weights import save_weights
from ..runtime import autocast, resolve_dtype
from .checkpoint import RESUME, load_training_checkpoint, save_training_checkpoint
from .config import AMP_PRECISIONS, ConfigError, StageConfig, TrainConfig, to_dict
from .distributed import (
    DistributedContext,
    all_reduce_mean,
    convert_sync_batchnorm,
    init_distributed,
    shutdown_distributed,
)
from .evaluate import SINGLE_SCALE, EvalProtocol, dataset_modalities, evaluate, model_inputs
from .metrics import SegmentationMetrics
from .objective import TrainingObjective, total_loss
from .optim import build_optimizer
from .plots import plot_training_curves
from .robustness import RobustTraining
from .schedule import build_scheduler

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.csv"
CONFIG_HEADER = "# rgbxseg train: the config of the run in this folder"
"""The first line of the ``config.yaml`` a run writes. A folder that holds that file, at most ``metrics.csv`` besides
and no checkpoint is a run stopped before its first checkpoint, which the same command may start over; a user's own
``config.yaml`` is never taken for it."""


def _stopped_before_a_checkpoint(folder: Path, names: list[str]) -> bool:
    """Whether ``names`` (the entries of ``folder``) are only what a run writes before its first checkpoint."""
    if CONFIG_NAME not in names or not set(names) <= {CONFIG_NAME, METRICS_NAME}:
        return False
    with (folder / CONFIG_NAME).open("rb") as f:
        return f.readline().rstrip(b"\r\n") == CONFIG_HEADER.encode()


class NonFiniteLossError(RgbxsegError, RuntimeError):
    """Training produced a NaN/inf loss and stopped; the last good checkpoint is untouched."""


@dataclass
class TrainResult:
    model: SegmentationModel
    """The final model (the EMA model when enabled), as saved in ``weights``."""
    output_dir: Path
    weights: Path
    checkpoint: Path
    metrics: SegmentationMetrics | None
    """Of the final model on ``config.data.val_split``, as ``config.eval.protocol()`` validates."""
    epochs: int
    """The run's epochs so far, those before a resume included (as ``iterations``)."""
    iterations: int
    images_per_second: float
    config: TrainConfig
    start_epoch: int
    """The epoch this call started from: 0, or that of the checkpoint it resumed."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """What ``rgbxseg train`` prints: the epochs this call trained, and how the score was validated, as the
        ``rgbxseg eval`` options that reproduce it (a config's ``eval`` section may differ from eval's defaults)."""
        trained = self.epochs - self.start_epoch
        if not self.start_epoch:
            text = f"trained {trained} epoch{'s' * (trained != 1)}"
        elif trained > 0:
            span = f"epoch {self.epochs}" if trained == 1 else f"epochs {self.start_epoch + 1}–{self.epochs}"
            text = f"resumed after epoch {self.start_epoch} and trained {span}"
        else:
            text = f"resumed after epoch {self.start_epoch}: nothing left to train"
        text += f" ({self.iterations} iterations in all, {self.images_per_second:.2f} img/s)"
        if self.metrics is None:
            return text
        options = _eval_options(self.config.eval.protocol())
        how = (
            f"validated as `rgbxseg eval {' '.join(options)}` (the config's eval section; eval's default is scale 1.0)"
            if options
            else "validated at scale 1.0, as rgbxseg eval by default"
        )
        return f"{text}; {self.metrics.miou * 100:.2f} mIoU on the {self.config.data.val_split} split, {how}"


def _eval_options(protocol: EvalProtocol) -> list[str]:
    """The ``rgbxseg eval`` options that give ``protocol`` (none for eval's default, single scale)."""
    default, options = SINGLE_SCALE.describe(), []
    for name, value in protocol.describe().items():
        if value != default[name]:
            flag = f"--{name.replace('_', '-')}"
            shown = " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
            options.append(flag if value is True else f"{flag} {shown}")
    return options


class ModelEMA:
    """Exponential moving average of what a model trains (evaluated and saved instead of it).

    Only trainable parameters and the buffers training moves are averaged; frozen parameters and fixed statistics
    are shared with the model, so a frozen backbone is neither copied nor averaged.
    """

    def __init__(self, model: SegmentationModel, decay: float) -> None:
        self.decay = decay
        shared = {name: p for name, p in model.named_parameters() if not p.requires_grad}
        trained = dict(model.trained_buffers())
        shared |= {name: b for name, b in model.named_buffers() if name not in trained}
        self.module = copy.deepcopy(model, memo={id(t): t for t in shared.values()}).eval()
        own = dict(self.module.named_parameters()) | dict(self.module.named_buffers())
        self.pairs = [(own[name], tensor) for name, tensor in [*model.trainable_parameters(), *trained.items()]]
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for ema, current in self.pairs:
            if ema.is_floating_point():
                ema.lerp_(current.to(ema.dtype), 1.0 - self.decay)
            else:
                ema.copy_(current)


def reseed(seed: int, rank: int, epoch: int | None) -> None:
    """Seed torch, numpy and random from (seed, rank, epoch): the streams of an epoch never depend on history.

    ``epoch=None`` seeds model construction (before the first epoch).
    """
    entropy = [seed, rank] if epoch is None else [seed, rank, epoch + 1]
    value = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


class Trainer:
    """Builds model, data, objective, optimiser and schedule from a :class:`TrainConfig` and runs the epochs.

    Everything model-specific comes from the model's contract (:class:`~rgbxseg.models.SegmentationModel`): its
    input spec, outputs and loss terms, frozen parts and parameter groups.
    """

    def __init__(self, config: TrainConfig, ctx: DistributedContext, progress: bool = True) -> None:
        self.config = config
        self.ctx = ctx
        self.progress = progress and ctx.is_main
        self.output_dir = Path(config.output_dir)
        self.checkpoint_path = self.output_dir / CHECKPOINT_NAME
        self.amp_dtype = resolve_dtype(AMP_PRECISIONS[config.amp], ctx.device)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        dataset_meta, _ = read_meta(config.data.root)
        label_set = dataset_meta.label_set(config.data.label_set)
        reseed(config.seed, 0, None)  # model initialisation is identical on every rank
        self.model = self._build_model(get_model_spec(config.model.name).outputs_for(label_set.num_classes))
        self.input_spec, self.x_modality = self._input_spec(dataset_meta)
        self.model.use_input_spec(self.input_spec)
        data = config.data
        if data.batch_size < self.model.min_train_batch:
            raise ConfigError(
                f"{config.model.name} trains with batches of at least {self.model.min_train_batch} samples per process "
                f"(see its min_train_batch), data.batch_size is {data.batch_size}; raise data.batch_size",
                "data.batch_size",
            )
        self.robust = RobustTraining(data.drop_rgb, data.drop_x, data.sensor_failures)
        try:
            self.robust.check(self.input_spec)
        except ValueError as err:
            raise ConfigError(f"data.sensor_failures: {err}", "data.sensor_failures") from None
        self.train_set = self._dataset(config.data.train_split, train=True)
        self.val_set = self._dataset(config.data.val_split, train=False)
        self.metadata = WeightsMetadata(
            model=config.model.name,
            num_classes=self.model.num_label_classes,
            class_names=self.train_set.class_set.names,
            palette=self.train_set.class_set.palette,
            input_spec=self.input_spec,
            dataset=self.train_set.dataset_meta.dataset,
            description=f"trained by rgbxseg train ({config.epochs} epochs, x modality {self.x_modality})",
            extra={"x_modality": self.x_modality},
        )
        self.network: nn.Module = TrainingObjective(self.model)
        if ctx.distributed:
            if config.sync_bn:
                fixed = {name for name, _ in self.model.modules_in_eval_while_training()}
                convert_sync_batchnorm(self.model, ctx.device, keep=fixed)
            device_ids = [ctx.device] if ctx.device.type == "cuda" else None
            # Depthwise-conv weight gradients ([C, 1, k, k]) differ from their bucket views only in the stride of the
            # size-1 dimension, which DDP reports as a layout mismatch although the memory is the same.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            self.network = DistributedDataParallel(self.network, device_ids=device_ids, gradient_as_bucket_view=True)
        self.iterations_per_epoch = len(self.train_set) // (config.data.batch_size * ctx.world_size)
        if self.iterations_per_epoch == 0:
            raise ConfigError(
                f"{config.data.root}: the {config.data.train_split} split has {len(self.train_set)} samples, "
                f"fewer than one global batch ({config.data.batch_size} × {ctx.world_size} processes); "
                "lower data.batch_size"
            )
        self.stages = config.schedule.stages or (StageConfig(config.epochs, config.optim.lr),)
        self._start_stage(0)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
        self.ema = ModelEMA(self.model, config.ema_decay) if config.ema_decay else None
        self.epoch = 0
        self.start_epoch = 0
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.tensorboard: Any = None  # opened by run() once output_dir is this run's

    # --- construction -------------------------------------------------------------------------------------------

    def stage_of(self, epoch: int) -> int:
        """The index of the stage that epoch ``epoch`` (0-based) belongs to."""
        ends = itertools.accumulate(stage.epochs for stage in self.stages)
        return next(index for index, end in enumerate(ends) if epoch < end)

    def _start_stage(self, index: int) -> None:
        """A fresh optimiser at the stage's base learning rate, and its schedule from iteration 0."""
        config, stage = self.config, self.stages[index]
        self.stage = index
        self.optimizer = build_optimizer(self.model, replace(config.optim, lr=stage.lr))
        iterations = stage.epochs * self.iterations_per_epoch
        schedule = config.schedule
        warmup = schedule.warmup_iterations
        warmup = round(schedule.warmup_epochs * self.iterations_per_epoch) if warmup is None else warmup
        self.scheduler = build_scheduler(
            self.optimizer,
            schedule.poly_iterations or iterations + round(schedule.poly_extra_epochs * self.iterations_per_epoch),
            warmup,
            schedule.warmup_start_factor,
            schedule.power,
            schedule.poly_from_start,
            self.iterations_per_epoch if schedule.per_epoch else 1,
        )

    def _build_model(self, num_classes: int) -> SegmentationModel:
        spec = self.config.model
        try:
            model = create_model(
                spec.name,
                num_classes=num_classes,
                weights=spec.weights,
                strict=spec.strict,
                backbone_weights=spec.backbone_weights,
                **spec.kwargs,
            ).to(self.ctx.device)
        except TypeError as err:  # a constructor argument that the variant's builder fixes itself (its backbone)
            if not spec.kwargs:
                raise
            raise ConfigError(f"model.kwargs {spec.kwargs}: {spec.name} cannot take them: {err}") from None
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _input_spec(self, dataset_meta: DatasetMeta) -> tuple[InputSpec, str]:
        """The inputs this run trains on: the model's (or the configured) convention, fed the configured modality."""
        data = self.config.data
        try:
            spec = get_input_spec(data.input_spec) if data.input_spec else self.model.input_spec
        except KeyError as err:
            raise ConfigError(f"data.input_spec: {err.args[0]}") from None
        x_modality = data.x_modality or spec.x.name
        if x_modality != "none":
            spec = resolve_input_spec(spec, dataset_meta, x_modality)
        multiple = spec.multiple
        if any(side % multiple for side in data.crop_size):
            raise ConfigError(
                f"data.crop_size {list(data.crop_size)}: {self.model.model_name} needs multiples of {multiple}"
            )
        return spec, x_modality

    def _dataset(self, split: str, train: bool) -> RGBXDataset:
        data = self.config.data
        transform = (
            TrainAugmentation(
                data.crop_size,
                data.scale_range,
                data.flip_prob,
                data.hsv_jitter,
                colour_jitter_p=data.colour_jitter_p,
                colour_jitter=data.colour_jitter,
                blur_p=data.blur_p,
                blur_sigma=data.blur_sigma,
                seed=self.config.seed,
            )
            if train
            else None
        )
        return RGBXDataset(
            data.root, split, dataset_modalities(self.x_modality), data.label_set, transform, self.input_spec
        )

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional dependency)
        except ImportError as err:
            raise ConfigError(
                "tensorboard: true needs the tensorboard package: pip install 'rgbxseg[tensorboard]'"
            ) from err
        return SummaryWriter(str(self.output_dir / "tensorboard"))

    # --- checkpoints --------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "state_dict_ema": self.ema.module.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "stage": self.stage,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "history": self.history,
            "config": to_dict(self.config),
            "metadata": self.metadata.to_dict(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state["config"]["model"]["name"] != self.config.model.name:
            raise ConfigError(
                f"{self.checkpoint_path} was written by a run of {state['config']['model']['name']}, "
                f"not {self.config.model.name}; resume with the run's own config"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state["state_dict_ema"] is None:
                raise ConfigError(f"{self.checkpoint_path} has no EMA weights; resume with the run's own config")
            self.ema.module.load_state_dict(state["state_dict_ema"])
        self._start_stage(state.get("stage", 0))  # the optimiser and schedule the saved state belongs to
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise ConfigError(
                f"{self.checkpoint_path}: its optimiser state does not fit this config's optimiser ({err}); resume "
                "with the run's own optim.name and optim.param_groups"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration, self.history = state["epoch"], state["iteration"], list(state["history"])
        self.start_epoch = self.epoch

    def _then(self) -> str:
        """How the run carries on after a failed write: from its checkpoint, or from the start if it has none yet."""
        return RESUME if self.checkpoint_path.exists() else "then run the same command again (no checkpoint yet)"

    def _write_checkpoint(self) -> None:
        if self.ctx.is_main:
            save_training_checkpoint(self.checkpoint_path, self._state(), then=self._then())

    # --- the loop -----------------------------------------------------------------------------------------------

    def _loader(self, epoch: int) -> DataLoader:
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.config.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            self.train_set,
            batch_size=self.config.data.batch_size,
            sampler=sampler,
            num_workers=self.config.data.workers,
            drop_last=True,
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
            pin_memory=self.ctx.device.type == "cuda",
        )

    def _check_finite(self, loss: torch.Tensor, epoch: int) -> None:
        finite = torch.isfinite(loss.detach()).to(torch.float32)
        if all_reduce_mean(finite).item() < 1.0:  # every rank stops together
            where = (
                f"the last good checkpoint is {self.checkpoint_path} (epoch {self.epoch})"
                if self.checkpoint_path.exists()
                else "no checkpoint had been written yet"
            )
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at epoch {epoch + 1}, iteration {self.iteration + 1}; training stopped "
                f"and {where}. Resume with --resume and a lower learning rate (--set optim.lr=...), gradient clipping "
                "(--set optim.grad_clip=1.0), or bf16 instead of fp16 (--amp bf16)."
            )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        reseed(self.config.seed, self.ctx.rank, epoch)
        self.network.train()
        config = self.config
        trainable = [p for _, p in self.model.trainable_parameters()]
        loss_sums = torch.zeros(1 + len(self.model.loss_terms), dtype=torch.float64)  # total, then each term
        images, started = 0, time.perf_counter()
        bar = tqdm(
            self._loader(epoch), total=self.iterations_per_epoch, disable=not self.progress,
            desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
        )  # fmt: skip
        for batch in bar:
            rgb, x = model_inputs(batch, self.x_modality, self.ctx.device, self.model.x_channels)
            if self.robust.active:
                rgb, x = self.robust(rgb, x, self.input_spec)
            if config.channels_last:
                rgb, x = (
                    rgb.contiguous(memory_format=torch.channels_last),
                    x.contiguous(memory_format=torch.channels_last),
                )
            target = batch["label"].to(self.ctx.device, non_blocking=True) - 1  # void (label 0) → −1
            with autocast(self.ctx.device, self.amp_dtype):
                terms = self.network(rgb, x, target)
            loss = total_loss(terms)
            self._check_finite(loss, epoch)
            # read once: the finiteness check has already waited for the forward pass
            values = torch.stack([loss, *terms.values()]).detach().float().cpu().double()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if config.optim.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.iteration += 1
            if self.ema is not None:
                self.ema.update()
            loss_sums += values
            images += rgb.shape[0] * self.ctx.world_size
            if self.iteration % config.log_every == 0:
                bar.set_postfix(
                    loss=f"{values[0].item():.4f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                    img_s=f"{images / (time.perf_counter() - started):.2f}",
                )
        seconds = time.perf_counter() - started
        means = (loss_sums / max(self.iterations_per_epoch, 1)).to(self.ctx.device)  # NCCL: on GPU
        means = all_reduce_mean(means).tolist()
        term_means = {f"loss_{name}": value for name, value in zip(self.model.loss_terms, means[1:], strict=True)}
        return {"train_loss": means[0], **term_means, "seconds": seconds, "images_per_second": images / seconds}

    def validate(self) -> SegmentationMetrics:
        model = self.ema.module if self.ema is not None else self.model
        return evaluate(
            model,
            self.val_set,
            num_classes=self.model.num_label_classes,
            class_names=self.metadata.class_names,
            protocol=self.config.eval.protocol(),
            x_modality=self.x_modality,
            batch_size=self.config.data.val_batch_size,
            progress=self.progress,
        )

    def _check_output_dir(self, resume: bool) -> None:
        """Refuse to start a new run where it would replace anything but its own files: ``output_dir`` must be new,
        empty, or a run stopped before its first checkpoint (:data:`CONFIG_HEADER`); a resumed run has its checkpoint
        there (checked as it is read)."""
        if resume:
            return
        if self.checkpoint_path.exists():
            raise OutputExistsError(
                f"{self.output_dir} already holds a run ({self.checkpoint_path}); continue it with --resume or "
                "choose another output_dir"
            )
        entries = self.output_dir.iterdir() if self.output_dir.is_dir() else ()
        found = sorted(p.name for p in entries if not TEMPORARY_NAME.fullmatch(p.name) and p.name != LOCK_NAME)
        if _stopped_before_a_checkpoint(self.output_dir, found):
            log.info("%s: starting over a run that stopped before its first checkpoint", self.output_dir)
        elif found:
            raise OutputExistsError(
                f"{self.output_dir} is not empty ({some_of(found, 3)}) and holds no run to resume ({CHECKPOINT_NAME}); "
                "choose a new or empty output_dir (nothing in it was changed)"
            )

    def _claim_output_dir(self, resume: bool, stack: contextlib.ExitStack) -> None:
        """Make ``output_dir`` this run's without touching anything that is not (:meth:`_check_output_dir`), locked
        for the run so that a second run into it fails at once; then remove the temporary files of writes killed
        mid-way."""
        self._check_output_dir(resume)  # before the lock: a refused folder is left exactly as it was
        stack.enter_context(lock_directory(self.output_dir))
        self._check_output_dir(resume)  # again, now that no other run can write there
        remove_stale_temporaries(self.output_dir)

    def _write_metrics(self) -> None:
        """``metrics.csv``: a row per epoch of the history, rewritten whole."""
        path = self.output_dir / METRICS_NAME
        with atomic_write_path(path, then=self._then()) as tmp, tmp.open("w", newline="") as f:
            columns = list(dict.fromkeys(key for entry in self.history for key in entry))
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

    def _log_epoch(self, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        self._write_metrics()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and value is not None:
                    self.tensorboard.add_scalar(key, value, row["epoch"])
        summary = f"epoch {row['epoch']}/{self.config.epochs}: loss {row['train_loss']:.4f}, lr {row['lr']:.2e}, "
        summary += f"{row['images_per_second']:.2f} img/s"
        if row.get("val_miou") is not None:
            summary += f", val mIoU {100 * row['val_miou']:.2f}, pixel acc {100 * row['val_pixel_accuracy']:.2f}"
        if self.progress:
            tqdm.write(summary)
        log.info(summary)

    def run(self, resume: bool = False) -> TrainResult:
        """Train to ``config.epochs`` (from the checkpoint in ``output_dir`` with ``resume``), holding the folder."""
        if resume:
            self._restore(load_training_checkpoint(self.checkpoint_path))
        with contextlib.ExitStack() as stack:
            if self.ctx.is_main:  # only rank 0 writes, so only it checks (the others would see its first files)
                self._claim_output_dir(resume, stack)
                with atomic_write_path(self.output_dir / CONFIG_NAME) as tmp:
                    tmp.write_text(f"{CONFIG_HEADER}\n{yaml.safe_dump(to_dict(self.config), sort_keys=False)}")
            return self._train()

    def _train(self) -> TrainResult:
        config = self.config
        if self.ctx.is_main:
            if self.history:  # resumed: back to the checkpoint's epochs (a kill after it may have logged more)
                self._write_metrics()
            if config.tensorboard:
                self.tensorboard = self._tensorboard()
        metrics = None
        for epoch in range(self.epoch, config.epochs):
            if self.stage_of(epoch) != self.stage:
                self._start_stage(self.stage_of(epoch))
            stats = self._train_epoch(epoch)
            self.epoch = epoch + 1
            last = self.epoch == config.epochs
            due = (
                config.eval.every_epochs
                and self.epoch % config.eval.every_epochs == 0
                and self.epoch > config.eval.start_after_epoch
            )
            metrics = self.validate() if (due or last) else None
            self.history.append(
                {
                    "epoch": self.epoch,
                    **({"stage": self.stage + 1} if len(self.stages) > 1 else {}),
                    "iteration": self.iteration,
                    "lr": self.scheduler.get_last_lr()[0],
                    **stats,
                    "val_miou": metrics.miou if metrics else None,
                    "val_pixel_accuracy": metrics.pixel_accuracy if metrics else None,
                    "val_mean_accuracy": metrics.mean_accuracy if metrics else None,
                }
            )
            if last or self.epoch % config.checkpoint_every == 0:
                self._write_checkpoint()
            self._log_epoch(self.history[-1])  # after the checkpoint: metrics.csv never holds an epoch it lost
        if metrics is None and self.history:  # resumed after the last epoch: evaluate what was trained
            metrics = self.validate()
        return self._finish(metrics)

    def _finish(self, metrics: SegmentationMetrics | None) -> TrainResult:
        weights = self.output_dir / WEIGHTS_NAME
        final = self.ema.module if self.ema is not None else self.model
        final.weights_metadata = self.metadata
        if self.ctx.is_main:
            save_weights(final, weights, self.metadata)
            if metrics is not None:
                with atomic_write_path(self.output_dir / "metrics_final.txt") as tmp:
                    tmp.write_text(metrics.table() + "\n")
            self._plot_curves()
            if self.tensorboard is not None:
                self.tensorboard.close()
        speeds = [row["images_per_second"] for row in self.history]
        return TrainResult(
            model=final,
            output_dir=self.output_dir,
            weights=weights,
            checkpoint=self.checkpoint_path,
            metrics=metrics,
            epochs=self.epoch,
            iterations=self.iteration,
            images_per_second=float(np.median(speeds)) if speeds else math.nan,
            config=self.config,
            start_epoch=self.start_epoch,
            history=self.history,
        )

    def _plot_curves(self) -> None:
        try:
            plot_training_curves(self.history, self.output_dir / "curves.png")
        except ImportError as err:
            log.warning("no curves.png: %s", err)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train as configured; under ``torchrun`` every process calls this and rank 0 writes the files."""
    joined_here = not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(config.device)
    try:
        return Trainer(config, ctx, progress).run(resume=resume)
    finally:
        if joined_here:
            shutdown_distributed()
