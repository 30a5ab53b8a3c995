"""Under DDP (2 CPU processes, gloo) Lightning's distributed sampler shards our datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("ddp_shards.py")


def _run(tmp_path: Path, n: int) -> list[dict]:
    x = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)  # x[i, 0] == i
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["y"] = x, np.arange(n) % 2
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "data.h5"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rows"] == ranks[1]["rows"]  # the seeded split is the same on every rank
    return ranks


@pytest.mark.slow
def test_ddp_shards_are_disjoint_and_complete(tmp_path):
    ranks = _run(tmp_path, 40)
    for split, size in (("train", 32), ("val", 8)):
        shard0, shard1 = (set(r["seen"][split]) for r in ranks)
        assert len(ranks[0]["seen"][split]) == len(ranks[1]["seen"][split]) == size // 2
        assert not shard0 & shard1, f"{split} shards overlap: {sorted(shard0 & shard1)}"
        assert sorted(shard0 | shard1) == ranks[0]["rows"][split], f"{split} shards miss rows"


@pytest.mark.slow
def test_uneven_splits_are_padded_by_repeats(tmp_path):
    """46 rows: 37 train and 9 val, both odd. Lightning's DistributedSampler pads each split to a
    multiple of the world size by repeating rows (docs/data.md): every row is seen, each rank gets
    the same count, and exactly the padding is seen twice."""
    ranks = _run(tmp_path, 46)
    for split, size in (("train", 37), ("val", 9)):
        seen0, seen1 = (r["seen"][split] for r in ranks)
        assert len(ranks[0]["rows"][split]) == size
        assert len(seen0) == len(seen1) == (size + 1) // 2
        assert sorted(set(seen0) | set(seen1)) == ranks[0]["rows"][split], f"{split} shards miss rows"
        assert len(seen0) + len(seen1) - len(set(seen0 + seen1)) == 1, f"{split}: padding is not one repeat"
