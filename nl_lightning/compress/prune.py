"""Magnitude / random / structured pruning of nl_lightning models with ``torch.nn.utils.prune``.

``prunable_parameters`` picks the Linear weights of a model (attention and MLP projections, pooling
and output heads) and leaves embeddings, input projections, norms and biases alone.
``prune_model`` prunes once (global or per layer); ``make_permanent`` folds the masks into the
weights; ``dense_copy`` returns a mask-free copy for export and quantization, leaving the original
untouched. Nothing here imports lightning: ``PruningCallback`` wraps it for a Trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from nl_lightning.errors import ConfigError

PruningMethod = Literal["l1_unstructured", "random_unstructured", "ln_structured"]
PRUNING_METHODS: tuple[str, ...] = ("l1_unstructured", "random_unstructured", "ln_structured")
PruningScope = Literal["global", "layer"]
_GLOBAL_METHODS = {"l1_unstructured": torch_prune.L1Unstructured, "random_unstructured": torch_prune.RandomUnstructured}
# Modules that turn raw inputs into hidden states: pruning them removes input information outright.
DEFAULT_EXCLUDE: tuple[str, ...] = ("embed",)
HEAD_NAMES: tuple[str, ...] = ("lm_head", "head")

ParamList = list[tuple[nn.Module, str]]


def validate_pruning(method: str, amount: float, scope: str) -> None:
    """Shared by ``prune_model`` and ``PruningCallback``: each message names the fix."""
    if method not in PRUNING_METHODS:
        raise ConfigError(f"Pruning method={method!r} is not supported; choose one of {PRUNING_METHODS}.")
    if scope not in ("global", "layer"):
        raise ConfigError(f"Pruning scope={scope!r} is not supported; choose 'global' or 'layer'.")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
        raise ConfigError(
            f"Pruning amount={amount!r} must be a sparsity fraction in [0, 1), e.g. 0.5 for half the weights."
        )
    if method == "ln_structured" and scope == "global":
        raise ConfigError(
            "method='ln_structured' prunes whole rows layer by layer and cannot rank them globally; "
            "use scope='layer' (or an unstructured method with scope='global')."
        )


def prunable_parameters(
    model: nn.Module, include_head: bool = True, exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> ParamList:
    """``(module, "weight")`` for every ``nn.Linear`` except the excluded names (and heads if asked).

    ``exclude`` matches the last component of a module's dotted name (``"embed"`` skips the token
    embedding or the feature projection of ``Transformer``). Embeddings and norms are never Linear.
    """
    skip = set(exclude) | (set() if include_head else set(HEAD_NAMES))
    params = [
        (module, "weight") for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rpartition(".")[2] not in skip
    ]
    if not params:
        raise ConfigError(
            f"No prunable Linear layers in {type(model).__name__} (exclude={sorted(skip)}); "
            "check the model or narrow `exclude`."
        )
    return params


def prune_model(
    model: nn.Module, amount: float, method: PruningMethod = "l1_unstructured", scope: PruningScope = "global",
    params: ParamList | None = None, norm: float = 2, dim: int = 0,
) -> ParamList:
    """Prune ``amount`` of the *remaining* weights once (masks stay attached; see ``make_permanent``).

    ``ln_structured`` removes whole rows (``dim=0``: output neurons) by their L-``norm``. Repeated
    calls compound, which is how torch's ``PruningContainer`` works; ``step_amount`` converts a
    target sparsity into the next call's amount.
    """
    validate_pruning(method, amount, scope)
    params = prunable_parameters(model) if params is None else params
    if amount == 0:
        return params
    if scope == "global":
        torch_prune.global_unstructured(params, pruning_method=_GLOBAL_METHODS[method], amount=amount)
        return params
    for module, name in params:
        if method == "ln_structured":
            torch_prune.ln_structured(module, name, amount=amount, n=norm, dim=dim)
        elif method == "l1_unstructured":
            torch_prune.l1_unstructured(module, name, amount=amount)
        else:
            torch_prune.random_unstructured(module, name, amount=amount)
    return params


def pruning_hooks(model: nn.Module) -> list[tuple[nn.Module, torch_prune.BasePruningMethod]]:
    """Every (module, pruning hook) pair currently attached to ``model``."""
    return [
        (module, hook) for module in model.modules() for hook in module._forward_pre_hooks.values()
        if isinstance(hook, torch_prune.BasePruningMethod)
    ]


def is_pruned(model: nn.Module) -> bool:
    return bool(pruning_hooks(model))


@torch.no_grad()
def refresh_pruned_weights(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * mask`` outside autograd.

    After a training forward the masked weight is a non-leaf tensor, and ``copy.deepcopy`` of the
    model then fails ("Only Tensors created explicitly by the user ..."), the failure behind
    Lightning #7505 / #11047. Calling this between steps keeps the model copyable.
    """
    for module, hook in pruning_hooks(model):
        setattr(module, hook._tensor_name, hook.apply_mask(module))


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight and drop ``*_orig`` / ``*_mask``, in place."""
    for module, hook in pruning_hooks(model):
        torch_prune.remove(module, hook._tensor_name)
    return model


def dense_copy(model: nn.Module) -> nn.Module:
    """A deep copy with masks folded in (the original keeps its masks): safe to export or quantize."""
    refresh_pruned_weights(model)
    return make_permanent(copy.deepcopy(model))


def sync_masks(params: ParamList, src: int = 0) -> None:
    """Broadcast pruning masks from rank ``src`` so every DDP rank prunes identically.

    L1 masks agree anyway (the weights are identical), but random masks would not, and the ranks'
    weights would then drift apart. A no-op outside ``torch.distributed``.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for module, name in params:
        mask = getattr(module, f"{name}_mask", None)
        if mask is not None:
            torch.distributed.broadcast(mask, src=src)
