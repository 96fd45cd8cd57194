"""Checkpoints of the models: official releases, pretrained backbones and our self-describing format.

* :func:`read_checkpoint` reads a ``.safetensors`` file (with our JSON metadata) or a PyTorch pickle with
  ``weights_only=True`` — a weights file can never run code — and unwraps the usual containers.
* :func:`load_weights` fits a checkpoint to a model: wrapper prefixes stripped, legacy layouts converted *before*
  matching (the official loader filters first and silently loses the SCC keys), then a strict load that reports every
  missing, unexpected and mis-shaped key. ``strict=False`` loads what fits and returns the report.
* :func:`save_weights` writes safetensors plus :class:`~rgbxseg.metadata.WeightsMetadata` (model, classes, palette,
  input spec).
* :func:`load_backbone_weights` initialises a part of a model from a pretrained checkpoint (ConvNeXt, SegFormer MiT).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize_safetensors

from ..classes import CLASS_SETS, ClassSet, voc_palette
from ..io import atomic_write_path, file_digest
from ..metadata import WeightsMetadata
from .base import SegmentationModel
from .pretrained import StateDict
from .registry import get_model_spec

PathLike = str | os.PathLike[str]
METADATA_KEY = "rgbxseg"
INT8_METADATA_KEY = "rgbxseg_int8"
"""The metadata block that marks an int8 model (:mod:`rgbxseg.models.quantize`): float weights plus calibration."""
_WRAPPER_PREFIXES = ("module.", "model.")


class CheckpointError(ValueError):
    """A weights file that cannot be read or is not a checkpoint; the message names the file."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not fit the model; the message lists them."""


def default_metadata(model: SegmentationModel, dataset: str = "") -> WeightsMetadata:
    """Metadata for a model without any: its input spec and the class set with its class count."""
    k = model.num_label_classes
    class_set = next((c for c in CLASS_SETS.values() if c.num_classes == k), None)
    if class_set is None:
        class_set = ClassSet("custom", tuple(f"class_{i}" for i in range(1, k + 1)), tuple(voc_palette(k + 1)))
    return WeightsMetadata(
        model=model.model_name,
        num_classes=k,
        class_names=class_set.names,
        palette=class_set.palette,
        input_spec=model.input_spec,
        dataset=dataset or class_set.name,
    )


@dataclass
class LoadReport:
    """What happened when a checkpoint was fitted to a model."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    loaded_params: int = 0

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20, separator: str = "\n  ") -> str:
        """What fit and what did not, a line for each kind of problem (``separator="; "``: all on one line)."""
        parts = [f"{self.source}: {len(self.loaded)} tensors ({self.loaded_params:,} values) fit the model"]
        for title, items in (
            ("missing from the checkpoint", self.missing),
            ("unexpected in the checkpoint", self.unexpected),
            ("shape differs (checkpoint vs model)", [f"{k}: {list(a)} vs {list(b)}" for k, a, b in self.mismatched]),
        ):
            if items:
                shown = ", ".join(items[:limit]) + (f", … (+{len(items) - limit} more)" if len(items) > limit else "")
                parts.append(f"{len(items)} {title}: {shown}")
        return separator.join(parts)


# --- reading -----------------------------------------------------------------------------------------------------


def _head(path: Path) -> bytes:
    """The first bytes, which tell the formats apart (the suffix does not: torch.load hands any ``.safetensors`` name
    to safetensors, whatever the content)."""
    with path.open("rb") as f:
        return f.read(9)


def _is_safetensors(path: Path) -> bool:
    """A little-endian header length (below 4 GiB: the upper bytes are zero) and the JSON header's ``{``; a file cut
    short still counts, so that safetensors says how it is damaged."""
    head = _head(path)
    return head[4:8] == bytes(4) and head[8:9] == b"{"


_TORCH_HEADS = (b"PK\x03\x04", b"\x80")
"""torch.save's zip archive, and the pickle protocol opcode that starts the legacy format."""


def _reason(err: BaseException) -> str:
    """The first sentence of a library's message on one line (torch's run over paragraphs)."""
    return " ".join(str(err).split()).split(". ")[0] or type(err).__name__


def _damaged(path: Path, kind: str, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable {kind} ({_reason(err)}): it is truncated or corrupt; download or save it again"
    )


def parse_metadata(raw: str | Mapping[str, Any] | None, path: Path) -> WeightsMetadata | None:
    """Our metadata block (JSON text in safetensors, a dict in PyTorch files), or None when there is none."""
    if not raw:
        return None
    try:
        return WeightsMetadata.from_dict(json.loads(raw) if isinstance(raw, str) else raw)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: the rgbxseg metadata block is corrupt ({err})") from err


def read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    """All tensors and the raw metadata block of a safetensors file, with a one-line error when it is damaged."""
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
            raw = dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise _damaged(path, "safetensors file", err) from err
    return state, raw


def _read_safetensors(path: Path) -> tuple[StateDict, WeightsMetadata | None]:
    state, raw = read_safetensors(path)
    if INT8_METADATA_KEY in raw:
        raise CheckpointError(
            f"{path} is an int8 model (made by rgbxseg quantize): run it with rgbxseg predict --weights {path} or "
            "Segmenter.from_int8; training, evaluation and export take the float weights it was quantised from"
        )
    return state, parse_metadata(raw.get(METADATA_KEY), path)


_MULTIARRAY = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
NUMPY_SCALAR_GLOBALS = [
    (_MULTIARRAY.scalar, "numpy._core.multiarray.scalar"),
    (_MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType,
]
"""What a checkpoint holding a numpy float64 (GeminiFusion's ``best_val``) needs, under its numpy 1 and 2 names:
numpy's scalar constructor and the float64 dtype, which rebuild a number from bytes and run no other code."""


def read_torch_file(path: Path) -> Any:
    """``torch.load`` of tensors, containers and numpy scalars only (``weights_only=True``), with one-line errors that
    name the file and the fix; a file that is no PyTorch file at all is refused before torch sees it."""
    head = _head(path)
    if not head.startswith(_TORCH_HEADS):
        found = f"it starts with {head!r}" if head else "it is empty"
        raise CheckpointError(
            f"{path}: neither a safetensors file nor a PyTorch checkpoint ({found}); give the weights file itself "
            "(.safetensors, .pth, .pt), or download or save it again if it is damaged"
        )
    try:
        with path.open("rb") as f, torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        code = re.search(r"GLOBAL (\S+)", str(err))
        if code is None:
            raise _damaged(path, "PyTorch checkpoint", err) from err
        raise CheckpointError(
            f"{path} contains Python objects besides tensors ({code[1]}), and unpickling them could run code, so "
            f"rgbxseg refuses to. If you trust the file, re-save only its tensors once, e.g. "
            f"`torch.save(torch.load(path, weights_only=False)['state_dict'], 'clean.pth')`"
        ) from err
    except (RuntimeError, EOFError, ValueError, IndexError, struct.error) as err:  # what torch raises for cut files
        raise _damaged(path, "PyTorch checkpoint", err) from err


def _unwrap_container(obj: Any, path: Path, use_ema: bool) -> tuple[Mapping[str, Any], Any]:
    """Pick the state dict out of the usual containers; returns (state, raw metadata or None)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors or a training checkpoint, got {type(obj).__name__}")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else None
    if use_ema:
        if "state_dict_ema" not in obj:
            raise CheckpointError(f"{path}: EMA weights were requested but the file has no 'state_dict_ema'")
        return obj["state_dict_ema"], metadata
    for key in ("state_dict", "model", "segmenter"):
        if isinstance(obj.get(key), Mapping):
            return obj[key], metadata
    return obj, metadata


def read_checkpoint(path: PathLike, *, use_ema: bool = False) -> tuple[StateDict, WeightsMetadata | None]:
    """Read a checkpoint file into (state dict, metadata or None).

    Accepts our safetensors files, and PyTorch files holding a bare state dict or a dict with ``state_dict``
    (official AsymFormer), ``model`` (ImageNet ConvNeXt and Swin, our training checkpoints), ``segmenter`` (released
    GeminiFusion files) or ``state_dict_ema``
    (``use_ema=True``). Keys ending in ``_extra_state`` (Transformer-Engine) are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if _is_safetensors(path):
        state, metadata = _read_safetensors(path)
    else:
        state, raw_metadata = _unwrap_container(read_torch_file(path), path, use_ema)
        metadata = parse_metadata(raw_metadata, path)
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors[:5]} are not tensors; this is not a state dict")
    return {k: v for k, v in state.items() if not k.endswith("_extra_state")}, metadata


def check_model_name(metadata: WeightsMetadata | None, model_name: str, source: str) -> None:
    """Refuse weights whose metadata names another registered model."""
    if metadata is not None and metadata.model != model_name:
        raise CheckpointMismatchError(
            f"{source} holds weights of {metadata.model!r}, not {model_name!r}; build it with "
            f"rgbxseg.create_model({metadata.model!r}, weights=...), or leave out --model: the file names its model"
        )


# --- fitting to a model ------------------------------------------------------------------------------------------


def _matching_fraction(state: Mapping[str, torch.Tensor], model_keys: set[str]) -> float:
    return sum(k in model_keys for k in state) / max(len(state), 1)


RenameRules = Sequence[tuple[re.Pattern[str], str]]


def rename_key(key: str, rules: RenameRules) -> str:
    """Apply every (pattern, replacement) substitution in turn: how checkpoint layouts are mapped onto each other."""
    for pattern, replacement in rules:
        key = pattern.sub(replacement, key)
    return key


def fit_state_dict(model: SegmentationModel, state: Mapping[str, torch.Tensor]) -> StateDict:
    """Strip DataParallel/wrapper prefixes and convert legacy layouts, before any matching against the model.

    A prefix is stripped when every key carries it, or when stripping makes at least half of the keys match.
    """
    model_keys = set(model.state_dict())
    for prefix in _WRAPPER_PREFIXES:
        carriers = sum(k.startswith(prefix) for k in state)
        if not carriers:
            continue
        stripped = {k.removeprefix(prefix): v for k, v in state.items()}
        if carriers == len(state) or _matching_fraction(model.convert_checkpoint(stripped), model_keys) >= 0.5:
            state = stripped
    return model.convert_checkpoint(dict(state))


def compare_state_dict(model: SegmentationModel, state: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    own = model.state_dict()
    report = LoadReport(source)
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            report.loaded.append(key)
            report.loaded_params += value.numel()
    report.missing = [k for k in own if k not in state]
    return report


def load_weights(
    model: SegmentationModel,
    source: PathLike | Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    use_ema: bool = False,
    name: str = "state dict",
) -> LoadReport:
    """Load a checkpoint (path or state dict) into ``model``.

    ``strict=True`` (default) raises :class:`CheckpointMismatchError` listing every missing, unexpected and
    mis-shaped key, and loads nothing. ``strict=False`` loads the tensors that fit and returns the report.
    ``name`` is what messages call a state dict (e.g. the file it was read from).
    """
    if isinstance(source, Mapping):
        state, metadata = dict(source), None
    else:
        state, metadata = read_checkpoint(source, use_ema=use_ema)
        name = str(source)
    if strict:
        check_model_name(metadata, model.model_name, name)
    state = fit_state_dict(model, state)
    report = compare_state_dict(model, state, name)
    if strict and not report.complete:
        raise CheckpointMismatchError(
            report.describe(limit=5, separator="; ") + f". Nothing was loaded into {model.model_name}: check the "
            "model name (--model) and num_classes, or pass strict=False to load only the tensors that fit"
        )
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report


def infer_num_classes(model_name: str, state: Mapping[str, torch.Tensor]) -> int | None:
    """Class count from the classifier weight of a checkpoint (any wrapper prefix), or None."""
    spec = get_model_spec(model_name)
    with torch.device("meta"):
        key = spec.builder(num_classes=spec.default_num_classes).classifier_key
    for name, value in state.items():
        if name == key or name.endswith("." + key):
            return int(value.shape[0])
    return None


def load_backbone_weights(model: SegmentationModel, path: PathLike, part: str) -> LoadReport:
    """Initialise one part of ``model`` from its pretrained checkpoint (e.g. ``part="rgb"``, see
    :meth:`~rgbxseg.models.SegmentationModel.pretrained_backbone_mappings`).

    A file whose SHA-256 differs from the published one is refused; every model key of the part must come from the
    file with the right shape, else nothing is loaded.
    """
    mappings = model.pretrained_backbone_mappings()
    if part not in mappings:
        raise ValueError(
            f"{model.model_name} has no pretrained backbone part {part!r}; parts: {', '.join(mappings) or 'none'}"
        )
    mapping = mappings[part]
    expected = f"{mapping.source.file_name} ({mapping.source.publisher})"
    if mapping.source.sha256 is not None and (digest := file_digest(path)) != mapping.source.sha256:
        raise CheckpointMismatchError(
            f"{path} has SHA-256 {digest}, not that of the published {expected}: {mapping.source.sha256}. "
            "Use the original file."
        )
    state, _ = read_checkpoint(path)
    mapped = mapping.remap(state)
    if not mapped:
        raise CheckpointError(f"{path}: no tensor maps onto the {part} part; expected {expected}")
    report = compare_state_dict(model, mapped, str(path))
    report.missing = [k for k in report.missing if mapping.covers.match(k)]
    if not report.complete:
        raise CheckpointMismatchError(
            report.describe(limit=5, separator="; ") + f". Expected {expected} matching {model.model_name}. "
            "Nothing was loaded."
        )
    model.load_state_dict(mapped, strict=False)
    return report


# --- writing -----------------------------------------------------------------------------------------------------


def save_weights(
    model: SegmentationModel,
    path: PathLike,
    metadata: WeightsMetadata | None = None,
    *,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors with our metadata block, atomically (temp file + rename).

    ``extra_tensors`` and ``extra_metadata`` are stored alongside (the int8 form's calibration)."""
    metadata = metadata or model.weights_metadata or default_metadata(model)
    if metadata.model != model.model_name or metadata.num_classes != model.num_label_classes:
        raise ValueError(
            f"metadata describes {metadata.model} with {metadata.num_classes} classes, "
            f"but the model is {model.model_name} with {model.num_label_classes}"
        )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in {**model.state_dict(), **(extra_tensors or {})}.items()}
    block = {**(extra_metadata or {}), METADATA_KEY: json.dumps(metadata.to_dict()), "format": "pt"}
    # serialised here and written by Python: safetensors' own writer makes a mode-0600 file and reports a full disk
    # as a SafetensorError; this way the file gets the umask's mode like every other output, and a failed write is an
    # OSError that names the file
    data = serialize_safetensors(tensors, metadata=block)
    with atomic_write_path(path, size=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)
