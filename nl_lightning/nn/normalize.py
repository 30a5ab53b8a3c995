"""Input normalization as part of the model: ``(x - mean) / std`` with the statistics as buffers.

Statistics that change the function a model computes belong to the model: kept in its
``state_dict`` they travel with the checkpoint, into the exported graph and to any server, so all
of them compute the same function on raw features. Until statistics are set the module is the
identity (a model trained without normalization), and its buffers are empty.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nl_lightning.errors import DataError


class FeatureNorm(nn.Module):
    """Per-feature z-score over the last dimension; the identity until :meth:`set_stats`."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    @property
    def fitted(self) -> bool:
        return self.mean.numel() > 0

    def set_stats(self, mean: Any, std: Any) -> None:
        """Per-feature ``mean`` and ``std`` (1-D, equal length, finite); std is floored at ``eps``."""
        mean = torch.as_tensor(mean, dtype=torch.float32).detach().flatten().clone()
        std = torch.as_tensor(std, dtype=torch.float32).detach().flatten().clone()
        if mean.shape != std.shape or mean.numel() == 0:
            raise DataError(f"FeatureNorm needs mean and std of equal, non-zero length; got {tuple(mean.shape)} and {tuple(std.shape)}.")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
            raise DataError("FeatureNorm statistics contain NaN or Inf: compute them from finite rows only.")
        device = self.mean.device
        self.mean, self.std = mean.to(device), std.clamp_min(self.eps).to(device)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            return x
        if x.size(-1) != self.mean.numel():
            raise DataError(
                f"This model normalizes {self.mean.numel()} features (statistics of its training data), but the "
                f"input's last dimension is {x.size(-1)} (shape {tuple(x.shape)}); pass raw features of the "
                "training layout."
            )
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Buffers take the saved statistics' length; checkpoints from before normalization lived in
        # the model have none, which means "no normalization" (the identity), not an error.
        for name in ("mean", "std"):
            if prefix + name in state_dict:
                saved = state_dict[prefix + name]
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        absent = [prefix + name for name in ("mean", "std") if prefix + name not in state_dict]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for key in absent:
            if key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"features={self.mean.numel()}" if self.fitted else "identity (no statistics)"
