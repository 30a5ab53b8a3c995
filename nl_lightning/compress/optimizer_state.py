"""Carry an optimizer across structured pruning: swap in the sliced parameters, slice their state.

After ``apply_plan`` a pruned weight is a new, smaller ``nn.Parameter``. Rebuilding the optimizer
would drop the moments of every weight and restart the LR schedule (the scheduler holds the
optimizer); instead the optimizer keeps its param groups, each old parameter is replaced by its
slice, and every per-parameter state tensor of the old shape (Adam's ``exp_avg``, ``exp_avg_sq``,
SGD's ``momentum_buffer``...) is sliced with the same index. Scalar state (``step``) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from nl_lightning.compress.structured import Resized


__all__ = ["slice_optimizer_state"]


def slice_optimizer_state(optimizer: torch.optim.Optimizer, resized: Iterable[Resized]) -> int:
    """Point ``optimizer`` at the new parameters with their state sliced; returns how many it held."""
    by_old = {id(r.old): r for r in resized}
    swapped = 0
    for group in optimizer.param_groups:
        params = group["params"]
        for i, param in enumerate(params):
            r = by_old.get(id(param))
            if r is None:
                continue
            params[i] = r.new
            state = optimizer.state.pop(param, None)
            if state:
                optimizer.state[r.new] = {key: _slice(value, r) for key, value in state.items()}
            swapped += 1
    return swapped


def _slice(value: object, r: Resized) -> object:
    if isinstance(value, torch.Tensor) and value.shape == r.old.shape:
        return value.index_select(r.dim, r.index.to(value.device)).clone()
    return value
