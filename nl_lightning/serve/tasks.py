"""What each task returns, for one batch (batch inference) or a batch of requests (the server).

The server batches requests of different lengths and parameters: ``answer`` groups them by input
shape (and generation settings), runs each group as one batch, and gives every request its own
result or its own error, so one request that breaks the model never fails its neighbours.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nl_lightning.serve.runners import Runner

logger = logging.getLogger(__name__)


@dataclass
class Item:
    """One decoded request: ``x`` is (T,) token ids, (T, F) features or (F,) tabular features."""

    x: np.ndarray
    request_id: str | None = None
    max_new_tokens: int = 0
    temperature: float = 0.0
    top_k: int | None = None
    seed: int | None = None


class ModelOutputError(RuntimeError):
    """The model ran but produced NaN or Inf for an input that passed validation."""


def batch_outputs(runner: Runner, x: np.ndarray) -> dict[str, np.ndarray]:
    """The task's outputs of one batch through a runner (``ModelSignature.outputs``: the task modules'
    own ``task_prediction``), as arrays."""
    outputs = runner.signature.outputs(torch.from_numpy(runner.forward(x)))
    return {name: value.numpy() for name, value in outputs.items()}


def answer(runner: Runner, items: list[Item]) -> list[dict[str, Any] | Exception]:
    """One result dict or one exception per item, in order (a batch of requests of mixed shapes)."""
    results: list[dict[str, Any] | Exception] = [None] * len(items)  # type: ignore[list-item]
    for key, members in _groups(runner, items).items():
        try:
            group = _run_group(runner, [items[i] for i in members])
        except Exception as err:  # a model failure: every request of this group gets it, the worker lives
            ids = [items[i].request_id for i in members]
            logger.exception("Model %s failed on requests %s (input shape %s)", runner.version, ids, key[0])
            group = [err] * len(members)
        for i, result in zip(members, group):
            results[i] = result
    return results


def _groups(runner: Runner, items: list[Item]) -> dict[tuple, list[int]]:
    """Same-shape inputs run together; LM requests also need the same settings, and a seeded one
    runs alone (its samples must not depend on which requests shared its batch)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        key: tuple = (item.x.shape,)
        if runner.signature.task == "lm":
            key += (item.max_new_tokens, item.temperature, item.top_k, item.seed, i if item.seed is not None else -1)
        groups[key].append(i)
    return groups


def _run_group(runner: Runner, items: list[Item]) -> list[dict[str, Any] | Exception]:
    x = np.stack([item.x for item in items])
    if runner.signature.task == "lm":
        first = items[0]
        new = runner.generate(x, first.max_new_tokens, first.temperature, first.top_k, first.seed)
        return [{"tokens": row.tolist()} for row in new]
    columns = batch_outputs(runner, x)
    finite = np.logical_and.reduce([np.isfinite(v.reshape(len(items), -1)).all(axis=1) for v in columns.values()])
    rows = {name: values.tolist() for name, values in columns.items()}  # one conversion per batch, not per row
    results: list[dict[str, Any] | Exception] = []
    for i, item in enumerate(items):
        if finite[i]:
            results.append({name: values[i] for name, values in rows.items()})
        else:
            logger.error("Model %s returned NaN/Inf for request %s", runner.version, item.request_id)
            results.append(ModelOutputError(f"model version {runner.version} returned NaN or Inf for this input"))
    return results
