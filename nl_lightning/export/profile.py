"""``profile``: latency (mean / p50 / p95 / p99), throughput and peak memory of several runners.

Each runner is ``fn(x) -> output`` (eager, compiled, ORT session, quantized). At every batch size
each is warmed up, then all are timed in ``rounds`` rounds of ``iters`` calls, the order rotating
every round, so a change in the machine's load falls on every runner alike rather than on
whichever ran last. Before each runner's turn the process sleeps ``settle_s``, so the runner timed
before it has gone idle: an ONNX Runtime session's intra-op threads spin after every run (and
OpenMP's wait the same way), and on a 2-core machine they took a core from the next runner (with
the pause, the INT8 llama's interleaved p50 at batch 1 came within about 10% of its p50 timed
alone; eager's did not move). Every result carries the thread count and the load average it was
measured under: latency on a CPU means little without them.

Peak memory is CUDA's allocator peak on GPU, and on CPU the resident-set growth above the pre-run
level, sampled every millisecond by a thread (so it includes ONNX Runtime's arena, which torch's
counters cannot see). It is measured over the untimed warm-up calls only: the sampler thread
beside a timed call took the GIL and a core from it, and made eager's batch-1 p50 25-35% slower
and ORT's 10-20% on the llama preset (2 threads, 3 interleaved A/B pairs).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from nl_lightning.errors import ConfigError

Clock = Callable[[], float]
DEFAULT_SETTLE_S = 0.05
"""Pause before each runner's turn (seconds): long enough for the previous runner's threads to stop spinning."""


@dataclass
class ProfileResult:
    """Latency, throughput and peak memory of one variant at one batch size (a row of the table)."""

    name: str
    batch_size: int
    seq_len: int
    iters: int
    """Timed calls in all (rounds x calls per round)."""
    rounds: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    """Samples (sequences) per second at the median latency."""
    peak_mem_mb: float | None
    """Peak memory of the warm-up calls (None with ``warmup=0``): see the module docstring."""
    threads: int
    """torch's intra-op threads while timing (``nl-lightning profile`` gives ONNX Runtime the same)."""
    load_avg_1m: float | None
    """The machine's 1-minute load average right after this batch size was timed."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_profile(batch_sizes: Sequence[int], warmup: int, iters: int, rounds: int = 1) -> None:
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"profile batch_sizes={list(batch_sizes)} must be a non-empty list of positive sizes.")
    if warmup < 0 or iters < 1 or rounds < 1:
        raise ConfigError(
            f"profile needs warmup >= 0, iters >= 1 and rounds >= 1, got warmup={warmup}, iters={iters}, "
            f"rounds={rounds}."
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_calls(fn: Callable[[Tensor], Any], x: Tensor, warmup: int = 5, iters: int = 20,
               clock: Clock = time.perf_counter) -> list[float]:
    """Wall time of each call in milliseconds, after ``warmup`` untimed calls."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        sync()
        times = []
        for _ in range(iters):
            start = clock()
            fn(x)
            sync()
            times.append((clock() - start) * 1e3)
    return times


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def profile(
    runners: Mapping[str, Callable[[Tensor], Any]], make_input: Callable[[int], Tensor], batch_sizes: Sequence[int],
    warmup: int = 5, iters: int = 20, rounds: int = 5, clock: Clock = time.perf_counter,
    settle_s: float = DEFAULT_SETTLE_S,
) -> list[ProfileResult]:
    """Profile every runner at every batch size; ``make_input(batch_size)`` gives the input.

    Each runner gets ``warmup`` untimed calls, with its peak memory sampled, then ``rounds`` x ``iters``
    timed ones with no sampler beside them, interleaved with the other runners (the order rotates
    every round), each turn after a ``settle_s`` pause when there are several runners (see the
    module docstring)."""
    validate_profile(batch_sizes, warmup, iters, rounds)
    if settle_s < 0:
        raise ConfigError(f"profile needs settle_s >= 0, got {settle_s}.")
    settle = settle_s if len(runners) > 1 else 0.0
    names = list(runners)
    results = []
    for batch_size in batch_sizes:
        x = make_input(batch_size)
        times: dict[str, list[float]] = {name: [] for name in names}
        peaks: dict[str, float | None] = dict.fromkeys(names)
        for r in range(-1 if warmup else 0, rounds):  # round -1: warm-up
            shift = max(r, 0) % len(names)
            for name in names[shift:] + names[:shift]:
                if settle:
                    time.sleep(settle)
                if r >= 0:
                    times[name] += time_calls(runners[name], x, 0, iters, clock)
                else:
                    with PeakMemory(x.is_cuda) as mem:
                        time_calls(runners[name], x, warmup, 0, clock)
                    peaks[name] = mem.peak_mb
        load = load_average()
        for name in names:
            p50 = percentile(times[name], 50)
            results.append(ProfileResult(
                name=name, batch_size=batch_size, seq_len=x.size(1), iters=len(times[name]), rounds=rounds,
                mean_ms=statistics.fmean(times[name]), p50_ms=p50, p95_ms=percentile(times[name], 95),
                p99_ms=percentile(times[name], 99), throughput=batch_size / (p50 / 1e3) if p50 > 0 else float("inf"),
                peak_mem_mb=peaks[name], threads=torch.get_num_threads(),
                load_avg_1m=load,
            ))
    return results


class PeakMemory:
    """Context manager: peak memory (MB) used inside it, above the level at entry."""

    def __init__(self, cuda: bool = False, interval_s: float = 1e-3) -> None:
        self.cuda, self.interval_s = cuda, interval_s
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = self._max = 0

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = self._max = _rss_bytes() or 0
        if self._base:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._max = max(self._max, _rss_bytes() or 0)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, _rss_bytes() or 0)
            self.peak_mb = (self._max - self._base) / 2**20


def _rss_bytes() -> int | None:
    """Resident set size of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
