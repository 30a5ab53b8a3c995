"""``compare_variants``: size and validation metrics of each variant against eager fp32.

``size_ratio`` = fp32 bytes / variant bytes (3.8 = 3.8x smaller); ``agreement`` = percent of
predictions (argmax) equal to eager fp32's; deltas are variant minus fp32: ``accuracy_delta`` in
percentage points, ``loss_delta`` in nats. Latency is not measured here: timing needs repeated,
interleaved runs on a quiet machine (``nl_lightning.export.profile``, ``nl-lightning profile``,
``benchmarks/compression.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from nl_lightning.export.evaluate import agreement, evaluate
from nl_lightning.export.variants import Variant, VariantBuilder


def compare_variants(
    builder: VariantBuilder, names: Sequence[str], batches: Iterable[Any] | None, eval_batches: int | None = 20,
) -> list[dict[str, Any]]:
    """One row per variant (eager fp32 first). ``batches=None`` skips the metrics (no data)."""
    # Materialize the evaluated batches once: every variant sees exactly the same data.
    batches = list(itertools.islice(batches, eval_batches)) if batches is not None else None
    eager = builder.build("eager")
    rows = [_measure(eager, eager, batches)]
    rows += [_measure(builder.build(name), eager, batches) for name in names]
    base = rows[0]
    for row in rows:
        row["size_ratio"] = base["bytes"] / row["bytes"] if row["bytes"] else None
        for key in ("accuracy", "loss"):
            if key in row:
                row[f"{key}_delta"] = row[key] - base[key]
    return rows


def _measure(variant: Variant, eager: Variant, batches: list[Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": variant.name, "path": str(variant.path) if variant.path else None,
                           "bytes": variant.bytes}
    if batches is not None:
        metrics = evaluate(variant.run, batches)
        row.update(accuracy=metrics["accuracy"], loss=metrics["loss"], samples=metrics["samples"],
                   agreement=agreement(variant.run, eager.run, batches))
    return row
