"""Reader for tensors saved with ``torch.save`` (loaded with ``weights_only=True``, memory-mapped)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import torch

from nl_lightning.data.readers.base import FileReader, LazyHandle, MissingKeyError, check_file, file_fingerprint
from nl_lightning.errors import DataError


def load_tensor(path: str, key: str | None) -> torch.Tensor:
    """The tensor at ``key`` (or the file's only tensor), memory-mapped when the file allows it."""
    try:
        obj = _load(path)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, ...: say what is allowed
        raise DataError(
            f"'{path}' could not be loaded with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}). Save plain tensors or a dict of tensors with torch.save."
        ) from err
    return _select(obj, path, key)


def _load(path: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
    obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    warnings.warn(f"'{path}' uses the legacy torch format and is loaded into memory, not mapped.", stacklevel=3)
    return obj


def _select(obj: object, path: str, key: str | None) -> torch.Tensor:
    if isinstance(obj, dict):
        tensors = sorted(k for k, v in obj.items() if isinstance(v, torch.Tensor))
        if key is None or key not in obj:
            raise MissingKeyError(f"Key '{key}' not found in '{path}'. Tensor keys in the file: {tensors}.")
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"'{path}' key '{key}' holds a {type(obj).__name__}, not a tensor.")
    return obj


class TorchReader(FileReader):
    """Rows of a tensor in a ``.pt`` file: the whole file when it is one tensor, else ``key`` of a dict."""

    def __init__(self, path: str | Path, key: str | None = None) -> None:
        self.path, self.key = check_file(path), key
        self.source = f"'{self.path}'" + (f" key '{key}'" if key is not None else "")
        tensor = load_tensor(str(self.path), key)
        if tensor.ndim == 0 or len(tensor) == 0:
            raise DataError(f"{self.source} needs at least one row; got shape {tuple(tensor.shape)}.")
        self._shape = tuple(tensor.shape)
        self._dtype = torch.empty(0, dtype=_numpy_compatible(tensor.dtype)).numpy().dtype
        self._tensor = LazyHandle(functools.partial(load_tensor, str(self.path), key))

    def read_batch(self, rows: np.ndarray) -> np.ndarray:
        tensor = self._tensor.get()
        if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
            out = tensor[int(rows[0]) : int(rows[-1]) + 1].clone()
        else:
            out = tensor[torch.from_numpy(np.asarray(rows, dtype=np.int64))]
        return out.to(_numpy_compatible(out.dtype)).numpy()

    def fingerprint(self) -> str:
        return file_fingerprint(self.path, "pt", self.key)


def _numpy_compatible(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype == torch.bfloat16 else dtype
