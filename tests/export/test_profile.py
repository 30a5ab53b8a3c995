from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import pytest
import torch

from nl_lightning.export.profile import PeakMemory, percentile, profile
from nl_lightning.export.report import format_table, save_chart, save_results


class FakeClock:
    """A clock that only moves when a runner says so: every timing below is known exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def runner(self, name: str, seconds: float | Callable[[int], float]) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            self.calls.append(name)
            self.now += seconds(len(self.calls)) if callable(seconds) else seconds
            return x
        return run


def test_runners_are_interleaved_and_the_order_rotates_every_round():
    clock = FakeClock()
    runners = {name: clock.runner(name, 1e-3) for name in ("a", "b", "c")}
    profile(runners, lambda b: torch.zeros(b, 4), batch_sizes=[1], warmup=1, iters=2, rounds=3, clock=clock)
    assert clock.calls == list("abc" "aabbcc" "bbccaa" "ccaabb")  # warm-up, then rounds starting at a, b, c


def test_each_runner_turn_starts_after_a_settle_pause(monkeypatch):
    """The previous runner's threads get ``settle_s`` to go idle before the next runner is timed."""
    clock = FakeClock()
    monkeypatch.setattr(time, "sleep", lambda s: clock.calls.append(f"sleep {s}"))
    runners = {name: clock.runner(name, 1e-3) for name in ("a", "b")}
    profile(runners, lambda b: torch.zeros(b, 4), batch_sizes=[1], warmup=1, iters=2, rounds=2, clock=clock,
            settle_s=0.25)
    pause = "sleep 0.25"
    assert clock.calls == [pause, "a", pause, "b", pause, "a", "a", pause, "b", "b", pause, "b", "b", pause, "a", "a"]
    clock.calls.clear()  # one runner: nothing ran before it, nothing to wait for
    profile({"a": clock.runner("a", 1e-3)}, lambda b: torch.zeros(b, 4), [1], warmup=0, iters=1, rounds=1,
            clock=clock, settle_s=0.25)
    assert clock.calls == ["a"]


def test_peak_memory_is_sampled_on_warm_up_calls_only(monkeypatch):
    """The sampler thread slowed the calls it ran beside: no timed call may run inside a ``PeakMemory``."""
    clock = FakeClock()
    profile_module = sys.modules[profile.__module__]

    class Recording:
        def __init__(self, cuda: bool = False) -> None:
            self.peak_mb = None

        def __enter__(self) -> "Recording":
            clock.calls.append("sample")
            self.peak_mb = float(len(clock.calls))
            return self

        def __exit__(self, *exc: object) -> None:
            clock.calls.append("stop")

    monkeypatch.setattr(profile_module, "PeakMemory", Recording)
    runners = {name: clock.runner(name, 1e-3) for name in ("a", "b")}
    results = profile(runners, lambda b: torch.zeros(b, 4), batch_sizes=[1], warmup=2, iters=2, rounds=2,
                      clock=clock, settle_s=0)
    assert clock.calls == ["sample", "a", "a", "stop", "sample", "b", "b", "stop"] + list("aabb" "bbaa")
    assert [r.peak_mem_mb for r in results] == [1.0, 5.0]  # each runner's own warm-up sample
    clock.calls.clear()  # no warm-up: no untimed call to sample, and no memory figure
    results = profile(runners, lambda b: torch.zeros(b, 4), batch_sizes=[1], warmup=0, iters=1, rounds=1,
                      clock=clock, settle_s=0)
    assert clock.calls == ["a", "b"] and [r.peak_mem_mb for r in results] == [None, None]


def test_latency_statistics_and_throughput_from_known_times():
    clock = FakeClock()
    # "slow" takes 1, 2, ..., 9 and then 100 ms on its timed calls; "fast" always 0.5 ms.
    slow_times = iter([0.0] + [k * 1e-3 for k in range(1, 10)] + [0.1])  # one warm-up call first
    runners = {"fast": clock.runner("fast", 0.5e-3), "slow": clock.runner("slow", lambda _: next(slow_times))}
    results = profile(runners, lambda b: torch.zeros(b, 7), batch_sizes=[4], warmup=1, iters=5, rounds=2,
                      clock=clock)
    fast, slow = results
    assert (fast.name, fast.batch_size, fast.seq_len, fast.iters, fast.rounds) == ("fast", 4, 7, 10, 2)
    assert fast.p50_ms == pytest.approx(0.5) and fast.p99_ms == pytest.approx(0.5)
    assert fast.throughput == pytest.approx(4 / 0.5e-3)  # samples per second at the median
    assert slow.mean_ms == pytest.approx(14.5) and slow.p50_ms == pytest.approx(5.5)
    assert slow.p95_ms == pytest.approx(59.05) and slow.p99_ms == pytest.approx(91.81)
    assert slow.throughput == pytest.approx(4 / 5.5e-3)  # the median, not the mean an outlier drags
    assert fast.threads == torch.get_num_threads() == slow.threads
    assert fast.load_avg_1m == pytest.approx(os.getloadavg()[0], abs=2.0)


@pytest.fixture(scope="module")
def results():
    layer = torch.nn.Linear(16, 16)
    runners = {"eager": layer, "double": lambda x: layer(layer(x))}
    return profile(runners, lambda b: torch.randn(b, 4, 16), batch_sizes=[1, 8], warmup=1, iters=3, rounds=2)


def test_table_json_and_chart(results, tmp_path):
    table = format_table(results)
    caption, header = table.splitlines()[:2]
    assert caption.startswith(f"{torch.get_num_threads()} intra-op thread(s), load average ")
    assert "2 interleaved rounds, 6 timed calls per runner" in caption
    assert "variant" in header and "p99 ms" in header and table.count("double") == 2
    data = json.loads(save_results(results, tmp_path / "p.json", extra={"threads": 1}).read_text())
    assert data["threads"] == 1 and [(r["name"], r["batch_size"]) for r in data["results"]] == [
        ("eager", 1), ("double", 1), ("eager", 8), ("double", 8)]
    assert {r["speedup"] for r in data["results"] if r["name"] == "eager"} == {1.0}
    for row in data["results"]:
        assert row["load_avg_1m"] is not None and row["threads"] == torch.get_num_threads()
    png = save_chart(results, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 99) == 5
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([1, 2, 3, 4], 100) == 4


def test_peak_memory_sees_an_allocation():
    with PeakMemory() as mem:
        block = torch.ones(64, 2**20, dtype=torch.uint8)  # 64 MB, touched
        del block
    assert mem.peak_mb is not None and mem.peak_mb > 30


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(batch_sizes=[]), r"batch_sizes=\[\] must be a non-empty list"),
        (dict(batch_sizes=[1], iters=0), "iters >= 1"),
        (dict(batch_sizes=[1], warmup=-1), "warmup >= 0"),
        (dict(batch_sizes=[1], rounds=0), "rounds >= 1"),
        (dict(batch_sizes=[1], settle_s=-1.0), "settle_s >= 0"),
    ],
)
def test_profile_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        profile({"x": lambda x: x}, lambda b: torch.zeros(b, 1), **kwargs)
