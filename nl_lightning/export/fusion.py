"""``fuse_onnx``: rewrite an exported graph into ONNX Runtime's fused transformer kernels.

onnxscript's ORT fusions (``onnxscript.rewriter.ort_fusions.optimize_for_ort``) do the work:
SDPA -> ``MultiHeadAttention``, residual + norm -> ``SkipSimplifiedLayerNormalization`` /
``SkipLayerNormalization``, GELU / bias-GELU. Two rules here come first, because their stock
versions are written for Hugging Face exports and miss ours:

- RMSNorm: the dynamo exporter writes ``ReduceMean`` over axis 2 (the stock rule wants -1)
  -> ``SimplifiedLayerNormalization``;
- causal attention with RoPE (half-split layout), with or without grouped KV heads (packed
  ``kv_proj`` or separate projections) -> one ``GroupQueryAttention`` that applies the rotary
  embedding itself (``do_rotary``), replacing the reshapes, transposes, rotation, KV repeat,
  mask and softmax of every layer.

The fused graph uses ``com.microsoft`` ops, so it runs on ONNX Runtime only; the plain
``model.onnx`` stays portable. Graphs that match nothing pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nl_lightning._imports import ONNX_AVAILABLE, require
from nl_lightning._io import atomic_output

__all__ = ["FUSED_OPS", "fuse_onnx", "fused_op_counts"]

#: ORT kernels a fused graph of an nl_lightning transformer can hold.
FUSED_OPS: tuple[str, ...] = (
    "GroupQueryAttention", "MultiHeadAttention", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization", "SkipLayerNormalization", "FastGelu", "BiasGelu",
    "Gelu", "RotaryEmbedding",
)


def fuse_onnx(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Write the fused graph of ``src`` to ``dst``; returns how many of each fusion were applied."""
    require(ONNX_AVAILABLE, "onnx / onnxscript", "export", "ONNX graph fusion")
    import onnx_ir as ir

    from nl_lightning.export.onnx import has_external_data

    model = ir.load(str(src))
    counts = fuse_model(model)
    external = f"{Path(dst).name}.data" if has_external_data(src) else None
    with atomic_output(dst) as tmp:
        ir.save(model, str(tmp), external_data=external)
    return counts


def fuse_model(model: Any) -> dict[str, int]:
    """Fuse an ``onnx_ir.Model`` in place (see the module docstring); returns the fusion counts."""
    import onnx_ir.passes.common as common_passes
    from onnxscript import optimizer
    from onnxscript.rewriter.ort_fusions import optimize_for_ort
    from onnxscript.rewriter.ort_fusions.sdpa import sdpa_rules

    from nl_lightning.export.fusion_rules import gqa_rules, rms_norm_rules

    common_passes.ShapeInferencePass()(model)
    optimizer.optimize(model)
    counts = {"rms_normalization": rms_norm_rules().apply_to_model(model)}
    sdpa = sdpa_rules.apply_to_model(model)
    common_passes.ShapeInferencePass()(model)
    counts["group_query_attention"] = gqa_rules().apply_to_model(model)
    model, stock = optimize_for_ort(model, clear_metadata=True)
    common_passes.CommonSubexpressionEliminationPass()(model)  # one seqlens / total length for all layers
    counts.update({k: v for k, v in stock.items() if v})
    counts["sdpa"] = sdpa + stock.get("sdpa", 0)
    return {k: v for k, v in counts.items() if v}


def fused_op_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each fused ORT kernel (``FUSED_OPS``) the graph at ``path`` holds."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type in FUSED_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
