"""``answer``: a batch of requests in, one result or one error per request out, in order."""

from __future__ import annotations

import numpy as np
from pytest import approx

from nl_lightning.serve.registry import ModelSource
from nl_lightning.serve.runners import Runner
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.tasks import Item, ModelOutputError, answer


class Rows(Runner):
    """Returns fixed logits, one row per input, whatever the input holds."""

    backend, sha256 = "test", "0"

    def __init__(self, task: str, logits: np.ndarray) -> None:
        self.source = ModelSource("9", None, None)  # type: ignore[arg-type]
        self.signature = ModelSignature(task, None, 2, 4, logits.shape[1])
        self.logits = logits.astype(np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.logits[: len(x)]

    def generate(self, idx, max_new_tokens, temperature, top_k, seed=None):
        raise AssertionError("not an LM")


def items(n: int) -> list[Item]:
    return [Item(np.zeros((3, 2), np.float32), f"r{i}") for i in range(n)]


def test_only_the_row_with_nan_fails_and_every_other_row_is_its_own():
    logits = np.array([[0.0, np.log(3.0)], [np.nan, 1.0], [np.log(4.0), 0.0], [1.0, 1.0]])
    results = answer(Rows("classification", logits), items(4))
    assert isinstance(results[1], ModelOutputError) and "returned NaN or Inf" in str(results[1])
    assert results[0] == {"probabilities": approx([0.25, 0.75], abs=1e-7), "label": 1}
    assert results[2] == {"probabilities": approx([0.8, 0.2], abs=1e-7), "label": 0}
    assert results[3] == {"probabilities": approx([0.5, 0.5], abs=1e-7), "label": 0}
    assert all(type(p) is float for p in results[0]["probabilities"]) and type(results[0]["label"]) is int


def test_regression_rows_and_an_infinite_value():
    logits = np.array([[1.5, -2.0], [3.0, np.inf]])
    results = answer(Rows("regression", logits), items(2))
    assert results[0] == {"values": [1.5, -2.0]} and isinstance(results[1], ModelOutputError)
