"""A preallocated key/value cache for incremental decoding (one per attention layer)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nl_lightning.errors import DataError


class KVCache(nn.Module):
    """Holds keys and values of past positions: (B, Hkv, max_len, D), filled left to right."""

    def __init__(
        self, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.size(2)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``/``v`` (B, Hkv, T, D) and return everything cached so far."""
        end = self.length + k.size(2)
        if end > self.max_len:
            raise DataError(
                f"KVCache is full: {self.length} cached + {k.size(2)} new > max_len={self.max_len}. "
                "Allocate a larger cache (max_len >= prompt length + max_new_tokens)."
            )
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reset(self) -> None:
        self.length = 0


class RaggedKVCache(nn.Module):
    """Keys and values of sequences of different lengths decoded together (continuous batching).

    Row ``r`` holds ``lengths[r]`` positions of its own sequence; ``update`` appends each row's new
    keys after that row's last position, so rows need not be aligned (no left padding). Sequences
    join (``add``) and leave (``remove``: the last row moves into the hole) between forwards; only
    the first ``rows`` rows take part in one. Attention must mask each row's keys past its length:
    ``Transformer.forward(positions=...)`` builds that mask from the rows' positions.
    """

    def __init__(
        self, capacity: int, n_kv_heads: int, max_len: int, head_dim: int,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        shape = (capacity, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.lengths: list[int] = []
        """Positions each active row holds, in row order (a plain list: no device sync per step)."""

    @property
    def rows(self) -> int:
        """Sequences held now."""
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        """Most sequences it can hold."""
        return self.k.size(0)

    @property
    def max_len(self) -> int:
        return self.k.size(2)

    @property
    def length(self) -> int:
        """The longest row: a forward's keys are ``length + T`` wide (shorter rows are masked)."""
        return max(self.lengths, default=0)

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``/``v`` (rows, Hkv, T, D), each row after its own last position; return the
        keys and values of every active row, ``length`` (after the append) wide."""
        rows, steps = k.size(0), k.size(2)
        if rows != self.rows:
            raise DataError(f"RaggedKVCache holds {self.rows} rows but got keys for {rows}; add or remove rows first.")
        end = self.length + steps
        if end > self.max_len:
            raise DataError(
                f"RaggedKVCache is full: a row of {self.length} cached + {steps} new > max_len={self.max_len}. "
                "Re-fill that row from its last tokens (BatchDecoder does) or allocate a larger cache."
            )
        start = torch.tensor(self.lengths, device=k.device)[:, None] + torch.arange(steps, device=k.device)
        index = start[:, None, :, None].expand(rows, k.size(1), steps, k.size(3))  # (rows, Hkv, T, D)
        self.k[:rows].scatter_(2, index, k)
        self.v[:rows].scatter_(2, index, v)
        self.lengths = [n + steps for n in self.lengths]
        return self.k[:rows, :, :end], self.v[:rows, :, :end]

    def add(self, k: Tensor, v: Tensor) -> int:
        """A new row holding ``k``/``v`` (Hkv, L, D) at positions 0..L-1; returns its index."""
        if self.rows == self.capacity:
            raise DataError(f"RaggedKVCache has no free row (capacity={self.capacity}); remove a finished one first.")
        self.lengths.append(0)
        self.load(self.rows - 1, k, v)
        return self.rows - 1

    def load(self, row: int, k: Tensor, v: Tensor) -> None:
        """Replace row ``row``'s contents with ``k``/``v`` (Hkv, L, D) at positions 0..L-1."""
        if k.size(1) > self.max_len:
            raise DataError(f"{k.size(1)} positions do not fit a RaggedKVCache row of max_len={self.max_len}.")
        self.k[row, :, : k.size(1)] = k
        self.v[row, :, : k.size(1)] = v
        self.lengths[row] = k.size(1)

    def remove(self, row: int) -> None:
        """Drop row ``row``; the last row takes its place (callers mirror this order)."""
        last = self.rows - 1
        if row != last:
            n = self.lengths[last]
            self.k[row, :, :n] = self.k[last, :, :n]
            self.v[row, :, :n] = self.v[last, :, :n]
            self.lengths[row] = n
        self.lengths.pop()
