"""Reader over an in-memory NumPy array or torch tensor."""

from __future__ import annotations


import numpy as np
import torch

from nl_lightning._io import bytes_sha256
from nl_lightning.data.readers.base import Reader, read_sorted
from nl_lightning.errors import DataError


def to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A NumPy view of ``array``; CPU copy for device tensors, float32 for bfloat16."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        if array.dtype == torch.bfloat16:
            array = array.float()
        return array.numpy()
    return np.asarray(array)


class MemoryReader(Reader):
    """Rows of an array already in memory (``name`` is used in error messages)."""

    def __init__(self, array: np.ndarray | torch.Tensor, name: str = "array") -> None:
        self._array = to_numpy(array)
        if self._array.ndim == 0:
            raise DataError(f"{name} is a scalar; a data source needs at least one dimension (rows).")
        if self._array.dtype == object:
            raise DataError(f"{name} has dtype object; pass a numeric array.")
        self.source = f"<{name}>"

    def __len__(self) -> int:
        return len(self._array)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        return read_sorted(self._array, rows)

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        return read_sorted(self._array, rows, out=out)

    def fingerprint(self) -> str:
        data = np.ascontiguousarray(self._array)
        meta = f"{data.dtype}{data.shape}".encode()
        return bytes_sha256(meta + data.view(np.uint8).reshape(-1).tobytes())[:16]
