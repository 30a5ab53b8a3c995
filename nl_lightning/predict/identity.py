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

from torch import nn

from nl_lightning._io import arrays_sha256

__all__ = ["batch_sha256", "model_identity"]


def model_identity(module: nn.Module) -> dict[str, Any]:
    """The model's identity for a job's plan: ``prediction_identity()`` where the module has one
    (``Predictor``), else its class and the SHA-256 of its weights."""
    own = getattr(module, "prediction_identity", None)
    if callable(own):
        return dict(own())
    cls = type(module)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "weights_sha256": arrays_sha256(module.state_dict().items())}


def batch_sha256(batch: Any) -> str:
    """SHA-256 of every tensor, array and plain value in ``batch`` (nested dicts / lists / tuples),
    with their names, dtypes and shapes."""
    return arrays_sha256(_leaves(batch, ""))


def _leaves(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            yield from _leaves(value[key], f"{name}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{name}/{i}")
    else:
        yield name, value
