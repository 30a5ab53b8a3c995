"""Stochastic depth: drop whole residual branches per sample (Huang et al., 2016)."""

from __future__ import annotations

from torch import Tensor, nn

from nl_lightning.errors import ConfigError


def drop_path(x: Tensor, p: float = 0.0, training: bool = False) -> Tensor:
    """Zero the branch for a random subset of samples and rescale the rest by 1 / (1 - p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.size(0),) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth as a module: :func:`drop_path` with probability ``p`` while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"DropPath probability must be in [0, 1), got {p}.")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_schedule(rate: float, n_layers: int) -> list[float]:
    """Linear schedule: 0 for the first layer up to ``rate`` for the last.

    >>> drop_path_schedule(0.2, 3)
    [0.0, 0.1, 0.2]
    """
    if n_layers == 1:
        return [rate]
    return [rate * i / (n_layers - 1) for i in range(n_layers)]
