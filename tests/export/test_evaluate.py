from __future__ import annotations

import pytest
import torch

from nl_lightning.export.evaluate import agreement, evaluate


def test_evaluate_counts_every_prediction():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    batches = [(torch.arange(2), torch.tensor([0, 1])), (torch.arange(2, 4), torch.tensor([1, 0]))]
    metrics = evaluate(lambda x: logits[x], batches)
    assert metrics["accuracy"] == 75.0 and metrics["samples"] == 4
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1, 0])).item()
    assert metrics["loss"] == pytest.approx(expected)
    assert evaluate(lambda x: logits[x], batches, max_batches=1)["accuracy"] == 100.0


def test_evaluate_reads_lm_logits_per_position():
    x = torch.zeros(2, 3, dtype=torch.long)
    logits = torch.zeros(2, 3, 5)
    logits[..., 4] = 1.0
    targets = torch.tensor([[4, 4, 0], [4, 1, 4]])
    assert evaluate(lambda _: logits, [(x, targets)])["accuracy"] == pytest.approx(400 / 6)


def test_agreement():
    a, b = (lambda x: torch.eye(2)[x]), (lambda x: torch.eye(2)[torch.zeros_like(x)])
    assert agreement(a, b, [(torch.tensor([0, 1]), None)]) == 50.0


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ([], "got no batches"),
        ([(torch.zeros(2, 1), torch.zeros(2))], "got float targets"),
    ],
)
def test_evaluate_errors(batches, match):
    with pytest.raises(ValueError, match=match):
        evaluate(lambda x: torch.zeros(x.size(0), 2), batches)
