"""ALiBi: a per-head linear distance penalty added to attention scores (Press et al., 2022)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError


def alibi_slopes(n_heads: int) -> Tensor:
    """Geometric slopes 2^(-8 i / n) for a power-of-two ``n``; otherwise the paper's rule:
    the slopes of the closest lower power of two, then every other slope of twice that.

    >>> alibi_slopes(4)
    tensor([0.2500, 0.0625, 0.0156, 0.0039])
    >>> alibi_slopes(6)   # the 4 slopes above, then every other one of alibi_slopes(8)
    tensor([0.2500, 0.0625, 0.0156, 0.0039, 0.5000, 0.1250])
    """
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_heads < 1:
        raise ConfigError(f"alibi_slopes needs n_heads >= 1, got {n_heads}.")
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(closest)
    if closest != n_heads:
        slopes += power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, t_q: int, t_k: int) -> Tensor:
    """(H, Tq, Tk) bias ``-slope * |i - j|``; queries are the last ``t_q`` of ``t_k`` positions.
    For causal models future keys are masked anyway, so this equals the paper's ``-slope * (i - j)``."""
    q_pos = torch.arange(t_k - t_q, t_k, device=slopes.device)[:, None]
    k_pos = torch.arange(t_k, device=slopes.device)[None, :]
    distance = (q_pos - k_pos).abs().float()
    return -slopes[:, None, None] * distance


class ALiBi(nn.Module):
    """Holds the slopes; ``forward(t_q, t_k)`` returns a (1, H, Tq, Tk) additive bias."""

    def __init__(self, n_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)

    def forward(self, t_q: int, t_k: int) -> Tensor:
        return alibi_bias(self.slopes, t_q, t_k)[None]
