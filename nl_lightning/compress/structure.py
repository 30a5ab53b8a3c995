"""Where the removable structures of our blocks sit: attention head groups and MLP hidden channels.

A ``UnitMap`` says, for one ``SelfAttention`` or MLP module, which rows or columns of each of its
parameters belong to which *unit*. Scoring (``importance.py``) sums over a unit's slices and
slicing (``structured.py``) keeps whole units, so both read the layout from this one place.

Units:

- attention with ``n_kv_heads > 1`` (MHA, GQA): one KV group = its key and value head and the
  ``n_heads / n_kv_heads`` query heads that read them (rows of ``q_proj``, the k and v rows of the
  fused ``kv_proj``, columns of ``out_proj``), so a pruned model is still a plain GQA model;
- attention with one KV head (MQA): one query head (the shared key/value rows stay);
- ``Mlp``: one hidden channel (row of ``fc1``, column of ``fc2``); ``GluMlp``: one channel of
  ``gate`` and ``up`` (rows) and ``down`` (column) together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError
from nl_lightning.nn.attention import SelfAttention
from nl_lightning.nn.mlp import GluMlp, Mlp

__all__ = ["SHARED", "Slice", "UnitKind", "UnitMap", "attention_units", "mlp_units", "unit_maps", "unit_sums"]

#: What a unit is: an attention head group (``"heads"``) or an MLP hidden channel (``"mlp"``).
UnitKind = Literal["heads", "mlp"]
SHARED = -1
"""Unit id of a row or column that belongs to no unit (the shared key/value head of MQA)."""


@dataclass
class Slice:
    """The ``dim`` of parameter ``name`` (relative to its module) runs over units ``unit[i]``."""

    name: str
    dim: int
    unit: Tensor


@dataclass
class UnitMap:
    """The units of one module: how many, and where each parameter holds them."""

    kind: UnitKind
    n_units: int
    slices: list[Slice]


def attention_units(attn: SelfAttention) -> UnitMap:
    """KV groups (or query heads under MQA) of ``attn``; see the module docstring."""
    heads, groups, d = attn.n_heads, attn.n_kv_heads, attn.head_dim
    head_of_row = torch.arange(heads * d) // d  # q_proj rows, out_proj columns: (H * D,)
    if groups > 1:
        q_unit = head_of_row // (heads // groups)  # query head h reads KV head h // (H / G)
        kv_unit = (torch.arange(2 * groups * d) % (groups * d)) // d  # kv_proj rows are (k | v) x G x D
        n_units = groups
    else:
        q_unit, kv_unit, n_units = head_of_row, torch.full((2 * d,), SHARED), heads
    slices = [Slice("q_proj.weight", 0, q_unit), Slice("kv_proj.weight", 0, kv_unit),
              Slice("out_proj.weight", 1, q_unit)]
    if attn.q_proj.bias is not None:
        slices += [Slice("q_proj.bias", 0, q_unit), Slice("kv_proj.bias", 0, kv_unit)]
    return UnitMap("heads", n_units, slices)


def mlp_units(mlp: Mlp | GluMlp) -> UnitMap:
    """Hidden channels of a plain or gated MLP; see the module docstring."""
    inputs, output = (("fc1",), "fc2") if isinstance(mlp, Mlp) else (("gate", "up"), "down")
    hidden = getattr(mlp, output).in_features
    unit = torch.arange(hidden)
    slices = [Slice(f"{name}.weight", 0, unit) for name in inputs] + [Slice(f"{output}.weight", 1, unit)]
    slices += [Slice(f"{name}.bias", 0, unit) for name in inputs if getattr(mlp, name).bias is not None]
    return UnitMap("mlp", hidden, slices)


def unit_maps(model: nn.Module) -> dict[str, UnitMap]:
    """``{"transformer.blocks.0.attn": UnitMap, "transformer.blocks.0.mlp": UnitMap, ...}`` in model order."""
    maps: dict[str, UnitMap] = {}
    for name, module in model.named_modules():
        if isinstance(module, SelfAttention):
            maps[name] = attention_units(module)
        elif isinstance(module, (Mlp, GluMlp)):
            maps[name] = mlp_units(module)
    if not maps:
        raise ConfigError(
            f"{type(model).__name__} has no nl_lightning SelfAttention or MLP blocks to prune; structured pruning "
            "needs a model built from nl_lightning.nn (CausalLM, SequenceClassifier, Transformer)."
        )
    return maps


def unit_sums(values: Tensor, piece: Slice, n_units: int) -> Tensor:
    """(n_units,) sums of ``values`` (shaped like the parameter) over each unit's rows or columns."""
    per_index = values.float().transpose(0, piece.dim).reshape(values.size(piece.dim), -1).sum(1)
    keep = piece.unit != SHARED
    return torch.zeros(n_units, device=values.device).index_add_(0, piece.unit[keep].to(values.device), per_index[keep])
