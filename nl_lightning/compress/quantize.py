"""Weight quantization and casting of a PyTorch model: torchao INT8 and FP16 / BF16.

``quantize_model`` returns a new module (the input is untouched, pruning masks folded in):
``torchao_int8_dynamic`` (INT8 weights, activations quantized per token at run time),
``torchao_int8_weight`` (INT8 weights only), ``fp16`` / ``bf16`` (cast). These use torchao's
``quantize_`` and need no calibration; ONNX Runtime INT8 lives in ``nl_lightning.export.ort``.
Eager ``torch.ao.quantization`` is deprecated upstream and not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from nl_lightning.compress.prune import dense_copy
from nl_lightning.errors import ConfigError

TorchQuantMethod = Literal["torchao_int8_dynamic", "torchao_int8_weight", "fp16", "bf16"]
TORCH_METHODS: tuple[str, ...] = ("torchao_int8_dynamic", "torchao_int8_weight", "fp16", "bf16")
QuantMethod = Literal[
    "ort_int8_dynamic", "ort_int8_static", "torchao_int8_dynamic", "torchao_int8_weight", "fp16", "bf16",
]
QUANT_METHODS: tuple[str, ...] = ("ort_int8_dynamic", "ort_int8_static") + TORCH_METHODS
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class QuantizationConfig:
    """Which quantized variants to build, and how much validation data to calibrate and compare them on.

    Latency is not measured at fit end (one short run on a busy machine gives ratios with no
    meaning): profile the written artifacts with ``nl-lightning profile`` or the benchmark."""

    methods: list[QuantMethod] = field(default_factory=lambda: ["ort_int8_dynamic"])
    calibration_batches: int = 8
    """Validation batches that calibrate static INT8 activation ranges."""
    eval_batches: int | None = 20
    """Validation batches for the metric comparison (None = all)."""

    def __post_init__(self) -> None:
        validate_methods(self.methods)
        if self.calibration_batches < 1:
            raise ConfigError(f"QuantizationConfig.calibration_batches={self.calibration_batches} must be >= 1.")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ConfigError(f"QuantizationConfig.eval_batches={self.eval_batches} must be >= 1 or None (all).")


def validate_methods(methods: list[str], allowed: tuple[str, ...] = QUANT_METHODS) -> None:
    unknown = [m for m in methods if m not in allowed]
    if unknown or not methods:
        raise ConfigError(f"Quantization methods {list(methods)!r}: choose one or more of {allowed}.")


def quantize_model(model: nn.Module, method: TorchQuantMethod) -> nn.Module:
    """A quantized / cast copy of ``model`` in eval mode, on CPU."""
    validate_methods([method], TORCH_METHODS)
    model = dense_copy(model).float().cpu().eval().requires_grad_(False)
    if method in _DTYPES:
        return model.to(_DTYPES[method])
    from nl_lightning._imports import TORCHAO_AVAILABLE, require

    require(TORCHAO_AVAILABLE, "torchao", "export", f"Quantization method {method!r}")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    config = Int8DynamicActivationInt8WeightConfig() if method == "torchao_int8_dynamic" else Int8WeightOnlyConfig()
    quantize_(model, config)  # Linear layers only (torchao's default filter)
    return model


def module_runner(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """``fn(x) -> fp32 logits``: casts float inputs to the model's dtype (FP16 / BF16 models)."""
    dtype = next(model.parameters()).dtype

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return model(x.to(dtype) if x.is_floating_point() else x).float()

    return run
