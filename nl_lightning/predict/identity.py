"""What makes two prediction runs the same job: the model that answers and the inputs it reads.

A resumed job keeps the shards an earlier run wrote, so it must be the same job: the plan records
the model's identity (``Predictor``: its backend, artifact and file SHA-256; any other module: its
class and a SHA-256 of its weights) and every shard record holds a SHA-256 of each input batch
it was computed from. Hashing the batches the DataLoader yields anyway costs no extra read, works
for every dataset (files, arrays, a user's own), and catches new data of the same shape, which
sizes, modification times or inodes would miss (or would refuse for a file rewritten unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nl_lightning._io import parts_sha256

__all__ = ["batch_sha256", "model_identity"]


def model_identity(module: nn.Module) -> dict[str, Any]:
    """The model's identity for a job's plan: ``prediction_identity()`` where the module has one
    (``Predictor``), else its class and the SHA-256 of its weights."""
    own = getattr(module, "prediction_identity", None)
    if callable(own):
        return dict(own())
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "weights_sha256": parts_sha256(_state_parts(module))}


def batch_sha256(batch: Any) -> str:
    """SHA-256 of every tensor, array and plain value in ``batch`` (nested dicts / lists / tuples),
    with their names, dtypes and shapes."""
    return parts_sha256(_batch_parts(batch, ""))


def _state_parts(module: nn.Module) -> Iterator[bytes | memoryview]:
    for name, tensor in module.state_dict().items():
        yield from _array_parts(name, tensor)


def _batch_parts(value: Any, name: str) -> Iterator[bytes | memoryview]:
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _batch_parts(value[key], f"{name}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _batch_parts(item, f"{name}/{i}")
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        yield from _array_parts(name, value)
    else:
        yield f"{name}={value!r}\0".encode()


def _array_parts(name: str, value: torch.Tensor | np.ndarray) -> Iterator[bytes | memoryview]:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        dtype, shape = str(value.dtype), tuple(value.shape)
        data = value.cpu().contiguous().reshape(-1).view(torch.uint8).numpy() if value.numel() else b""
    else:
        dtype, shape = str(value.dtype), value.shape
        data = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
    yield f"{name}:{dtype}:{shape}\0".encode()
    yield memoryview(data) if not isinstance(data, bytes) else data
