"""``ArrayDataModule``: the same pipeline over NumPy arrays or torch tensors already in memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nl_lightning.data.datamodule import ReaderDataModule, Split
from nl_lightning.data.readers.base import Reader
from nl_lightning.data.readers.memory import MemoryReader
from nl_lightning.errors import ConfigError

Array = np.ndarray | torch.Tensor


class ArrayDataModule(ReaderDataModule):
    """Splits given as arrays (for Python use; from YAML use FileDataModule).

    Example::

        dm = ArrayDataModule(x_train=x, y_train=y, val_fraction=0.1, batch_size=64)
    """

    def __init__(
        self,
        x_train: Array | None = None,
        y_train: Array | None = None,
        x_val: Array | None = None,
        y_val: Array | None = None,
        x_test: Array | None = None,
        y_test: Array | None = None,
        x_predict: Array | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            x_train, y_train: training features (N, ...) and targets (N,) or (N, K).
            x_val, y_val, x_test, y_test: optional held-out splits (or use val_fraction / test_fraction).
            x_predict: features to predict on.
            **kwargs: loader, split, validation, transform and cache settings of ReaderDataModule.
        """
        super().__init__(**kwargs)
        self.arrays: dict[str, tuple[Array | None, Array | None]] = {
            "train": (x_train, y_train),
            "val": (x_val, y_val),
            "test": (x_test, y_test),
            "predict": (x_predict, None),
        }
        for split, (x, y) in self.arrays.items():
            if x is None and y is not None:
                raise ConfigError(f"y_{split} is given without x_{split}; pass both.")

    def missing_hint(self, split: Split) -> str:
        return f"pass x_{split}=... (and y_{split}=...)"

    def open_split(self, split: Split) -> tuple[Reader, Reader | None] | None:
        x, y = self.arrays[split]
        if x is None:
            return None
        return MemoryReader(x, f"x_{split}"), None if y is None else MemoryReader(y, f"y_{split}")
