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
