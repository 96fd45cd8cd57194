"""One dataset class over the canonical layout, for every prepared or imported dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..inputs import DEFAULT_RGBD, InputSpec, ModalityInput
from .errors import DatasetError
from .layout import SAMPLE_INFO_FILE, DatasetMeta, read_json, read_meta, read_sample, read_split_list
from .transforms import Sample, Transform


def _declared_input(meta: DatasetMeta, name: str, spec: InputSpec, channels: int | None = None) -> ModalityInput:
    """How stored modality ``name`` is normalised: by the input of ``spec`` that reads it (or one with the same
    encoding, e.g. raw depth like depth), else as the dataset declares; ``channels`` tiles it for a network."""
    stored = meta.modality(name)
    try:
        known = spec.for_modality(name, stored.encoding)
        if known is not None:
            return replace(known, name=name, encoding=stored.encoding, channels=channels or known.channels)
        if stored.channel_normalization is None:
            raise ValueError(f"{stored.encoding} modality {name!r} declares no normalisation and {spec.name} has none")
        return ModalityInput(name, stored.encoding, channels or stored.channels, stored.channel_normalization)
    except ValueError as err:
        raise DatasetError(f"dataset {meta.dataset!r}: {err}") from None


def resolve_input_spec(spec: InputSpec, meta: DatasetMeta, x_modality: str) -> InputSpec:
    """The input spec for feeding modality ``x_modality`` of a dataset to a network declared with ``spec``.

    ``spec`` itself when it reads that modality (its encoding must match the stored one); otherwise ``spec`` with its
    X input replaced: the dataset's modality, normalised as ``meta.json`` declares (or like a ``spec`` input of the
    same encoding) and tiled to the network's X channels. Weights trained this way record the result.
    """
    if x_modality == spec.x.name:
        _declared_input(meta, x_modality, spec)  # checks the stored encoding
        return spec
    return spec.with_x(_declared_input(meta, x_modality, spec, spec.x.channels))


class RGBXDataset(Dataset):
    """Samples of one split of a canonical dataset as normalised tensors.

    Each item is a dict: ``rgb`` float32 (3, H, W), one float32 (C, H, W) entry per requested modality,
    ``label`` int64 (H, W) with the canonical values (0 = void, 1..K) and ``id`` (the stem). Modalities are normalised
    (and tiled to its channels) as ``input_spec`` declares for them — by default the RGB-D convention
    :data:`~rgbxseg.inputs.DEFAULT_RGBD` — and other modalities as their ``meta.json`` entry declares.
    ``modalities`` lists the modalities besides RGB (default: the X modality of ``input_spec``).
    ``transform`` runs on the raw numpy sample (uint8 RGB, uint16 mm depth, integer labels) before normalisation,
    e.g. :class:`~rgbxseg.data.transforms.TrainAugmentation`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        modalities: Sequence[str] | None = None,
        label_set: str | None = None,
        transform: Transform | None = None,
        input_spec: InputSpec = DEFAULT_RGBD,
    ) -> None:
        self.root = Path(root)
        self.dataset_meta, self.meta = read_meta(self.root)
        self.split = split
        self.ids = read_split_list(self.root, split)
        modalities = (input_spec.x.name,) if modalities is None else tuple(modalities)
        if "rgb" in modalities:
            raise DatasetError("'rgb' is always loaded; list only the extra modalities, e.g. modalities=('depth',)")
        self.modalities = modalities
        self.input_spec = input_spec
        self._inputs = {name: _declared_input(self.dataset_meta, name, input_spec) for name in ("rgb", *modalities)}
        self.label_set = self.dataset_meta.default_label_set if label_set is None else str(label_set)
        self.class_set = self.dataset_meta.label_set(self.label_set).class_set
        self.transform = transform
        info_path = self.root / SAMPLE_INFO_FILE
        self.sample_info: dict[str, Any] = read_json(info_path) if self.dataset_meta.has_sample_info else {}

    @property
    def num_classes(self) -> int:
        return self.class_set.num_classes

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        """The raw, checked sample (numpy arrays as stored) before transform and normalisation."""
        stem = self.ids[index]
        arrays, labels = read_sample(
            self.root,
            self.dataset_meta,
            stem,
            modalities=("rgb", *self.modalities),
            label_sets=(self.label_set,),
            listed_in=f"{self.split}.txt",
        )
        return {**arrays, "label": labels[self.label_set], "id": stem}

    def _normalize(self, name: str, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return self._inputs[name].normalize(tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.to_tensors(self.load(index))

    def to_tensors(self, sample: Sample) -> dict[str, Any]:
        """A loaded sample (:meth:`load`) → transformed, normalised tensors, as indexing returns them."""
        if self.transform is not None:
            sample = self.transform(sample)
        item: dict[str, Any] = {name: self._normalize(name, sample[name]) for name in self._inputs}
        item["label"] = torch.from_numpy(np.ascontiguousarray(sample["label"]).astype(np.int64))
        item["id"] = sample["id"]
        return item
