"""Learned absolute position embeddings, and the registry of position schemes by name."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nl_lightning.errors import DataError

#: Position encodings for ``TransformerConfig.position``.
POSITIONS: tuple[str, ...] = ("rope", "alibi", "learned", "none")


class LearnedPositionalEmbedding(nn.Module):
    """A trainable vector per position (GPT-2/BERT), added to the token embeddings."""

    def __init__(self, max_seq_len: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_seq_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """``offset``: the first position (every row), or each token's position, (B, T) long (rows of
        different lengths decoded together)."""
        if isinstance(offset, Tensor):
            self._check(int(offset.max()) + 1)
            return x + self.weight[offset]
        self._check(offset + x.size(1))
        return x + self.weight[offset : offset + x.size(1)]

    def _check(self, end: int) -> None:
        if end > self.weight.size(0):
            raise DataError(
                f"Sequence reaches position {end} but learned positions stop at max_seq_len="
                f"{self.weight.size(0)}; shorten the input or raise TransformerConfig.max_seq_len."
            )
