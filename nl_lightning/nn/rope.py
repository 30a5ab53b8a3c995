"""Rotary position embedding (RoPE): rotate query/key pairs by position-dependent angles.

Scores then depend only on the relative offset between positions (Su et al., 2021). An optional
``scaling`` (see ``rope_scaling.py``) stretches the frequencies for longer contexts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError
from nl_lightning.nn.rope_scaling import scale_inv_freq


def rope_cache(
    seq_len: int, head_dim: int, base: float = 10000.0, device=None, scaling: dict[str, Any] | None = None,
) -> tuple[Tensor, Tensor]:
    """cos/sin tables of shape (seq_len, head_dim // 2), computed in fp32."""
    if head_dim % 2:
        raise ConfigError(f"RoPE needs an even head_dim, got {head_dim}; pick d_model / n_heads even.")
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    inv_freq = scale_inv_freq(inv_freq, scaling)
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (B, H, T, D) with tables (T, D/2), or (B, 1, T, D/2) per row, using the half-split
    (GPT-NeoX/llama) layout."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Caches fp32 cos/sin tables up to ``max_seq_len``; ``forward(T, offset)`` slices them.

    ``forward`` never writes module state (safe under ``inference_mode``, ``torch.compile`` and
    FSDP): positions past the cache are computed on the fly, and a dtype cast rebuilds the
    tables in fp32 at cast time, outside inference mode, so they stay usable for training.
    """

    def __init__(
        self, head_dim: int, max_seq_len: int, base: float = 10000.0, scaling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.head_dim, self.base, self.scaling = head_dim, base, scaling
        cos, sin = rope_cache(max_seq_len, head_dim, base, scaling=scaling)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        super()._apply(fn, recurse)
        if self.cos.dtype != torch.float32:  # .half() / .to(bfloat16): angles need fp32
            self.reset_tables(self.cos.device)
        return self

    def reset_tables(self, device: torch.device | str | None = None) -> None:
        """Recompute the fp32 tables on ``device`` (after a dtype cast, or when the model was built on
        the meta device and its weights were assigned from a file: the tables are not in a state dict)."""
        with torch.inference_mode(False):
            self.cos, self.sin = rope_cache(self.cos.size(0), self.head_dim, self.base, device, self.scaling)

    def forward(self, seq_len: int, offset: int = 0) -> tuple[Tensor, Tensor]:
        end = offset + seq_len
        if end > self.cos.size(0):  # RoPE has no length limit: extend for this call only
            cos, sin = rope_cache(end, self.head_dim, self.base, self.cos.device, self.scaling)
            return cos[offset:end], sin[offset:end]
        return self.cos[offset:end], self.sin[offset:end]

    def at(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Tables for each token's own position: ``positions`` (B, T) -> (B, 1, T, D/2) each, which
        ``apply_rope`` broadcasts over heads (rows of different lengths decoded together)."""
        cos, sin = self(int(positions.max()) + 1)  # the tables of positions 0..max (extended if needed)
        return cos[positions][:, None], sin[positions][:, None]
