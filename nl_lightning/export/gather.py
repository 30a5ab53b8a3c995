"""A whole, unsharded copy of a model whose parameters FSDP2 shards across processes.

Under ``ModelParallelStrategy`` every rank holds a slice of each parameter (a ``DTensor``); a
forward pass is a collective, so running the model on rank 0 alone hangs, and copying it there
copies a shard. ``gather_unsharded`` has every rank take part in gathering the full state dict
(torch's ``get_model_state_dict(full_state_dict=True, cpu_offload=True)``, which hands it to
rank 0 only) and loads it into a fresh, plain copy built by ``build``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist
from torch import nn


def is_sharded(module: nn.Module) -> bool:
    """True if any parameter is a ``DTensor`` (FSDP2 / tensor parallel)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def gather_unsharded(module: nn.Module, build: Callable[[], nn.Module]) -> nn.Module | None:
    """Collective: call on every rank. Returns the plain copy on rank 0 and None on the others.

    ``build()`` must return an unsharded module with the same state-dict keys as ``module``
    (e.g. the LightningModule rebuilt from its hyperparameters).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    copy = build()
    copy.load_state_dict(state, strict=True)
    return copy.cpu().eval()
