"""Gradient statistics: global and per-layer norms, update/weight ratios, the first non-finite gradient.

Pure torch over ``named_parameters()``; ``GradientMonitor`` calls these between backward and the
optimizer step. Norms are computed with ``torch._foreach_norm`` (one fused pass over all tensors).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

NamedParams = Iterable[tuple[str, torch.nn.Parameter]]


def layer_name(param_name: str) -> str:
    """The module that owns a parameter: ``model.blocks.0.attn.qkv.weight`` -> ``model.blocks.0.attn.qkv``."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def _norms(tensors: Sequence[Tensor], norm_type: float = 2.0) -> Tensor:
    if not tensors:
        return torch.zeros(0)
    return torch.stack([n.float() for n in torch._foreach_norm(list(tensors), norm_type)])


def grad_norms(named_params: NamedParams, per_layer: bool = True, norm_type: float = 2.0) -> dict[str, float]:
    """``{"grad/norm": ||g||}`` plus ``grad/norm/<layer>`` for each layer when ``per_layer``."""
    names, grads = [], []
    for name, p in named_params:
        if p.grad is not None:
            names.append(name)
            grads.append(p.grad.detach())
    norms = _norms(grads, norm_type)
    if not names:
        return {}
    out = {"grad/norm": float(torch.linalg.vector_norm(norms, norm_type))}
    if per_layer:
        by_layer: dict[str, list[Tensor]] = {}
        for name, norm in zip(names, norms):
            by_layer.setdefault(layer_name(name), []).append(norm)
        out.update({f"grad/norm/{layer}": float(torch.linalg.vector_norm(torch.stack(v), norm_type))
                    for layer, v in by_layer.items()})
    return out


def first_nonfinite_grad(named_params: NamedParams) -> tuple[str, str] | None:
    """``(parameter name, "NaN" | "Inf")`` of the first gradient holding a non-finite value, else None.

    One fused norm over all gradients decides (a NaN or Inf anywhere makes its norm non-finite);
    only then is each tensor looked at, in ``named_parameters()`` order.
    """
    named = [(name, p.grad) for name, p in named_params if p.grad is not None]
    if not named:
        return None
    norms = _norms([g.detach() for _, g in named])
    if bool(torch.isfinite(norms).all()):
        return None
    for (name, grad), norm in zip(named, norms):
        if not torch.isfinite(norm):
            return name, "NaN" if bool(torch.isnan(grad).any()) else "Inf"
    return None  # the overflow was in the norm itself (huge finite values): not a NaN/Inf gradient


def snapshot(groups: Sequence[Sequence[Tensor]]) -> list[list[Tensor]]:
    """Copies of the weights of each optimizer parameter group, taken before the step."""
    return [[p.detach().clone() for p in group] for group in groups]


def update_ratios(groups: Sequence[Sequence[Tensor]], before: Sequence[Sequence[Tensor]]) -> list[float]:
    """``||w_after - w_before|| / ||w_before||`` per parameter group (0 for an empty or all-zero group)."""
    ratios = []
    for params, old in zip(groups, before):
        if not params:
            ratios.append(0.0)
            continue
        deltas = torch._foreach_sub([p.detach() for p in params], list(old))
        update = torch.linalg.vector_norm(_norms(deltas))
        weight = torch.linalg.vector_norm(_norms(list(old)))
        ratios.append(float(update / weight) if weight > 0 else 0.0)
    return ratios
