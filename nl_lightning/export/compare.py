"""``compare_variants``: size, latency and validation metric of each variant against eager fp32.

Ratios read "times better": ``size_ratio`` = fp32 bytes / variant bytes (3.8 = 3.8x smaller),
``latency_ratio_b<B>`` = fp32 p50 / variant p50 at batch B (2.5 = 2.5x faster). Deltas are
variant minus fp32: ``accuracy_delta`` in percentage points, ``loss_delta`` in nats.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from nl_lightning.export.evaluate import evaluate
from nl_lightning.export.profile import percentile, time_calls
from nl_lightning.export.variants import Variant, VariantBuilder, torch_threads


def compare_variants(
    builder: VariantBuilder, names: Sequence[str], batches: Iterable[Any] | None, eval_batches: int | None = 20,
    latency_batch_sizes: Sequence[int] = (1, 32), seq_len: int = 32, warmup: int = 3, iters: int = 10,
) -> list[dict[str, Any]]:
    """One row per variant (eager fp32 first). ``batches=None`` skips the metric (no data)."""
    # Materialize the evaluated batches once: every variant sees exactly the same data.
    batches = list(itertools.islice(batches, eval_batches)) if batches is not None else None
    inputs = {b: builder.spec.example(b, builder.spec.clamp_seq(seq_len)) for b in latency_batch_sizes}
    with torch_threads(builder.threads):
        rows = [_measure(builder.build("eager"), batches, eval_batches, inputs, warmup, iters)]
        for name in names:
            rows.append(_measure(builder.build(name), batches, eval_batches, inputs, warmup, iters))
    base = rows[0]
    for row in rows:
        row["size_ratio"] = base["bytes"] / row["bytes"] if row["bytes"] else None
        for b in latency_batch_sizes:
            row[f"latency_ratio_b{b}"] = base[f"latency_ms_b{b}"] / row[f"latency_ms_b{b}"]
        for key in ("accuracy", "loss"):
            if key in row:
                row[f"{key}_delta"] = row[key] - base[key]
    return rows


def _measure(variant: Variant, batches: list[Any] | None, eval_batches: int | None, inputs: dict, warmup: int,
             iters: int) -> dict[str, Any]:
    row: dict[str, Any] = {"variant": variant.name, "path": str(variant.path) if variant.path else None,
                           "bytes": variant.bytes}
    for b, x in inputs.items():
        row[f"latency_ms_b{b}"] = percentile(time_calls(variant.run, x, warmup, iters), 50)
    if batches is not None:
        metrics = evaluate(variant.run, batches, eval_batches)
        row.update(accuracy=metrics["accuracy"], loss=metrics["loss"])
    return row
