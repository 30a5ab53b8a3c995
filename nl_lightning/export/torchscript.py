"""``export_torchscript``: a traced TorchScript module, kept as a *legacy* format only.

TorchScript is deprecated upstream (``torch.jit.trace`` itself warns so): prefer ONNX or
``torch.export`` (``.pt2``). Tracing records one path through the model; the parity check at
several batch and sequence sizes is what shows the trace generalizes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from nl_lightning._io import atomic_output
from nl_lightning.export.inputs import export_example
from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.onnx import inference_copy


def export_torchscript(model: nn.Module, path: str | Path, signature: ModelSignature | None = None) -> Path:
    """Trace with ``torch.jit.trace`` and save atomically; returns ``path``."""
    signature = signature or signature_of(model)
    model = inference_copy(model)
    # The SDPA call passes `enable_gqa=<size comparison>`, which the tracer turns into a tensor and
    # SDPA rejects; the "naive" backend computes the same attention without that argument.
    for module in model.modules():
        if hasattr(module, "backend") and hasattr(module, "n_kv_heads"):
            module.backend = "naive"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (export_example(signature),), check_trace=False)
    with atomic_output(path) as tmp:
        torch.jit.save(traced, str(tmp))
    return Path(path)


def torchscript_runner(path: str | Path):
    module = torch.jit.load(str(path), map_location="cpu")

    def run(x: Tensor) -> Tensor:
        return module(x)

    return run
