"""How our tensors and a checkpoint format's tensors correspond: one ``Rule`` per group of names.

A rule says that our tensors ``ours`` and the file's ``theirs`` hold the same numbers in another
layout, and converts both ways. An architecture is a list of rules built from its config; the
same list exports a model, imports a file, and (applied to a model built on the meta device)
tells which tensors and shapes a file must have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Rule", "export_tensors", "import_tensors", "joined", "same", "split", "transposed"]

Convert = Callable[[list[Tensor]], list[Tensor]]


@dataclass(frozen=True)
class Rule:
    """``ours`` (our state-dict names) and ``theirs`` (the file's names), with both conversions."""

    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    to_theirs: Convert
    to_ours: Convert


def same(ours: str, theirs: str) -> Rule:
    """The same tensor under another name."""
    return Rule((ours,), (theirs,), list, list)


def transposed(ours: str, theirs: str) -> Rule:
    """GPT-2's ``Conv1D`` stores a linear layer's weight as (in, out); ``nn.Linear`` as (out, in)."""
    flip: Convert = lambda ts: [ts[0].t().contiguous()]
    return Rule((ours,), (theirs,), flip, flip)


def joined(ours: str, theirs: Sequence[str], sizes: Sequence[int]) -> Rule:
    """Our one tensor is theirs stacked along dim 0 (rows ``sizes``): k_proj + v_proj = kv_proj."""
    return Rule((ours,), tuple(theirs), lambda ts: list(ts[0].split(list(sizes))), lambda ts: [_cat(ts)])


def split(ours: Sequence[str], theirs: str, sizes: Sequence[int], conv1d: bool = False) -> Rule:
    """Their one tensor is ours stacked along dim 0 (rows ``sizes``); ``conv1d``: stored transposed
    (GPT-2's ``c_attn``: q and kv side by side in one (in, 3 * out) matrix)."""
    def to_theirs(ts: list[Tensor]) -> list[Tensor]:
        whole = _cat(ts)
        return [whole.t().contiguous() if conv1d else whole]

    def to_ours(ts: list[Tensor]) -> list[Tensor]:
        whole = ts[0].t() if conv1d else ts[0]
        return [part.contiguous() for part in whole.split(list(sizes))]

    return Rule(tuple(ours), (theirs,), to_theirs, to_ours)


def export_tensors(rules: Sequence[Rule], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict -> the format's tensors (works on meta tensors: shapes without data)."""
    out: dict[str, Tensor] = {}
    for rule in rules:
        out.update(zip(rule.theirs, rule.to_theirs([state[name] for name in rule.ours]), strict=True))
    return out


def import_tensors(rules: Sequence[Rule], get: Callable[[str], Tensor]) -> dict[str, Tensor]:
    """The format's tensors (``get(name)``) -> our state dict."""
    out: dict[str, Tensor] = {}
    for rule in rules:
        out.update(zip(rule.ours, rule.to_ours([get(name) for name in rule.theirs]), strict=True))
    return out


def _cat(tensors: list[Tensor]) -> Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
