"""Feature transforms on batches ``(B, ...)``: RandomNoise, RandomScale, Normalize, Compose.

Each is a plain picklable object (configurable from YAML by ``class_path``). Random ones draw
from the ``torch.Generator`` they are given, so a seeded generator makes them reproducible; they
run in DataLoader workers (``transform_on="sample"``) or on the device after transfer
(``transform_on="batch"``). None modify their input in place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from nl_lightning._io import bytes_sha256
from nl_lightning.data.readers.base import MissingKeyError
from nl_lightning.errors import ConfigError, SetupError, WrongTypeError


class Transform(ABC):
    """A function of a batch of features; ``repr`` identifies it (used in cache fingerprints)."""

    @abstractmethod
    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor: ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, sharing one generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return x


class RandomNoise(Transform):
    """Add Gaussian noise of standard deviation ``std`` to every feature."""

    def __init__(self, std: float = 0.1) -> None:
        if std < 0:
            raise ConfigError(f"RandomNoise std must be >= 0; got {std}.")
        self.std = std

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _require_float(x, self)
        return x + self.std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class RandomScale(Transform):
    """Multiply each sample by one factor drawn uniformly from ``[low, high]``."""

    def __init__(self, low: float = 0.9, high: float = 1.1) -> None:
        if low > high:
            raise ConfigError(f"RandomScale needs low <= high; got low={low}, high={high}.")
        self.low, self.high = low, high

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _require_float(x, self)
        scale = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)
        return x * scale.uniform_(self.low, self.high, generator=generator)


class Normalize(Transform):
    """Z-score per feature (last axis): ``(x - mean) / max(std, eps)``.

    Statistics are given or set later with :meth:`set_stats` (the DataModule computes them from
    the training split); :meth:`state_dict` / :meth:`load_state_dict` carry them in checkpoints.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, eps: float = 1e-6):
        self.eps = eps
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self._cache: dict[Any, tuple[Tensor, Tensor]] = {}
        if (mean is None) != (std is None):
            raise ConfigError("Normalize needs both mean and std, or neither (to compute them from data).")
        if mean is not None:
            self.set_stats(mean, std)

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def set_stats(self, mean: Sequence[float] | np.ndarray | Tensor, std: Sequence[float] | np.ndarray | Tensor) -> None:
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float64))
        std = torch.as_tensor(np.asarray(std, dtype=np.float64))
        if mean.shape != std.shape or mean.ndim != 1:
            raise ConfigError(f"Normalize mean and std must be 1-D of equal length; got {tuple(mean.shape)}, {tuple(std.shape)}.")
        self.mean, self.std, self._cache = mean, std, {}

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.mean is None:
            raise SetupError(
                "Normalize has no statistics: fit on training data first, or restore them with "
                "DataModule.load_state_dict / a checkpoint (ckpt_path=...)."
            )
        _require_float(x, self)
        key = (x.device, x.dtype)
        if key not in self._cache:
            std = self.std.clamp_min(self.eps)
            self._cache[key] = (self.mean.to(x.device, x.dtype), std.to(x.device, x.dtype))
        mean, std = self._cache[key]
        return (x - mean) / std

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.mean is None else {"mean": self.mean.clone(), "std": self.std.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            self.set_stats(state["mean"], state["std"])

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Normalize":
        """The statistics a DataModule saved in a Lightning checkpoint (for serving / export)."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        for value in checkpoint.values():
            if isinstance(value, dict) and isinstance(value.get("normalize"), dict) and value["normalize"]:
                norm = cls()
                norm.load_state_dict(value["normalize"])
                return norm
        raise MissingKeyError(f"No Normalize statistics in checkpoint '{path}'; was it trained with normalize=True?")

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_cache": {}}

    def __repr__(self) -> str:
        if self.mean is None:
            return f"Normalize(eps={self.eps})"
        digest = bytes_sha256(self.mean.numpy().tobytes() + self.std.numpy().tobytes())[:12]
        return f"Normalize(eps={self.eps}, stats={digest})"


def _require_float(x: Tensor, transform: Transform) -> None:
    if not x.is_floating_point():
        raise WrongTypeError(
            f"{type(transform).__name__} needs floating-point features; got {x.dtype}. "
            "Remove it for token-id data or set feature_dtype to a float type."
        )
