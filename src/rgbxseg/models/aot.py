"""The compiled inference form, ahead of time and cached across processes.

``compile_for_inference(model)`` runs :func:`~rgbxseg.models.optimize.optimize_for_inference`'s form through
AOTInductor: per input shape, the network is exported (``torch.export``), compiled with Inductor's weight freezing
(weights folded as constants, convolutions and GEMMs pre-packed for oneDNN/MKL and fused with their epilogues) into a
self-contained package, and that package is what runs. Packages are written to a cache folder, named by everything
that decides their code (the weights' digest, input shape and dtype, output, precision, torch version and CPU
capability), so the next process that needs the same shape loads its package in well under a second instead of
compiling again (a minute or more). A package that cannot be read is compiled again; one from another torch or CPU is
never found, because those are part of its name.

The cache folder: ``cache_dir``, else ``$RGBXSEG_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/rgbxseg/compiled`` (by default
``~/.cache/rgbxseg/compiled``). Packages embed the frozen weights, so each takes about the size of the weights; delete
the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast

import torch
from torch import nn
from tqdm import tqdm

from .base import SegmentationModel
from .optimize import InferenceModel, compiled_attention_dtype, optimize_for_inference

COMPILE_CACHE_ENV = "RGBXSEG_COMPILE_CACHE"
COMPILE_MODES = ("auto", "on", "off")
AUTO_COMPILE_MIN_FRAMES = 100
"""``--compile auto`` compiles runs of at least this many frames (and camera streams): a first compile costs about
as much as 50–100 frames of the eager form, a cached one nothing, and every frame after it runs about 2× faster."""
CXX_COMPILERS = ("c++", "g++", "clang++")
PACKAGE_FORMAT = 1
"""Part of every package's name: bump it when what a package computes changes for the same inputs."""

ShapeKey = tuple[tuple[int, ...], tuple[int, ...], torch.dtype, torch.dtype, str]
"""What a package is compiled for: the shapes and dtypes of both inputs, and their device."""
Log = Callable[[str], None]


class GraphTransform(Protocol):
    """A rewrite of the network at one input shape before it is compiled (int8 quantisation:
    :class:`rgbxseg.models.quantize.Int8Calibration`). ``identity`` names what it does to the computation: it is part
    of every package's name, so packages of different rewrites never mix."""

    identity: str

    def __call__(self, network: nn.Module, rgb: torch.Tensor, x: torch.Tensor) -> nn.Module: ...


def default_compile_cache() -> Path:
    """Where compiled packages are kept unless a caller names a folder (see the module docstring)."""
    if folder := os.environ.get(COMPILE_CACHE_ENV):
        return Path(folder).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rgbxseg" / "compiled"


def compiler_available() -> bool:
    """Whether a C++ compiler is on the PATH (Inductor builds its CPU kernels and packages with it)."""
    return any(shutil.which(name) for name in CXX_COMPILERS)


def should_compile(mode: str, *, frames: int | None, stream: bool, device: str) -> tuple[bool, str]:
    """Whether ``--compile MODE`` compiles a run of ``frames`` frames (None: unknown length; ``stream``: a camera
    that runs until stopped) on ``device``, and why. ``on`` without a C++ compiler is an error naming the fix."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    compiler = mode == "off" or compiler_available()
    if mode == "on" and not compiler:
        raise RuntimeError(
            f"--compile needs a C++ compiler for Inductor (none of {', '.join(CXX_COMPILERS)} is on the PATH): install "
            "one (Debian/Ubuntu: apt install g++) or run without --compile"
        )
    decisions = (  # the first that applies decides
        (mode == "off", False, "--compile off"),
        (not compiler, False, "no C++ compiler on the PATH"),
        (mode == "on", True, "--compile on"),
        (not device.startswith("cpu"), False, "auto compiles on the CPU only (--compile on for a GPU)"),
        (stream, True, "a camera stream: its frame size is compiled once, then cached"),
        (
            frames is not None and frames >= AUTO_COMPILE_MIN_FRAMES,
            True,
            f"{frames} frames (≥ {AUTO_COMPILE_MIN_FRAMES}): compiling pays for itself",
        ),
    )
    fallback = (False, f"fewer than {AUTO_COMPILE_MIN_FRAMES} frames: compiling would not pay (--compile on forces it)")
    return next(((decided, why) for applies, decided, why in decisions if applies), fallback)


def compile_after_runs(mode: str) -> int:
    """The run of a frame size that compiles it under ``--compile MODE``: ``auto`` the second (a one-off size never
    pays a compile), ``on`` the first."""
    return 2 if mode == "auto" else 1


def stderr_log(prefix: str) -> Log:
    """A ``log`` writing ``prefix: message`` to stderr without breaking progress bars."""
    return lambda message: tqdm.write(f"{prefix}: {message}", file=sys.stderr)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a module's state, in order: same weights, same digest."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class InferenceNetwork(nn.Module):
    """The part of an :class:`InferenceModel` that is compiled: the network, without the input checks."""

    def __init__(self, inference: InferenceModel) -> None:
        super().__init__()
        self.inference = inference

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.inference._network(rgb, x)


class CompiledInference(nn.Module):
    """An :class:`InferenceModel` that runs each input shape through its cached AOTInductor package.

    Args:
        inference: the (eager) inference form; it keeps running shapes that are not compiled.
        cache_dir: the package folder (default :func:`default_compile_cache`).
        compile_after: compile a shape the n-th time it runs (1: at once). With 2, a shape seen once — the last,
            partial batch of a folder — never pays a compile; a shape whose package is cached is loaded at once.
        log: where progress goes (compiling, loading); None: nowhere.
        transform: a rewrite of the network per shape before compiling (int8); shapes then always run through
            it: compiled from their first call, or, with ``ahead_of_time=False``, the rewritten graph runs as it is
            (PyTorch's reference kernels: the same numbers without a compile, slowly — for accuracy checks).

    ``events`` lists what happened per shape: ``("compiled", shape, seconds)``, ``("loaded", shape, seconds)`` or
    ``("recompiled", shape, seconds)`` after an unreadable package.
    """

    def __init__(
        self,
        inference: InferenceModel,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        compile_after: int = 1,
        log: Log | None = None,
        transform: GraphTransform | None = None,
        ahead_of_time: bool = True,
    ) -> None:
        super().__init__()
        if compile_after < 1:
            raise ValueError(f"compile_after must be at least 1, got {compile_after}")
        if transform is not None:
            compile_after = 1  # a rewritten shape never runs the float network instead
        self.inference = inference
        self.transform = transform
        self.ahead_of_time = ahead_of_time
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_compile_cache()
        self.compile_after = compile_after
        self.log = log or (lambda message: None)
        self.model_name = inference.model_name
        self.num_classes = inference.num_classes
        self.num_label_classes = inference.num_label_classes
        self.void_logit = inference.void_logit
        self.input_spec = inference.input_spec
        self.input_multiple = inference.input_multiple
        self.x_channels = inference.x_channels
        self.weights_metadata = inference.weights_metadata
        self.events: list[tuple[str, ShapeKey, float]] = []
        self._runners: dict[ShapeKey, Callable[..., torch.Tensor]] = {}
        self._runs: dict[ShapeKey, int] = {}
        self._digest: str | None = None

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self.inference.class_logits(logits)

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.inference.model.check_inputs(rgb, x)
        rgb = rgb.contiguous(memory_format=self.inference.memory_format)
        x = x.contiguous(memory_format=self.inference.memory_format)
        key: ShapeKey = (tuple(rgb.shape), tuple(x.shape), rgb.dtype, x.dtype, str(rgb.device))
        runner = self._runners.get(key)
        if runner is None and not self.ahead_of_time:
            runner = self._runners[key] = self._rewritten(rgb, x)
        if runner is None:
            self._runs[key] = self._runs.get(key, 0) + 1
            path = self.package_path(key)
            if path.is_file() or self._runs[key] >= self.compile_after:
                runner = self._runners[key] = self._load_or_compile(path, key, rgb, x)
        with torch.no_grad():
            return runner(rgb, x) if runner is not None else self.inference._network(rgb, x)

    def package_path(self, key: ShapeKey) -> Path:
        """The cache file of the package for inputs of this shape and dtype."""
        if self._digest is None:
            self._digest = weights_digest(self.inference.model)
        inference = self.inference
        fields = {
            "format": PACKAGE_FORMAT,
            "model": self.model_name,
            "weights": self._digest,
            "output": inference.output,
            "memory_format": str(inference.memory_format),
            "attention": str(inference.attention_dtype),
            "inputs": [list(key[0]), list(key[1]), str(key[2]), str(key[3])],
            "device": key[4],
            "torch": torch.__version__,
            "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}",
        }
        kind = ""
        if self.transform is not None:
            fields["transform"] = self.transform.identity
            kind = f"-{self.transform.label}"
        name = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]
        shape = "x".join(map(str, key[0]))
        return self.cache_dir / f"{self.model_name}{kind}-{shape}-{name}.pt2"

    def _rewritten(self, rgb: torch.Tensor, x: torch.Tensor) -> nn.Module:
        """The network at this shape, rewritten by the transform (if any), as a module that runs eagerly."""
        network = InferenceNetwork(self.inference).eval()
        with torch.no_grad():
            return self.transform(network, rgb, x) if self.transform is not None else network

    def _load_or_compile(
        self, path: Path, key: ShapeKey, rgb: torch.Tensor, x: torch.Tensor
    ) -> Callable[..., torch.Tensor]:
        shape = "×".join(map(str, key[0]))
        if path.is_file():
            start = time.perf_counter()
            try:
                runner = torch._inductor.aoti_load_package(str(path))
            except Exception as err:  # a truncated or foreign file: torch raises several types
                self.log(f"compiled package {path} cannot be read ({str(err).splitlines()[0]}); compiling it again")
                path.unlink(missing_ok=True)
                return self._compile(path, key, rgb, x, "recompiled")
            seconds = time.perf_counter() - start
            self.events.append(("loaded", key, seconds))
            self.log(f"loaded the compiled {self.model_name} for {shape} from {path.parent} in {seconds:.1f} s")
            return runner
        return self._compile(path, key, rgb, x, "compiled")

    def _compile(
        self, path: Path, key: ShapeKey, rgb: torch.Tensor, x: torch.Tensor, event: str
    ) -> Callable[..., torch.Tensor]:
        shape = "×".join(map(str, key[0]))
        self.log(
            f"compiling {self.model_name} for {shape} ahead of time (once per shape and weights, cached in "
            f"{path.parent}; a minute or more)…"
        )
        start = time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp.pt2")
        try:
            network = self._rewritten(rgb, x)
            # Inductor's int8 lowering warns about its own tensor copies: nothing a user can act on
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                program = torch.export.export(network, (rgb, x))
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(tmp), inductor_configs={"freezing": True}
                )
            tmp.replace(path)  # atomic: another process sees the whole package or none
        finally:
            tmp.unlink(missing_ok=True)
        runner = torch._inductor.aoti_load_package(str(path))
        seconds = time.perf_counter() - start
        self.events.append((event, key, seconds))
        self.log(f"compiled {self.model_name} for {shape} in {seconds:.0f} s → {path}")
        return runner


def compile_for_inference(
    model: SegmentationModel,
    *,
    dtype: torch.dtype | None = None,
    output: str = "logits",
    cache_dir: str | os.PathLike[str] | None = None,
    compile_after: int = 1,
    log: Log | None = None,
) -> CompiledInference:
    """The inference form of ``model`` (see :func:`~rgbxseg.models.optimize.optimize_for_inference`: ``dtype`` and
    ``output`` as there, channels-last) compiled ahead of time per input shape, with the packages cached in
    ``cache_dir`` (see the module docstring). ``model`` is unchanged. In bf16 on a CPU with native bf16 matmuls the
    token attentions run as blocked bf16 matmuls (``attention_dtype``; AsymFormer at 480×640: see
    ``benchmarks/inference_speed.py``)."""
    attention = compiled_attention_dtype(model, dtype)
    inference = cast(
        InferenceModel, optimize_for_inference(model, dtype=dtype, output=output, attention_dtype=attention)
    )
    return CompiledInference(inference, cache_dir, compile_after=compile_after, log=log)
