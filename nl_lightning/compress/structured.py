"""Structured pruning that removes structure: fewer attention heads and MLP channels, a smaller dense model.

``prune_structured(model, heads=0.5, mlp=0.5)`` scores every attention head group and MLP channel
(``importance.py``), keeps the same number of the best ones in every layer, slices the weights and
rewrites the model's ``TransformerConfig`` (``n_heads``, ``n_kv_heads``, ``head_dim``, ``mlp_hidden``),
so the result saves, loads, exports and serves as a plain, smaller model. Unlike masks
(``prune.py``), the removed rows and columns are gone: parameters, artifact size and latency shrink.

The slicing is written here rather than with torch-pruning: that library is not one of our
runtime dependencies; its tracer cannot see that the fused ``kv_proj`` holds k and v heads in
groups read by ``n_heads / n_kv_heads`` query heads each (it would need a hand-written group
spec per layer, which is most of this file); and it would not update our config. Our blocks have
three Linear layouts (``structure.py``), so the index bookkeeping is short and tested against
masked originals.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nl_lightning.compress.importance import IMPORTANCES, Importance, Scores, magnitude_scores, taylor_scores
from nl_lightning.compress.structure import SHARED, UnitKind, UnitMap, unit_maps
from nl_lightning.errors import ConfigError
from nl_lightning.nn.alibi import ALiBi
from nl_lightning.nn.attention import SelfAttention
from nl_lightning.nn.mlp import default_hidden

if TYPE_CHECKING:  # models/ imports lightning; compress/ does not
    from nl_lightning.models.config import TransformerConfig

__all__ = [
    "Plan", "Resized", "WIDTH_FIELDS", "apply_plan", "config_widths", "keep_count", "match_widths", "plan_pruning",
    "prune_structured", "sync_plan", "validate_structured", "widths_of",
]

Plan = dict[str, Tensor]
"""Module name -> sorted ids of the units it keeps."""

#: The per-layer width fields of ``TransformerConfig`` that structured pruning changes.
WIDTH_FIELDS: tuple[str, ...] = ("n_heads", "n_kv_heads", "head_dim", "mlp_hidden")


@dataclass
class Resized:
    """One parameter replaced by a slice of itself: ``new = old.index_select(dim, index)``."""

    name: str
    old: nn.Parameter
    new: nn.Parameter
    dim: int
    index: Tensor


def validate_structured(heads: float, mlp: float, importance: str) -> None:
    """Shared by ``prune_structured`` and ``StructuredPruningCallback``; each message names the fix."""
    for name, value in (("heads", heads), ("mlp", mlp)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(
                f"Structured pruning {name}={value!r} must be the fraction to remove, in [0, 1): e.g. 0.5 removes "
                f"half of the {'attention heads' if name == 'heads' else 'MLP channels'} in every layer."
            )
    if importance not in IMPORTANCES:
        raise ConfigError(
            f"Structured pruning importance={importance!r} is not supported; choose one of {IMPORTANCES}."
        )


def keep_count(n_units: int, fraction: float) -> int:
    """Units left after removing ``fraction`` of ``n_units`` (rounded down: never more than asked, >= 1)."""
    return n_units - math.floor(fraction * n_units + 1e-9)


def plan_pruning(maps: Mapping[str, UnitMap], scores: Scores, keep: Mapping[UnitKind, int | None]) -> Plan:
    """The ``keep[kind]`` highest-scoring units of every module (None or >= its units: all of them)."""
    plan = {}
    for name, umap in maps.items():
        k = keep.get(umap.kind)
        if k is None or k >= umap.n_units:
            continue
        top = torch.topk(scores[name].float().cpu(), k).indices  # ties: identical inputs give identical picks
        plan[name] = top.sort().values
    return plan


def sync_plan(plan: Plan, src: int = 0) -> Plan:
    """Broadcast the plan from rank ``src`` so every DDP rank removes the same units (a no-op alone)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for name in sorted(plan):
            torch.distributed.broadcast(plan[name], src=src)
    return plan


@torch.no_grad()
def apply_plan(model: nn.Module, plan: Plan, maps: Mapping[str, UnitMap] | None = None) -> list[Resized]:
    """Slice ``model`` in place to the planned units and rewrite its configs; returns what changed."""
    maps = unit_maps(model) if maps is None else maps
    if any(maps[name].kind == "heads" for name in plan) and any(isinstance(m, ALiBi) for m in model.modules()):
        raise ConfigError(
            "Cannot remove heads of a model with position='alibi': its per-head slopes follow from n_heads, so "
            "the smaller config would rebuild different slopes. Prune MLP channels only (heads=0)."
        )
    resized: list[Resized] = []
    for name, kept in plan.items():
        module = model.get_submodule(name)
        for piece in maps[name].slices:
            keep = torch.isin(piece.unit, kept) | (piece.unit == SHARED)
            if bool(keep.all()):
                continue
            full_name = f"{name}.{piece.name}" if name else piece.name
            resized.append(_replace(module, piece.name, piece.dim, keep.nonzero().flatten(), full_name))
        _refresh_shapes(module)
    _rewrite_configs(model)
    return resized


def _replace(module: nn.Module, name: str, dim: int, index: Tensor, full_name: str) -> Resized:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    old = getattr(owner, leaf)
    index = index.to(old.device)
    new = nn.Parameter(old.detach().index_select(dim, index).clone(), requires_grad=old.requires_grad)
    setattr(owner, leaf, new)
    return Resized(full_name, old, new, dim, index)


def _refresh_shapes(module: nn.Module) -> None:
    for linear in module.modules():
        if isinstance(linear, nn.Linear):
            linear.out_features, linear.in_features = linear.weight.shape
    if isinstance(module, SelfAttention):
        module.n_heads = module.q_proj.out_features // module.head_dim
        module.n_kv_heads = module.kv_proj.out_features // (2 * module.head_dim)


def _rewrite_configs(model: nn.Module) -> None:
    """Every ``TransformerConfig`` in ``model`` (``CausalLM.config``, ``Transformer.config``...) gets the new widths."""
    found = widths_of(model)
    for module in model.modules():
        config = getattr(module, "config", None)
        if dataclasses.is_dataclass(config) and all(hasattr(config, f) for f in WIDTH_FIELDS):
            module.config = replace(config, **found)


def widths_of(model: nn.Module, maps: Mapping[str, UnitMap] | None = None) -> dict[str, Any]:
    """The width fields of ``model``'s config as its modules now are; every layer must agree."""
    maps = unit_maps(model) if maps is None else maps
    found: dict[str, set] = {field: set() for field in WIDTH_FIELDS}
    for name, umap in maps.items():
        module = model.get_submodule(name)
        if umap.kind == "heads":
            found["n_heads"].add(module.n_heads)
            found["n_kv_heads"].add(module.n_kv_heads)
            found["head_dim"].add(module.head_dim)
        else:
            found["mlp_hidden"].add(umap.n_units)
    assert all(len(v) <= 1 for v in found.values()), f"layers differ in width: {found}"  # we prune uniformly
    return {field: values.pop() for field, values in found.items() if values}


def config_widths(config: "TransformerConfig") -> dict[str, int]:
    """``n_heads``, ``n_kv_heads``, ``head_dim`` and the resolved ``mlp_hidden`` of ``config``."""
    hidden = config.mlp_hidden or default_hidden(config.mlp, config.d_model)
    return {"n_heads": config.n_heads, "n_kv_heads": config.n_kv_heads, "head_dim": config.head_dim,
            "mlp_hidden": hidden}


def prune_structured(
    model: nn.Module, heads: float = 0.0, mlp: float = 0.0, importance: Importance = "magnitude",
    batches: Iterable[Any] | None = None, loss_fn: Callable[[nn.Module, Any], Tensor] | None = None,
    scores: Scores | None = None, inplace: bool = False,
) -> nn.Module:
    """Remove ``heads`` of the attention head groups and ``mlp`` of the MLP channels in every layer.

    ``importance='taylor'`` needs calibration ``batches`` and ``loss_fn(model, batch) -> loss`` (or
    precomputed ``scores``). Returns a pruned copy (the input untouched) unless ``inplace``.
    """
    validate_structured(heads, mlp, importance)
    maps = unit_maps(model)
    if scores is None and importance == "taylor":
        if batches is None or loss_fn is None:
            raise ConfigError(
                "importance='taylor' needs calibration `batches` and `loss_fn(model, batch) -> loss`; pass them "
                "or use importance='magnitude'."
            )
        scores = taylor_scores(model, batches, loss_fn)
    scores = magnitude_scores(model, maps) if scores is None else scores
    keep = {kind: _keep(maps, kind, fraction) for kind, fraction in (("heads", heads), ("mlp", mlp))}
    target = model if inplace else copy.deepcopy(model)
    apply_plan(target, sync_plan(plan_pruning(maps, scores, keep)), unit_maps(target))
    return target


def _keep(maps: Mapping[str, UnitMap], kind: UnitKind, fraction: float) -> int | None:
    counts = {m.n_units for m in maps.values() if m.kind == kind}
    if not counts or fraction == 0:
        return None
    n = max(counts)
    if keep_count(n, fraction) == n:
        unit = "KV groups" if kind == "heads" else "channels"
        warnings.warn(
            f"Structured pruning {kind}={fraction} removes none of the {n} {unit} per layer (whole units only); "
            f"raise it to at least {1 / n:.3g}.", stacklevel=3,
        )
    return keep_count(n, fraction)


def match_widths(model: nn.Module, config: "TransformerConfig") -> list[Resized]:
    """Shrink ``model`` to the widths of ``config`` (a pruned checkpoint's) by keeping the first units.

    The weights are placeholders to be overwritten by ``load_state_dict``: this is how a resumed run
    rebuilds the pruned shapes before the checkpoint's state loads into them.
    """
    maps, want = unit_maps(model), config_widths(config)
    plan: Plan = {}
    for name, umap in maps.items():
        module = model.get_submodule(name)
        if umap.kind == "heads" and module.head_dim != want["head_dim"]:
            raise ConfigError(
                f"The checkpoint's head_dim={want['head_dim']} differs from this model's {module.head_dim}: structured "
                "pruning keeps the head size, so this checkpoint was not pruned from this model."
            )
        target = (want["n_kv_heads"] if module.n_kv_heads > 1 else want["n_heads"]) if umap.kind == "heads" \
            else want["mlp_hidden"]
        if target > umap.n_units:
            raise ConfigError(
                f"The checkpoint's {name} has {target} units where this model has {umap.n_units}: a pruned model "
                "can only be rebuilt from the larger one it was pruned from. Check the config and checkpoint."
            )
        if target < umap.n_units:
            plan[name] = torch.arange(target)
    return apply_plan(model, plan, maps)
