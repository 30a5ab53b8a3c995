"""Per-feature mean and standard deviation in one streaming pass (Chan et al. parallel update)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from nl_lightning.errors import DataError


class RunningMoments:
    """Count, mean and sum of squared deviations per feature (last axis), merged chunk by chunk.

    Exact in float64 up to rounding, stable for large counts, and equal to
    ``x.reshape(-1, F).mean(0)`` / ``.std(0)`` (population std) over all the chunks seen. Vectors
    holding NaN or Inf are left out (``skipped`` counts them): one bad row kept by
    ``on_bad="warn"`` must not turn every statistic, and so every normalized row, into NaN.
    """

    def __init__(self) -> None:
        self.count = 0
        self.skipped = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, chunk: np.ndarray) -> None:
        flat = np.asarray(chunk, dtype=np.float64).reshape(-1, chunk.shape[-1] if chunk.ndim > 1 else 1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            self.skipped += int((~finite).sum())
            flat = flat[finite]
        n = len(flat)
        if n == 0:
            return
        mean = flat.mean(axis=0)
        m2 = ((flat - mean) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        if self.m2 is None:
            raise DataError("No finite data seen: the split used for statistics is empty or all NaN/Inf.")
        return np.sqrt(self.m2 / self.count)


def feature_moments(chunks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` per feature over every chunk, reading each chunk once."""
    moments = RunningMoments()
    for chunk in chunks:
        moments.update(chunk)
    std = moments.std
    return moments.mean, std
