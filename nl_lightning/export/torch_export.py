"""``export_pt2``: a ``torch.export`` program (``.pt2``) with dynamic batch and sequence axes.

``torch.export`` is upstream's replacement for TorchScript: a full graph, loadable without the
model's Python code (``torch.export.load(path).module()``), and the input to AOTInductor or
ExecuTorch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from nl_lightning._io import atomic_output
from nl_lightning.errors import MissingFileError
from nl_lightning.export.inputs import dynamic_shapes, export_example
from nl_lightning.export.signature import ModelSignature, signature_of
from nl_lightning.export.onnx import inference_copy


def export_pt2(model: nn.Module, path: str | Path, signature: ModelSignature | None = None) -> Path:
    """Export and ``torch.export.save`` atomically; returns ``path``."""
    signature = signature or signature_of(model)
    program = torch.export.export(inference_copy(model), (export_example(signature),), dynamic_shapes=dynamic_shapes(signature))
    with atomic_output(path) as tmp:
        torch.export.save(program, tmp)
    return Path(path)


def load_pt2(path: str | Path) -> nn.Module:
    """The exported program as a callable module ``fn(x) -> logits``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"No exported program at {path}; write one with export_pt2 or formats=['pt2'].")
    return torch.export.load(str(path)).module()


def pt2_runner(path: str | Path):
    module = load_pt2(path)

    def run(x: Tensor) -> Tensor:
        return module(x)

    return run
