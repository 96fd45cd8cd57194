"""One dataset class over the canonical layout, for every prepared or imported dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..normalization import ASYMFORMER_TRAIN, Normalization
from .errors import DatasetError
from .layout import SAMPLE_INFO_FILE, ModalitySpec, read_json, read_meta, read_sample, read_split_list
from .transforms import Sample, Transform


class RGBXDataset(Dataset):
    """Samples of one split of a canonical dataset as normalised tensors.

    Each item is a dict: ``rgb`` float32 (3, H, W), one float32 (C, H, W) entry per requested modality (metric
    depth normalised with ``normalization``, other modalities with the normalisation their ``meta.json`` entry
    declares), ``label`` int64 (H, W) with the canonical values (0 = void, 1..K) and ``id`` (the stem).
    ``transform`` runs on the raw numpy sample (uint8 RGB, uint16 mm depth, integer labels) before normalisation,
    e.g. :class:`~rgbxseg.data.transforms.TrainAugmentation`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        modalities: Sequence[str] = ("depth",),
        label_set: str | None = None,
        transform: Transform | None = None,
        normalization: Normalization = ASYMFORMER_TRAIN,
    ) -> None:
        self.root = Path(root)
        self.dataset_meta, self.meta = read_meta(self.root)
        self.split = split
        self.ids = read_split_list(self.root, split)
        if "rgb" in modalities:
            raise DatasetError("'rgb' is always loaded; list only the extra modalities, e.g. modalities=('depth',)")
        self.modalities = tuple(modalities)
        self._specs = {name: self.dataset_meta.modality(name) for name in self.modalities}
        self.label_set = self.dataset_meta.default_label_set if label_set is None else str(label_set)
        self.class_set = self.dataset_meta.label_set(self.label_set).class_set
        self.transform = transform
        self.normalization = normalization
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

    def _normalize(self, spec: ModalitySpec, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        if spec.encoding == "metric_mm":
            return self.normalization.normalize_depth(tensor)
        channel_normalization = spec.channel_normalization
        if channel_normalization is None:
            raise DatasetError(f"{self.root}: modality {spec.dir!r} declares no normalisation")
        return channel_normalization.apply(tensor)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.to_tensors(self.load(index))

    def to_tensors(self, sample: Sample) -> dict[str, Any]:
        """A loaded sample (:meth:`load`) → transformed, normalised tensors, as indexing returns them."""
        if self.transform is not None:
            sample = self.transform(sample)
        rgb = torch.from_numpy(np.ascontiguousarray(sample["rgb"])).permute(2, 0, 1)
        item: dict[str, Any] = {"rgb": self.normalization.normalize_rgb(rgb)}
        item |= {name: self._normalize(spec, sample[name]) for name, spec in self._specs.items()}
        item["label"] = torch.from_numpy(np.ascontiguousarray(sample["label"]).astype(np.int64))
        item["id"] = sample["id"]
        return item
