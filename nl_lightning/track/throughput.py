"""What Lightning's ``ThroughputMonitor`` needs from a batch: samples, tokens, and the device's peak FLOPs.

Batches are ``(x, y)`` tuples or ``{"x"/"idx": ..., "y"/"targets": ...}`` dicts, as nl_lightning's
DataModules make. A sample is one row of ``x``; its tokens are its sequence positions (1 for a
tabular row).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nl_lightning.export.inputs import batch_input


def batch_size(batch: Any) -> int:
    return int(batch_input(batch).shape[0])


def batch_tokens(batch: Any) -> int:
    """Sequence positions in the batch: B * T for (B, T) ids or (B, T, F) features, B for (B, F) rows."""
    x = batch_input(batch)
    is_sequence = x.dim() >= 3 or (x.dim() == 2 and not x.is_floating_point())
    return int(x.shape[0] * x.shape[1]) if is_sequence else int(x.shape[0])


def measure_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       size: int = 512, seconds: float = 0.2) -> float:
    """FLOP/s of a square matmul on ``device``: the reference for MFU where Lightning has no table (CPUs)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    runs, start = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * size**3 * runs / elapsed
