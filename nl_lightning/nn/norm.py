"""Normalization layers by name: torch's own ``nn.RMSNorm`` and ``nn.LayerNorm``."""

from __future__ import annotations

from torch import nn

from nl_lightning.errors import ConfigError

#: Norm name -> torch module class: the registry behind ``TransformerConfig.norm`` and :func:`build_norm`.
NORMS: dict[str, type[nn.Module]] = {"rmsnorm": nn.RMSNorm, "layernorm": nn.LayerNorm}


def build_norm(name: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """The norm named ``name`` (a key of :data:`NORMS`) over the last dimension of size ``dim``."""
    if name not in NORMS:
        raise ConfigError(f"Unknown norm {name!r}; choose one of {tuple(NORMS)}.")
    return NORMS[name](dim, eps=eps)
