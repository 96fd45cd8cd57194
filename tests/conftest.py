"""Shared fixtures: the official AsymFormer reference outputs and the rule that regenerates its weights."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

import rgbxseg
from rgbxseg.data.synthetic import generate_synthetic_dataset
from rgbxseg.models.registry import describe_model

DATA = Path(__file__).parent / "data"
CPU_TEST_PARAMS = 60_000_000
"""Registered models up to this size run forward/backward in the tests; the larger variants of a family share the
smaller ones' code (their counts and declarations are checked without running them)."""
SMALL_MODELS = [name for name in rgbxseg.list_models() if describe_model(name)["params"] <= CPU_TEST_PARAMS]
ASYMFORMER_MODELS = [name for name in rgbxseg.list_models() if name.startswith("asymformer")]
BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
MODEL = "asymformer_b0_t_cat"
"""The cheapest registered model, for tests whose logic is model-independent (inference, reliability)."""


@pytest.fixture(scope="module")
def model() -> rgbxseg.SegmentationModel:
    """A seeded :data:`MODEL` in eval mode (module-scoped: built once per test file)."""
    torch.manual_seed(0)
    return rgbxseg.create_model(MODEL).eval()


@pytest.fixture(scope="module")
def weights(model: rgbxseg.SegmentationModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`model` saved as safetensors with metadata, as a user's ``--weights``."""
    return rgbxseg.save_weights(model, tmp_path_factory.mktemp("weights") / "model.safetensors")


def regenerate_fixture_weights(
    keys: list[str], shapes: list[list[int]], seed: int, relative_position_index: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The weight rule of the reference fixtures (``rgbxseg-fill-v1``): one generator, draws in the stored key order;
    Swin's index buffers take the given canonical index and draw nothing."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape_list in zip(keys, shapes, strict=True):
        shape = tuple(shape_list)
        if key.endswith("relative_position_index"):
            state[key] = relative_position_index.clone()
            continue
        if key.endswith("num_batches_tracked"):
            t = torch.zeros((), dtype=torch.int64)
        elif key.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith(".gamma"):
            t = 0.05 + 0.35 * torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.05 * torch.randn(shape, generator=g)
        if t.is_floating_point():
            t = t.half().float()
        state[key] = t
    return state


@pytest.fixture(scope="session")
def reference() -> dict:
    """Inputs and logits of the official model (CPU fp32), see tests/data/README.md."""
    return torch.load(DATA / "asymformer_b0t_public_fixture.pt", weights_only=True)


@pytest.fixture(scope="session")
def reference_state(reference: dict) -> dict[str, torch.Tensor]:
    return regenerate_fixture_weights(reference["keys"], reference["shapes"], reference["weight_seed"])


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((DATA / "asymformer_b0t_state_dict_manifest.json").read_text())


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synthetic_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic RGB-D dataset (24 train / 8 test frames of 96×128) in the canonical layout."""
    root = tmp_path_factory.mktemp("scenes") / "synthetic"
    return generate_synthetic_dataset(root, num_train=24, num_test=8, height=96, width=128, seed=3, progress=False)


@pytest.fixture
def benchmark_script(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import ``benchmarks/<name>.py`` as its command line runs it: its folder on the path (for ``report``), and the
    module importable by name (the worker processes of ``inference_speed.py`` import it)."""

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load
