"""What a classifier or regressor returns, for one batch (batch inference) or a batch of requests (the server).

The server batches requests of different lengths: ``answer`` groups them by input shape, runs each
group as one batch (or several of at most ``max_rows``: a ``/batch_predict`` of a thousand rows),
and gives every request its own result or its own error, so one request that breaks the model never
fails its neighbours. LM requests are decoded by ``serve.generation`` instead.
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
    """One decoded request (or ``/batch_predict`` row): ``x`` is (T,) token ids, (T, F) features or
    (F,) tabular features."""

    x: np.ndarray
    request_id: str | None = None


class ModelOutputError(RuntimeError):
    """The model ran but produced NaN or Inf for an input that passed validation."""


def answer(runner: Runner, items: list[Item], max_rows: int | None = None) -> list[dict[str, Any] | Exception]:
    """One result dict or one exception per item, in order (a batch of requests of mixed shapes);
    ``max_rows``: most rows per forward."""
    results: list[dict[str, Any] | Exception] = [None] * len(items)  # type: ignore[list-item]
    for shape, members in _groups(items, max_rows):
        try:
            group = _run_group(runner, [items[i] for i in members])
        except Exception as err:  # a model failure: every request of this group gets it, the worker lives
            ids = [items[i].request_id for i in members]
            logger.exception("Model %s failed on requests %s (input shape %s)", runner.version, ids, shape)
            group = [err] * len(members)
        for i, result in zip(members, group):
            results[i] = result
    return results


def _groups(items: list[Item], max_rows: int | None) -> list[tuple[tuple, list[int]]]:
    """Same-shape inputs run together, at most ``max_rows`` at a time."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[item.x.shape].append(i)
    size = max_rows or len(items)
    return [(shape, members[start:start + size]) for shape, members in groups.items()
            for start in range(0, len(members), size)]


def _run_group(runner: Runner, items: list[Item]) -> list[dict[str, Any] | Exception]:
    """One forward for same-shape items; the task's outputs (``ModelSignature.outputs``: the task modules'
    own ``task_prediction``) per item, or an error for an item whose raw outputs hold NaN / Inf."""
    n = len(items)
    x = items[0].x[None] if n == 1 else np.stack([item.x for item in items])
    logits = torch.from_numpy(runner.forward(x))
    # finite logits give finite probabilities / values: one check per batch, per row only when it fails
    finite = None if bool(logits.isfinite().all()) else logits.reshape(n, -1).isfinite().all(1).tolist()
    rows = {name: value.tolist() for name, value in runner.signature.outputs(logits).items()}  # once per batch
    results: list[dict[str, Any] | Exception] = []
    for i, item in enumerate(items):
        if finite is None or finite[i]:
            results.append({name: values[i] for name, values in rows.items()})
        else:
            logger.error("Model %s returned NaN/Inf for request %s", runner.version, item.request_id)
            results.append(ModelOutputError(f"model version {runner.version} returned NaN or Inf for this input"))
    return results
