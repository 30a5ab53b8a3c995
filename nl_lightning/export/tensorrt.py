"""``export_tensorrt``: Torch-TensorRT (the optional ``tensorrt`` extra), CUDA only.

Compiles through ``torch_tensorrt``'s dynamo frontend with a (min, opt, max) shape range and saves
an ExportedProgram. Where torch_tensorrt or CUDA is missing it raises ``TensorRTUnavailableError``
saying which, and what to install or where to run instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nl_lightning._imports import TORCH_TENSORRT_AVAILABLE
from nl_lightning._io import atomic_output
from nl_lightning.errors import SetupError
from nl_lightning.export.inputs import export_example
from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.onnx import inference_copy


class TensorRTUnavailableError(SetupError):
    """torch_tensorrt or a CUDA device is missing."""


def check_tensorrt() -> None:
    """Raise ``TensorRTUnavailableError`` naming what is missing."""
    if not TORCH_TENSORRT_AVAILABLE:
        raise TensorRTUnavailableError(
            "The 'tensorrt' format needs torch_tensorrt, which is not installed. Install it on a machine "
            "with an NVIDIA GPU (pip install 'nl-lightning[tensorrt]'), or drop 'tensorrt' from formats."
        )
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError(
            "The 'tensorrt' format needs a CUDA GPU, and torch.cuda.is_available() is False here. Run the "
            "export on a GPU machine, or drop 'tensorrt' from formats."
        )


def export_tensorrt(
    model: nn.Module, path: str | Path, signature: ModelSignature | None = None, max_batch: int = 64,
    fp16: bool = False,
) -> Path:
    """Compile for TensorRT with batch 1..``max_batch`` and sequence 1..max_seq_len; returns ``path``."""
    check_tensorrt()
    import torch_tensorrt

    signature = signature or signature_of(model)
    example = export_example(signature).cuda()
    max_seq = signature.max_seq_len or 512
    shape = lambda b, t: (b, t) if signature.input_dim is None else (b, t, signature.input_dim)  # noqa: E731
    trt_input = torch_tensorrt.Input(
        min_shape=shape(1, 1), opt_shape=tuple(example.shape), max_shape=shape(max_batch, max_seq), dtype=signature.dtype,
    )
    precisions = {torch.float16, torch.float32} if fp16 else {torch.float32}
    compiled = torch_tensorrt.compile(
        inference_copy(model).cuda(), ir="dynamo", inputs=[trt_input], enabled_precisions=precisions,
    )
    with atomic_output(path) as tmp:
        torch_tensorrt.save(compiled, str(tmp), inputs=[example])
    return Path(path)
