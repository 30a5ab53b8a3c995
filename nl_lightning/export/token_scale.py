"""``scale_tokens``: per-token scaling of gated MLPs' down-projection input, so ONNX Runtime's
per-tensor dynamic INT8 rounds every token as finely as a per-token scale would.

ONNX Runtime's dynamic INT8 quantizes a MatMul's activations with one scale per tensor, so the
token with the largest input sets the step for every other token of the batch. The input of a
gated MLP's down projection, ``act(gate(x)) * up(x)``, varies in size from token to token (the
inputs of the other projections come out of an RMSNorm and do not). Here each down projection
divides its input by the token's own max ``|a|`` and multiplies its output by it again:
``W (a / s) * s = W a``, the same fp32 function, with every token spanning the quantizer's range.
It is SmoothQuant's per-token activation scale (Xiao et al. 2023), written with the ops ORT's
per-tensor quantizer leaves in fp32 (ReduceMax, Div, Mul). Apply it after ``smooth_glu``, which
rescales the plain ``down`` layers this wraps.

Measured on the trained llama preset (``benchmarks/int8_llama.py``'s model, 2 threads, ORT 1.32,
16 held-out batches), top-1 agreement with eager fp32 with SmoothQuant alone and with both: 98.51 ->
99.12% on an Intel Xeon with AVX-512 VNNI and AMX (commit 21b6879), 98.49 -> 99.14% on an AMD EPYC
with AVX-512 VNNI (d314525); 99.07% scaled alone, and no single layer's scaling gets past 98.82%.
ORT INT8 time: +4 to +7% at batch 1 and +4 to +10% at batch 32 in three interleaved pairs of
sessions; +7 to +11% in those two benchmark runs. Neither CPU reached the benchmark's 99% without
it, so ``Int8Recipe.token_scale`` is on by default; the benchmark's ``*_unscaled`` row in
``benchmarks/results`` shows what turning it off gives. Tried and dropped: the L2 norm as the scale
(98.84%); true per-token quantization (QuantizeLinear along the token axis, u8 with zero point
128), 2.5 ms more per layer at batch 32; a block-Hadamard rotation of the same input (QuaRot's
idea), 99.09% for +1 to +6% / +9 to +11%, its fp32 MatMuls kept out of the quantizer by name.
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn

from nl_lightning.export.smooth import glu_mlps

__all__ = ["TokenScaledLinear", "scale_tokens"]

_EPS = 1e-6


class TokenScaledLinear(nn.Module):
    """``linear(a)`` computed as ``W (a / s) * s + b`` with ``s`` each token's max ``|a|``: the same function,
    its MatMul fed inputs of one range per token."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, a: Tensor) -> Tensor:
        scale = a.abs().amax(-1, keepdim=True).clamp_min(_EPS)  # (..., 1): one per token
        out = F.linear(a / scale, self.weight) * scale
        return out if self.bias is None else out + self.bias


def scale_tokens(model: nn.Module) -> tuple[nn.Module, int]:
    """``(copy, n)``: a copy of ``model`` whose ``n`` gated MLPs scale their down-projection input per token.

    The copy computes the same fp32 function (to float rounding); ``model`` itself is not modified.
    With no gated MLP, ``(model, 0)``.
    """
    if not glu_mlps(model):
        return model, 0
    scaled = copy.deepcopy(model).eval()
    mlps = glu_mlps(scaled)
    for mlp in mlps:
        mlp.down = TokenScaledLinear(mlp.down)
    return scaled, len(mlps)
