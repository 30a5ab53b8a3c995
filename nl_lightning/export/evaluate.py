"""``evaluate``: accuracy and loss of any runner (eager, ORT session, quantized) on validation batches.

Logits of shape (B, C) with class ids (B,), or (B, T, V) with next-token ids (B, T), are read the
same way: every position is one prediction. This is how a compressed variant is compared with
the fp32 model on the same data, whatever runs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nl_lightning.errors import DataError
from nl_lightning.export.inputs import batch_input, batch_target


def evaluate(
    run: Callable[[Tensor], Tensor], batches: Iterable[Any], max_batches: int | None = None,
) -> dict[str, float]:
    """``{"accuracy": percent, "loss": mean cross-entropy, "samples": n}`` over the first ``max_batches``."""
    correct, total, loss_sum = 0, 0, 0.0
    with torch.inference_mode():
        for batch in itertools.islice(batches, max_batches):
            logits, target = run(batch_input(batch)).float(), batch_target(batch)
            if target.is_floating_point():
                raise DataError(
                    "evaluate() compares classification / LM logits with integer targets; got float targets "
                    f"{tuple(target.shape)} (a regression task). Compare outputs with export.parity instead."
                )
            flat, labels = logits.reshape(-1, logits.size(-1)), target.reshape(-1).long()
            loss_sum += float(F.cross_entropy(flat, labels, reduction="sum"))
            correct += int((flat.argmax(-1) == labels).sum())
            total += labels.numel()
    if total == 0:
        raise DataError("evaluate() got no batches; check the validation DataLoader and max_batches.")
    return {"accuracy": 100.0 * correct / total, "loss": loss_sum / total, "samples": total}


def agreement(run_a: Callable[[Tensor], Tensor], run_b: Callable[[Tensor], Tensor], batches: Iterable[Any],
              max_batches: int | None = None) -> float:
    """Percent of predictions (argmax) on which two runners agree."""
    same, total = 0, 0
    with torch.inference_mode():
        for batch in itertools.islice(batches, max_batches):
            x = batch_input(batch)
            a, b = run_a(x).float().argmax(-1), run_b(x).float().argmax(-1)
            same += int((a == b).sum())
            total += a.numel()
    return 100.0 * same / max(total, 1)
