"""Feed-forward blocks by name: ``gelu`` (two-layer MLP), ``swiglu`` and ``geglu`` (gated, Shazeer 2020)."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from nl_lightning.errors import ConfigError


class Mlp(nn.Module):
    """Linear -> activation -> dropout -> Linear."""

    def __init__(self, d_model: int, hidden: int, act: Callable[[Tensor], Tensor] = F.gelu,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, hidden, bias=bias), nn.Linear(hidden, d_model, bias=bias)
        self.act, self.drop = act, nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class GluMlp(nn.Module):
    """Gated MLP: down(act(gate(x)) * up(x)). SiLU gives SwiGLU, GELU gives GeGLU."""

    def __init__(self, d_model: int, hidden: int, act: Callable[[Tensor], Tensor] = F.silu,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=bias)
        self.up = nn.Linear(d_model, hidden, bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)
        self.act, self.drop = act, nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.drop(self.act(self.gate(x)) * self.up(x)))


#: MLP name -> (module class, activation): the registry behind ``TransformerConfig.mlp`` and :func:`build_mlp`.
MLPS: dict[str, tuple[type[nn.Module], Callable[[Tensor], Tensor]]] = {
    "gelu": (Mlp, F.gelu),
    "swiglu": (GluMlp, F.silu),
    "geglu": (GluMlp, F.gelu),
}


def default_hidden(name: str, d_model: int, multiple_of: int = 32) -> int:
    """4*d for a plain MLP; 2/3 of that for gated ones (same parameter count), rounded up."""
    hidden = 4 * d_model if name == "gelu" else int(8 * d_model / 3)
    return multiple_of * -(-hidden // multiple_of)


GELU_APPROXIMATIONS: tuple[str, ...] = ("none", "tanh")


def build_mlp(
    name: str, d_model: int, hidden: int | None = None, bias: bool = True, dropout: float = 0.0,
    gelu_approximate: str = "none",
) -> nn.Module:
    """The MLP registered as ``name`` (a key of :data:`MLPS`); ``hidden`` defaults by kind;
    ``gelu_approximate='tanh'`` makes its GELU the tanh approximation (GPT-2's ``gelu_new``) in ``gelu``
    and ``geglu``."""
    if name not in MLPS:
        raise ConfigError(f"Unknown mlp {name!r}; choose one of {tuple(MLPS)}.")
    if gelu_approximate not in GELU_APPROXIMATIONS:
        raise ConfigError(f"Unknown gelu_approximate {gelu_approximate!r}; choose one of {GELU_APPROXIMATIONS}.")
    cls, act = MLPS[name]
    if act is F.gelu and gelu_approximate != "none":
        act = partial(F.gelu, approximate=gelu_approximate)
    return cls(d_model, hidden or default_hidden(name, d_model), act=act, bias=bias, dropout=dropout)
