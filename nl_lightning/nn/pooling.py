"""Sequence pooling by name: (B, T, D) -> (B, D). All are padding-aware (mask True = padding)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nl_lightning.errors import ConfigError


def _keep(x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """(B, T, 1) float weights: 1 for real tokens, 0 for padding."""
    if key_padding_mask is None:
        return x.new_ones(x.shape[:2] + (1,))
    return (~key_padding_mask.bool()).unsqueeze(-1).to(x.dtype)


class MeanPool(nn.Module):
    """The mean over the positions that are not padding."""

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        keep = _keep(x, key_padding_mask)
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class ClsPool(nn.Module):
    """The first position's state; the model prepends a learned [CLS] token when this is chosen."""

    prepends_cls = True

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return x[:, 0]


class AttentionPool(nn.Module):
    """One learned query attends over the sequence (single-head, masked softmax)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.key = nn.Linear(dim, dim)
        nn.init.normal_(self.query, std=0.02)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        scores = self.key(x) @ self.query / x.size(-1) ** 0.5  # (B, T)
        if key_padding_mask is not None:
            pad = key_padding_mask.bool()
            pad = pad & ~pad.all(dim=-1, keepdim=True)  # an all-padding row stays finite, as in attention
            scores = scores.masked_fill(pad, float("-inf"))
        weights = scores.softmax(dim=-1).unsqueeze(-1)  # (B, T, 1)
        return (weights * x).sum(1)


class GeMPool(nn.Module):
    """Generalized mean (mean of s^p)^(1/p) with learnable p >= 1 over s = softplus(x).

    GeM needs positive inputs; transformer states are signed, so they go through softplus (smooth,
    > 0, gradient everywhere) rather than a clamp that would zero every negative state and its
    gradient. ``p = 1 + softplus(p_raw)`` keeps the exponent >= 1: p = 1 is the mean of s, large p
    approaches the max.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 1.0:
            raise ConfigError(f"GeMPool p={p} must be > 1 (1 is plain mean pooling; 3 is usual).")
        self.p_raw = nn.Parameter(torch.tensor(math.log(math.expm1(p - 1.0))))  # softplus^-1(p - 1)
        self.eps = eps

    @property
    def p(self) -> Tensor:
        return 1.0 + F.softplus(self.p_raw)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        keep = _keep(x, key_padding_mask)
        p = self.p
        powered = (F.softplus(x) + self.eps).pow(p) * keep  # (B, T, D)
        return (powered.sum(1) / keep.sum(1).clamp_min(1.0)).pow(1.0 / p)


class FirstTokenPooler(nn.Module):
    """BERT's pooler: tanh(Linear(state at position 0)). The tokenizer put [CLS] there, so unlike
    ``ClsPool`` nothing is prepended; the Linear is the pretrained ``pooler.dense``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return torch.tanh(self.dense(x[:, 0]))


#: Pooling names for ``TransformerConfig.pooling`` and :func:`build_pooling`.
POOLINGS: tuple[str, ...] = ("mean", "cls", "attention", "gem", "pooler")


def build_pooling(name: str, dim: int) -> nn.Module:
    """The pooling module named ``name`` (one of :data:`POOLINGS`) for states of width ``dim``."""
    if name == "mean":
        return MeanPool()
    if name == "cls":
        return ClsPool()
    if name == "attention":
        return AttentionPool(dim)
    if name == "gem":
        return GeMPool()
    if name == "pooler":
        return FirstTokenPooler(dim)
    raise ConfigError(f"Unknown pooling {name!r}; choose one of {POOLINGS}.")
