"""A model's input in a batch (``batch_input`` / ``batch_target``), and its axes for export.

nl_lightning models take one tensor: token ids ``idx`` (B, T) int64 for ``CausalLM``, or ``x``
as ids (B, T) or features (B, T, F) float32 for ``SequenceClassifier`` (``ModelSignature`` says
which). The batch and sequence axes are dynamic; the sequence axis is bounded by the signature's
``max_seq_len``, the model's context.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nl_lightning.errors import DataError
from nl_lightning.export.signature import ModelSignature


def batch_input(batch: Any) -> Tensor:
    """The model input of a DataLoader batch: ``x`` of ``(x, y)``, ``batch["x"]`` / ``["idx"]``, or a
    tensor. The one reading of a batch's input: export, batch inference, FLOPs and throughput use it."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict):
        for key in ("x", "idx", "input_ids"):
            if key in batch:
                return batch[key]
        raise DataError(f"Cannot find the model input in a batch with keys {sorted(batch)}; expected 'x' or 'idx' "
                        "(or 'input_ids').")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise DataError(
        f"Cannot find the model input in a batch of type {type(batch).__name__}; expected (x, y) or a dict."
    )


def batch_target(batch: Any) -> Tensor:
    """The target of a ``(x, y)`` / dict batch."""
    if isinstance(batch, dict):
        for key in ("y", "targets"):
            if key in batch:
                return batch[key]
        raise DataError(f"Cannot find the target in a batch with keys {sorted(batch)}; expected 'y' or 'targets'.")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise DataError(f"Cannot find the target in a batch of type {type(batch).__name__}; expected (x, y).")


def dynamic_shapes(signature: ModelSignature) -> tuple[dict[int, Any], ...]:
    """``torch.export`` dynamic shapes: batch and sequence axes of the single input."""
    batch = torch.export.Dim("batch", min=1)
    limit = signature.max_seq_len
    seq = torch.export.Dim("seq", min=1, max=limit) if limit else torch.export.Dim("seq", min=1)
    return ({0: batch, 1: seq},)


def export_example(signature: ModelSignature) -> Tensor:
    """The tracing example: batch 2 and a sequence > 1, so neither axis is specialized to a constant."""
    return signature.example(2, signature.clamp_seq(8))
