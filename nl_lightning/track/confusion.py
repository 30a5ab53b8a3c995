"""Per-class precision and recall from a confusion matrix, and the matrix as a picture.

The matrix comes from torchmetrics' ``MulticlassConfusionMatrix`` (rows = true class, columns =
predicted class), and so does the picture (its own ``.plot``). A class never predicted has
precision 0, one never present has recall 0 (torchmetrics' ``zero_division=0`` convention).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def per_class_scores(matrix: Tensor) -> dict[str, Tensor]:
    """``{"precision": (C,), "recall": (C,)}`` from a (C, C) count matrix."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"Expected a square (C, C) confusion matrix, got shape {tuple(matrix.shape)}.")
    m = matrix.double()
    hits = m.diagonal()
    predicted, actual = m.sum(0), m.sum(1)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), torch.zeros_like(hits))
    recall = torch.where(actual > 0, hits / actual.clamp_min(1), torch.zeros_like(hits))
    return {"precision": precision.float(), "recall": recall.float()}


def score_metrics(matrix: Tensor, prefix: str = "val/", labels: list[str] | None = None) -> dict[str, float]:
    """``{prefix}precision/<class>`` and ``{prefix}recall/<class>`` for every class."""
    scores = per_class_scores(matrix)
    names = labels or [str(i) for i in range(matrix.shape[0])]
    return {f"{prefix}{kind}/{name}": float(value)
            for kind, values in scores.items() for name, value in zip(names, values)}


def confusion_figure(metric: Any, matrix: Tensor, labels: list[str] | None = None) -> Any:
    """The matplotlib figure of ``metric.plot`` (torchmetrics' own drawing of the matrix)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    fig, _ = metric.plot(val=matrix.cpu(), labels=labels)
    return fig
