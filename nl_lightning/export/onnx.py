"""``export_onnx``: ``torch.onnx.export(dynamo=True)`` with dynamic batch and sequence axes.

The graph comes from ``torch.export`` (no TorchScript); weights go to an external ``.data`` file
when asked or when the model passes protobuf's 2 GB limit. Pruning masks are folded in first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from nl_lightning.compress.prune import dense_copy
from nl_lightning._imports import ONNX_AVAILABLE, require
from nl_lightning._io import atomic_output
from nl_lightning.export.inputs import dynamic_shapes, export_example
from nl_lightning.export.signature import ModelSignature, network, signature_of

DEFAULT_OPSET = 18
_PROTOBUF_LIMIT = 2**31 - 1


def export_onnx(
    model: nn.Module, path: str | Path, signature: ModelSignature | None = None, opset: int = DEFAULT_OPSET,
    external_data: bool | None = None, keep_debug_info: bool = False,
) -> Path:
    """Write ``model`` (eval mode, fp32, CPU) to ``path``; returns ``path``.

    ``external_data``: True = weights in ``<path>.data``; None = only beyond 2 GB.
    ``keep_debug_info``: keep the exporter's per-node metadata (Python stack traces with local
    paths, FX node text); dropped by default, which makes small models ~40% smaller on disk.
    """
    require(ONNX_AVAILABLE, "onnx / onnxscript", "export", "ONNX export")
    signature = signature or signature_of(model)
    model = inference_copy(model)
    if external_data is None:
        external_data = sum(p.numel() * p.element_size() for p in model.parameters()) >= _PROTOBUF_LIMIT
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-missing notices
    program = torch.onnx.export(
        model, (export_example(signature),), dynamo=True, input_names=[signature.name],
        output_names=[signature.output_name], dynamic_shapes=dynamic_shapes(signature), opset_version=opset,
        verbose=False,
    )
    if not keep_debug_info:
        for node in program.model.graph.all_nodes():
            node.metadata_props.clear()
    with atomic_output(path) as tmp:
        program.save(tmp, external_data=external_data)
    return Path(path)


def inference_copy(model: nn.Module) -> nn.Module:
    """A dense fp32 CPU copy in eval mode (the original keeps its device, dtype, masks and mode)."""
    return dense_copy(network(model)).float().cpu().eval().requires_grad_(False)


def onnx_files(path: str | Path) -> list[Path]:
    """The model file and the external-data files it references."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value for tensor in proto.graph.initializer if uses_external_data(tensor)
        for entry in tensor.external_data if entry.key == "location"
    }
    return [path] + [path.parent / loc for loc in sorted(locations)]


def has_external_data(path: str | Path) -> bool:
    return len(onnx_files(path)) > 1


def onnx_opset(path: str | Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
