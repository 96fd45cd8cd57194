"""Inference-optimised forms of the segmentation models, computing what the trained model computes.

``optimize_for_inference(model)`` returns a new module (the model is not modified):

* BatchNorms folded into neighbouring convolutions/linears, LayerNorm affines and layer scales folded into the
  following linears (:mod:`rgbxseg.models.folding`), the MLP decoder reordered so each level is projected straight
  to the fused width at its own resolution (:meth:`~rgbxseg.models.decoders.MLPDecoder.fuse`);
* channels-last memory format, half precision for the parts that tolerate it (``dtype=torch.bfloat16`` on CPUs
  with bf16 support or CUDA, ``torch.float16`` on CUDA), ``torch.compile`` and, on CUDA, replay of a captured
  CUDA graph per input shape;
* the output the caller needs: full-resolution logits, quarter-resolution logits, or the label map;
* for compiled CPU forms, ``attention_dtype=torch.bfloat16``: the token attentions of
  :class:`~rgbxseg.models.layers.ReducedPrecisionAttention` modules as blocked bf16 matmuls
  (:func:`~rgbxseg.models.layers.token_attention`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import torch
from torch import nn

from .base import SegmentationModel
from .folding import fuse_for_inference
from .layers import ReducedPrecisionAttention, resize

OutputFn = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
OUTPUTS: dict[str, OutputFn] = {
    "logits": lambda logits, size: resize(logits.float(), size),
    "quarter_logits": lambda logits, size: logits.float(),
    "labels": lambda logits, size: resize(logits.float(), size).argmax(1),
}
"""What an inference model returns: full-resolution float32 logits (B, C, H, W; C = ``num_classes``, a void channel
first where the model has one), the decoder's logits at
H/4 × W/4, or the arg-max class indices (B, H, W) of the full-resolution logits (index c = dataset label c + 1; a
void logit is left out)."""


class InferenceModel(nn.Module):
    """A fused model with its precision, memory format and output mode; ``forward(rgb, x)`` like the model.

    With ``compile`` the network (not the input checks) runs through ``torch.compile`` with Inductor's weight
    freezing: the weights become constants that are folded, pre-packed for oneDNN/MKL and fused with their
    epilogues. Freezing is read from Inductor's global config when a shape is first compiled (torch 2.13 ignores it
    in ``torch.compile(options=...)``), and it needs autograd off, so every compiled call runs under both.
    """

    def __init__(
        self,
        model: SegmentationModel,
        output: str,
        channels_last: bool,
        compile: bool = False,
        attention_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
        self.model = model
        self.output = output
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.attention_dtype = attention_dtype
        """The precision of the token attentions' matmul form, set on every module that has one (None: fused)."""
        for block in model.modules():
            if isinstance(block, ReducedPrecisionAttention):
                block.attention_dtype = attention_dtype
        self.model_name = model.model_name
        self.num_classes = model.num_classes
        self.num_label_classes = model.num_label_classes
        self.void_logit = model.void_logit and output != "labels"
        """Whether the returned logits keep the model's void channel (channel 0); its labels never do."""
        self.input_spec = model.input_spec
        self.input_multiple = model.input_multiple
        self.x_channels = model.x_channels
        self.weights_metadata = model.weights_metadata
        # GEMM autotuning picks Inductor's CPU GEMM templates (AMX for bf16) where they beat oneDNN.
        options = {"max_autotune": True, "triton.cudagraphs": False}
        self._compiled = torch.compile(self._network, dynamic=False, options=options) if compile else None

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The label classes' logits of this model's logits output (see :meth:`SegmentationModel.class_logits`)."""
        return self.model.class_logits(logits) if self.void_logit else logits

    def _network(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = self.model.forward_decoder(rgb, x)
        if self.output == "labels":  # labels are classes: a void logit never wins
            logits = self.model.class_logits(logits)
        return OUTPUTS[self.output](logits, (rgb.shape[-2], rgb.shape[-1]))

    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.model.check_inputs(rgb, x)
        rgb = rgb.contiguous(memory_format=self.memory_format)
        x = x.contiguous(memory_format=self.memory_format)
        if self._compiled is None:
            return self._network(rgb, x)
        from torch._inductor import config as inductor_config  # noqa: PLC0415 (a 1 s import only compile needs)

        with torch.no_grad(), inductor_config.patch(freezing=True):
            return self._compiled(rgb, x)


class HalfPrecisionIsland(nn.Module):
    """Runs ``module`` in the precision of its weights (cast once to ``dtype``) inside a float32 model.

    Inputs are cast to the weights' dtype at each call (a no-op for inputs another island handed on in that dtype),
    so ``.float()`` on the whole model turns the island back into float32 (as the MACs counter does). The output is
    cast back to float32 unless ``float_output`` is False, for islands whose consumers are all islands themselves.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype, float_output: bool = True) -> None:
        super().__init__()
        self.module = module.to(dtype)
        self.float_output = float_output

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        dtype = next(self.module.parameters()).dtype
        out = self.module(*(a.to(dtype) for a in args))
        return out.float() if self.float_output else out


def _install_half_precision(model: SegmentationModel, dtype: torch.dtype) -> None:
    def matches(patterns: tuple[str, ...], name: str) -> bool:
        return any(re.fullmatch(pattern, name) for pattern in patterns)

    targets = [name for name, _ in model.named_modules() if name and matches(model.half_precision_modules, name)]
    for name in targets:
        parent, _, attribute = name.rpartition(".")
        owner = model.get_submodule(parent)
        float_output = not matches(model.half_precision_outputs, name)
        setattr(owner, attribute, HalfPrecisionIsland(getattr(owner, attribute), dtype, float_output))


class CUDAGraphRunner(nn.Module):
    """Replays one captured CUDA graph per input shape: no Python or launch overhead per frame.

    Inputs are copied into static buffers and the returned tensor is the graph's static output (clone it if it
    must outlive the next call).
    """

    def __init__(self, module: nn.Module, warmup: int = 3) -> None:
        super().__init__()
        self.module = module
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.inference_mode()
    def forward(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(rgb.shape), tuple(x.shape), rgb.dtype, x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(rgb, x)
        graph, static_rgb, static_x, static_out = self._graphs[key]
        static_rgb.copy_(rgb)
        static_x.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, rgb: torch.Tensor, x: torch.Tensor) -> tuple:
        static_rgb, static_x = rgb.clone(), x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.module(static_rgb, static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(static_rgb, static_x)
        return graph, static_rgb, static_x, static_out


def compiled_attention_dtype(model: nn.Module, dtype: torch.dtype | None) -> torch.dtype | None:
    """The ``attention_dtype`` of ``model``'s form compiled in ``dtype`` (int8 asks for bf16): ``torch.bfloat16``
    where that is bf16 and the model is on a CPU with native bf16 matmuls (AVX-512 bf16 or AMX, as oneDNN reports),
    else ``None``: float32 stays exact, on a GPU the fused attention kernels are the fast ones, and emulated bf16
    would be slower than float32."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    native = on_cpu and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if dtype == torch.bfloat16 and native else None


def optimize_for_inference(
    model: SegmentationModel,
    *,
    dtype: torch.dtype | None = None,
    channels_last: bool = True,
    output: str = "logits",
    compile: bool = False,
    cuda_graphs: bool = False,
    attention_dtype: torch.dtype | None = None,
) -> nn.Module:
    """The inference form of ``model`` (a copy; ``model`` is unchanged). See the module docstring.

    Args:
        dtype: ``None`` or ``torch.float32`` for float32; ``torch.bfloat16`` / ``torch.float16`` to run the parts
            the model lists in ``half_precision_modules`` (the heavy, numerically robust ones) in half precision; the
            rest, and the outputs, stay float32.
        channels_last: NHWC memory format for the convolutional parts.
        output: a key of :data:`OUTPUTS`.
        compile: run the network through ``torch.compile`` with weight freezing and GEMM autotuning, for fixed
            input shapes (the first call per shape compiles: about 1–2 minutes for AsymFormer on 2 CPU cores).
        cuda_graphs: capture and replay CUDA graphs per input shape (model and inputs must be on a GPU).
        attention_dtype: ``None`` keeps the fused attention kernels; ``torch.bfloat16`` runs the token attentions of
            :class:`~rgbxseg.models.layers.ReducedPrecisionAttention` modules as blocked bf16 matmuls, the fast
            form for graphs compiled for a CPU (see :func:`~rgbxseg.models.layers.token_attention`; slower eagerly).
    """
    if cuda_graphs and next(model.parameters()).device.type != "cuda":
        raise ValueError("cuda_graphs=True needs the model on a CUDA device (model.cuda())")
    fused = fuse_for_inference(copy.deepcopy(model).eval())
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    if dtype not in (None, torch.float32):
        _install_half_precision(fused, dtype)
    module: nn.Module = InferenceModel(fused, output, channels_last, compile, attention_dtype).eval()
    if cuda_graphs:
        module = CUDAGraphRunner(module)
    return module
