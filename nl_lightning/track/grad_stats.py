"""Gradient statistics: global and per-layer norms, update/weight ratios, the first non-finite gradient.

``GradientMonitor`` calls these between backward and the optimizer step. Per-parameter norms come
from Lightning's ``grad_norm`` (a layer's norm is the p-norm of its parameters' norms, i.e. the norm
of their concatenation); totals from torch's ``get_total_norm``, the fused norm that
``clip_grad_norm_`` uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn
from torch.nn.utils import get_total_norm

NamedParams = Iterable[tuple[str, torch.nn.Parameter]]


def layer_name(param_name: str) -> str:
    """The module that owns a parameter: ``model.blocks.0.attn.qkv.weight`` -> ``model.blocks.0.attn.qkv``."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def grad_norms(module: nn.Module, per_layer: bool = True, norm_type: float = 2.0) -> dict[str, float]:
    """``{"grad/norm": ||g||}`` plus ``grad/norm/<layer>`` for each layer when ``per_layer`` ({} without gradients)."""
    norms = grad_norm(module, norm_type)
    total = norms.pop(f"grad_{float(norm_type)}_norm_total", None)
    if total is None:
        return {}
    out = {"grad/norm": float(total)}
    if per_layer:
        prefix = f"grad_{float(norm_type)}_norm/"
        by_layer: dict[str, list[Tensor]] = {}
        for key, norm in norms.items():
            by_layer.setdefault(layer_name(key.removeprefix(prefix)), []).append(norm.float())
        out.update({f"grad/norm/{layer}": float(torch.linalg.vector_norm(torch.stack(v), norm_type))
                    for layer, v in by_layer.items()})
    return out


def first_nonfinite_grad(named_params: NamedParams) -> tuple[str, str] | None:
    """``(parameter name, "NaN" | "Inf")`` of the first gradient holding a non-finite value, else None.

    One fused norm over all gradients decides (a NaN or Inf anywhere makes it non-finite); only
    then is each tensor looked at, in ``named_parameters()`` order.
    """
    named = [(name, p.grad.detach()) for name, p in named_params if p.grad is not None]
    if not named or bool(torch.isfinite(get_total_norm([g for _, g in named]))):
        return None
    for name, grad in named:
        if not bool(torch.isfinite(grad).all()):
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
        update = get_total_norm([p.detach() - o for p, o in zip(params, old)])
        weight = get_total_norm(list(old))
        ratios.append(float(update / weight) if weight > 0 else 0.0)
    return ratios
