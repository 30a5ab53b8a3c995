"""Present profile results: a terminal table, a JSON file, and an optional PNG chart (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nl_lightning._imports import MATPLOTLIB_AVAILABLE, require
from nl_lightning._io import atomic_output, write_json
from nl_lightning.export.profile import ProfileResult

_COLUMNS = (("variant", "name", "{}"), ("batch", "batch_size", "{}"), ("seq", "seq_len", "{}"),
            ("mean ms", "mean_ms", "{:.3f}"), ("p50 ms", "p50_ms", "{:.3f}"), ("p95 ms", "p95_ms", "{:.3f}"),
            ("p99 ms", "p99_ms", "{:.3f}"), ("samples/s", "throughput", "{:.1f}"), ("peak MB", "peak_mem_mb", "{:.1f}"),
            ("speedup", "speedup", "{:.2f}x"))


def with_speedup(results: Sequence[ProfileResult], baseline: str | None = None) -> list[dict[str, Any]]:
    """Rows as dicts, each with ``speedup`` = baseline p50 / its p50 at the same batch size."""
    rows = [r.to_dict() for r in results]
    base_name = baseline or (rows[0]["name"] if rows else None)
    base = {r["batch_size"]: r["p50_ms"] for r in rows if r["name"] == base_name}
    for row in rows:
        ref = base.get(row["batch_size"])
        row["speedup"] = ref / row["p50_ms"] if ref and row["p50_ms"] > 0 else None
    return rows


def format_table(results: Sequence[ProfileResult], baseline: str | None = None) -> str:
    """A fixed-width table; ``speedup`` is against ``baseline`` (default: the first runner)."""
    rows = with_speedup(results, baseline)
    cells = [[h for h, _, _ in _COLUMNS]]
    for row in rows:
        cells.append(["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in _COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([caption(results)] + lines)


def caption(results: Sequence[ProfileResult]) -> str:
    """What the figures were measured under: threads, load average, rounds and calls."""
    if not results:
        return "no results"
    threads = sorted({r.threads for r in results})
    loads = [r.load_avg_1m for r in results if r.load_avg_1m is not None]
    load = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "unknown"
    return (f"{'/'.join(map(str, threads))} intra-op thread(s), load average {load} on {os.cpu_count()} cores; "
            f"{results[0].rounds} interleaved rounds, {results[0].iters} timed calls per runner and batch size; "
            "speedup = baseline p50 / p50")


def save_results(results: Sequence[ProfileResult], path: str | Path, baseline: str | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    """JSON: ``{"results": [...rows with speedup...], **extra}``."""
    return write_json(path, {**(extra or {}), "results": with_speedup(results, baseline)})


def save_chart(results: Sequence[ProfileResult], path: str | Path, baseline: str | None = None) -> Path:
    """Grouped bars of p50 latency per variant and batch size (log scale), with p95 whiskers."""
    require(MATPLOTLIB_AVAILABLE, "matplotlib", "export", "The profile chart")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.name for r in results))
    batches = sorted({r.batch_size for r in results})
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(batches) * len(names) / 2), 4.0))
    for i, name in enumerate(names):
        rows = {r.batch_size: r for r in results if r.name == name}
        xs = [j + i * width for j, b in enumerate(batches) if b in rows]
        p50 = [rows[b].p50_ms for b in batches if b in rows]
        p95 = [rows[b].p95_ms - rows[b].p50_ms for b in batches if b in rows]
        ax.bar(xs, p50, width, yerr=[[0] * len(p95), p95], label=name, capsize=2)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
    ax.set_ylabel("latency p50 (ms), whisker = p95")
    ax.set_yscale("log")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)
