"""A learnable sequence-classification task generated on the fly (no files, no download).

``features``: x ~ N(0, 1) of shape (T, F); the class is the channel (among the first
``num_classes``) with the largest mean over time. ``tokens``: ids in [0, vocab); the class is the
most frequent of the ids 0..num_classes-1. Both are deterministic under ``seed``.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from nl_lightning.errors import ConfigError


def make_sequences(
    kind: str, num_samples: int, seq_len: int, num_features: int, num_classes: int, vocab_size: int, seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "features":
        x = torch.randn(num_samples, seq_len, num_features, generator=g)
        y = x[:, :, :num_classes].mean(1).argmax(-1)
    else:
        x = torch.randint(0, vocab_size, (num_samples, seq_len), generator=g)
        counts = torch.stack([(x == c).sum(1) for c in range(num_classes)], dim=1)
        y = counts.argmax(-1)
    return x, y


class SyntheticSequenceDataModule(L.LightningDataModule):
    """Train/val/test splits of a generated task; batches are ``(x, y)``."""

    def __init__(
        self, kind: Literal["features", "tokens"] = "features", num_samples: int = 2048, seq_len: int = 16,
        num_features: int = 8, num_classes: int = 3, vocab_size: int = 16, batch_size: int = 64,
        val_fraction: float = 0.2, seed: int = 0, num_workers: int = 0,
    ) -> None:
        super().__init__()
        if kind not in ("features", "tokens"):
            raise ConfigError(f"kind={kind!r} is not supported; choose 'features' or 'tokens'.")
        if kind == "features" and num_classes > num_features:
            raise ConfigError(f"kind='features' needs num_classes ({num_classes}) <= num_features ({num_features}).")
        if kind == "tokens" and num_classes > vocab_size:
            raise ConfigError(f"kind='tokens' needs num_classes ({num_classes}) <= vocab_size ({vocab_size}).")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction={val_fraction} must be in (0, 1).")
        self.save_hyperparameters()
        self.kind, self.num_samples, self.seq_len = kind, num_samples, seq_len
        self.num_features, self.num_classes, self.vocab_size = num_features, num_classes, vocab_size
        self.batch_size, self.val_fraction, self.seed, self.num_workers = batch_size, val_fraction, seed, num_workers

    def setup(self, stage: str | None = None) -> None:
        x, y = make_sequences(self.kind, self.num_samples, self.seq_len, self.num_features,
                              self.num_classes, self.vocab_size, self.seed)
        n_val = max(1, int(self.num_samples * self.val_fraction))
        self.train_set = TensorDataset(x[n_val:], y[n_val:])
        self.val_set = TensorDataset(x[:n_val], y[:n_val])

    def label_range(self) -> tuple[int, int, str] | None:
        """``(0, num_classes - 1, source)``: the class ids this task draws (see ``ReaderDataModule.label_range``)."""
        return 0, self.num_classes - 1, f"SyntheticSequenceDataModule(num_classes={self.num_classes})"

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)
