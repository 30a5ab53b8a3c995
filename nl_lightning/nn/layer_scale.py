"""LayerScale: a learnable per-channel gain on each residual branch (CaiT, Touvron et al. 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch, started small (CaiT, Touvron et al. 2021)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma
