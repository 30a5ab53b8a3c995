from __future__ import annotations

import json

import pytest
import torch

from nl_lightning.export.profile import PeakMemory, percentile, profile
from nl_lightning.export.report import format_table, save_chart, save_results


@pytest.fixture(scope="module")
def results():
    layer = torch.nn.Linear(16, 16)
    runners = {"eager": layer, "double": lambda x: layer(layer(x))}
    return profile(runners, lambda b: torch.randn(b, 4, 16), batch_sizes=[1, 8], warmup=1, iters=5)


def test_profile_reports_every_runner_and_batch(results):
    assert [(r.name, r.batch_size) for r in results] == [("eager", 1), ("double", 1), ("eager", 8), ("double", 8)]
    for r in results:
        assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms and r.mean_ms > 0
        assert r.throughput == pytest.approx(r.batch_size / (r.mean_ms / 1e3))
        assert r.seq_len == 4 and r.iters == 5 and r.peak_mem_mb is not None


def test_table_json_and_chart(results, tmp_path):
    table = format_table(results)
    assert "variant" in table.splitlines()[0] and "p99 ms" in table and table.count("double") == 2
    data = json.loads(save_results(results, tmp_path / "p.json", extra={"threads": 1}).read_text())
    assert data["threads"] == 1 and len(data["results"]) == 4
    assert {r["speedup"] for r in data["results"] if r["name"] == "eager"} == {1.0}
    png = save_chart(results, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 99) == 5


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
    ],
)
def test_profile_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        profile({"x": lambda x: x}, lambda b: torch.zeros(b, 1), **kwargs)
