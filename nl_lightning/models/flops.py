"""Training FLOPs of one batch (forward + backward), for Lightning's ``ThroughputMonitor`` and MFU.

Counted by ``lightning.fabric.utilities.throughput.measure_flops`` (torch's ``FlopCounterMode``) on
the meta device: the module's own parameters and the batch's shape, no memory and no compute, so
the count holds for any architecture the module builds (attention, GQA, SwiGLU, ...).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch import Tensor, nn
from torch.func import functional_call

from nl_lightning.export.inputs import batch_input


def _meta(t: Tensor) -> Tensor:
    return torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)


def batch_flops(module: nn.Module, batch: Any) -> int:
    """FLOPs of ``module(x)`` plus its backward for a batch shaped like ``batch`` (``x`` = its input)."""
    x = batch_input(batch)
    state = {name: _meta(t) for name, t in module.named_parameters()}
    state.update({name: _meta(t) for name, t in module.named_buffers()})
    x_meta = torch.empty_like(x, device="meta")
    mask = batch.get("key_padding_mask") if isinstance(batch, dict) else None
    args = (x_meta,) if mask is None else (x_meta, torch.empty_like(mask, device="meta"))

    def forward() -> Tensor:
        return functional_call(module, state, args)

    return int(measure_flops(module, forward, loss_fn=lambda out: out.float().sum()))
