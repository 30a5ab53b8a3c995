"""Measure sparsity: the fraction of zero weights, per layer and overall.

A pruned parameter is measured through its mask (what pruning decided); a plain one through its
values (what a checkpoint holds). Both agree once the pruning is made permanent.
"""

from __future__ import annotations

from torch import Tensor, nn

from nl_lightning.compress.prune import ParamList


def _zeros(module: nn.Module, name: str) -> tuple[int, int]:
    mask = getattr(module, f"{name}_mask", None)
    tensor: Tensor = mask if mask is not None else getattr(module, name)
    return int(tensor.numel() - tensor.count_nonzero()), tensor.numel()


def sparsity(params: ParamList) -> float:
    """Zeros / elements over all ``(module, name)`` pairs together (global sparsity)."""
    counts = [_zeros(module, name) for module, name in params]
    total = sum(n for _, n in counts)
    return sum(z for z, _ in counts) / total if total else 0.0


def zero_count(params: ParamList) -> tuple[int, int]:
    """(zeros, elements) over ``params``; what the global schedule turns into an exact count."""
    counts = [_zeros(module, name) for module, name in params]
    return sum(z for z, _ in counts), sum(n for _, n in counts)


def layer_sparsity(model: nn.Module, params: ParamList) -> dict[str, float]:
    """``{"blocks.0.mlp.fc1.weight": 0.5, ...}``: names relative to ``model``."""
    names = {id(module): name for name, module in model.named_modules()}
    out = {}
    for module, name in params:
        zeros, total = _zeros(module, name)
        out[f"{names.get(id(module), type(module).__name__)}.{name}"] = zeros / total
    return out


def model_sparsity(model: nn.Module) -> float:
    """Zeros / elements over every parameter of ``model`` (embeddings, norms and biases included)."""
    params = [p for p in model.parameters()]
    total = sum(p.numel() for p in params)
    return sum(p.numel() - int(p.count_nonzero()) for p in params) / total if total else 0.0
