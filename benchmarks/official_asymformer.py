"""The official AsymFormer implementation, imported from a checkout the user names, with the same weights as ours.

    git clone https://github.com/Fourier7754/AsymFormer /path/to/AsymFormer
    python benchmarks/inference_speed.py --official /path/to/AsymFormer

The official ``src/AsymFormer.py`` imports timm (``DropPath``, ``trunc_normal_``, ``to_2tuple``, ``register_model``)
and thop (``profile``) at module level. Where those packages cannot be imported (timm needs torchvision, which does
not import with every torch build), :func:`load_official` installs stand-ins for exactly those names before importing:
``DropPath`` is the identity in eval mode and the others only initialise weights, register names or count FLOPs, so
the timed forward pass is the official code's own. The result records which stand-ins were used.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import types
from pathlib import Path

import torch
from torch import nn

import rgbxseg
from rgbxseg.models.layers import DropPath


def _to_2tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _register_model(function: object) -> object:
    return function


def _profile(*args: object, **kwargs: object) -> tuple[int, int]:
    raise RuntimeError("thop is replaced by a stand-in in this benchmark; FLOPs are counted by rgbxseg bench")


def _stand_ins() -> dict[str, dict[str, object]]:
    """Module name → the attributes the official code takes from it."""
    layers = {"DropPath": DropPath, "trunc_normal_": nn.init.trunc_normal_, "to_2tuple": _to_2tuple}
    return {
        "timm": {},
        "timm.models": {"register_model": _register_model},
        "timm.models.layers": layers,
        "timm.models.registry": {"register_model": _register_model},
        "thop": {"profile": _profile},
    }


def _install_missing_stand_ins() -> list[str]:
    """Stand-ins for timm/thop where the real packages do not import; returns the names replaced."""
    replaced = []
    for top in ("timm", "thop"):
        try:
            importlib.import_module(top)
        except Exception:  # timm raises whatever torchvision raises on a mismatched torch
            for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
                del sys.modules[name]
            for name, attributes in _stand_ins().items():
                if name == top or name.startswith(top + "."):
                    module = types.ModuleType(name)
                    module.__dict__.update(attributes)
                    sys.modules[name] = module
            replaced.append(top)
    return replaced


def load_official(
    checkout: Path, weights: Path | None = None, num_classes: int = 40
) -> tuple[nn.Module, nn.Module, list[str]]:
    """(official B0_T, rgbxseg's asymformer_b0_t with the same weights, stand-ins used).

    Without ``weights`` the official model is seeded and randomly initialised (no ImageNet download) and its state
    dict goes through a ``.pth`` file into :func:`rgbxseg.create_model` exactly as a released checkpoint would. With
    ``weights`` (an rgbxseg AsymFormer B0-T file, e.g. the demo's), the official model loads their state dict, whose
    names are the official ones.
    """
    source = checkout / "src" / "AsymFormer.py"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: --official must name a checkout of Fourier7754/AsymFormer")
    replaced = _install_missing_stand_ins()
    sys.path.insert(0, str(checkout))
    try:
        official_module = importlib.import_module("src.AsymFormer")
    finally:
        sys.path.remove(str(checkout))
    torch.manual_seed(0)
    if weights is not None:
        ours = rgbxseg.load_model(weights, "asymformer_b0_t").eval()
        official = official_module.B0_T(ours.num_classes, pretrained_backbone=False).eval()
        official.load_state_dict(ours.state_dict(), strict=True)
        return official, ours, replaced
    official = official_module.B0_T(num_classes, pretrained_backbone=False).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "official.pth"
        torch.save({"state_dict": official.state_dict()}, path)
        ours = rgbxseg.create_model("asymformer_b0_t", weights=path).eval()
    return official, ours, replaced
