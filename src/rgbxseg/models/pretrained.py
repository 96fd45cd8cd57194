"""Pretrained checkpoints a model can start from, described as data. Nothing is ever downloaded: the user names the
file, and rgbxseg checks it against what is written here."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..inputs import ModalityInput

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PretrainedSource:
    """A published checkpoint that initialises part of a model.

    Attributes:
        file_name: the file as its authors publish it (e.g. ``mit_b0.pth``).
        publisher: who publishes it and where it is described (no URL is fetched).
        covers: which part of the model it fills, in words.
        trained_on: the input it was pretrained on and how that input was normalised.
        sha256: digest of the published file where known; a file with another digest is refused.
        frozen: whether the method keeps these weights frozen while training (the model's ``frozen`` declaration
            must agree; the contract tests check it).
    """

    file_name: str
    publisher: str
    covers: str
    trained_on: ModalityInput | None = None
    sha256: str | None = None
    frozen: bool = False

    def describe(self) -> str:
        state = "frozen" if self.frozen else "fine-tuned"
        digest = f", sha256 {self.sha256}" if self.sha256 else ", sha256 not published"
        trained_on = f"; pretrained on {self.trained_on.describe()}" if self.trained_on else ""
        return f"{self.file_name} ({self.publisher}{digest}): {self.covers}{trained_on}; {state}"


@dataclass(frozen=True)
class BackboneMapping:
    """How a pretrained checkpoint initialises part of a model.

    ``remap`` renames the checkpoint's keys to the model's (dropping what it does not use); every model key that
    ``covers`` matches must then be provided, so a truncated or wrong file cannot half-initialise a branch.
    """

    remap: Callable[[Mapping[str, torch.Tensor]], StateDict]
    covers: re.Pattern[str]
    source: PretrainedSource
