"""Caches return the reader's data, count hits and misses, respect budgets and invalidate."""

from __future__ import annotations

import gc
import subprocess
import sys

import os

import numpy as np
import pytest
from datafiles import file_datamodule_kwargs, write

from nl_lightning.data import ArrayDataset, DiskCache, FileDataModule, HybridCache, MemoryCache
from nl_lightning.data.cache import make_cache
from nl_lightning.data.readers import MemoryReader

ROWS = np.array([1, 4, 5, 9])


class CountingLoader:
    """A loader that records which rows were really read."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y, self.calls = x, y, []

    def __call__(self, rows: np.ndarray):
        self.calls.append(rows.tolist())
        return self.x[rows].copy(), self.y[rows].copy()


def _disk(tmp_path, x, y, fingerprint="f1", name="src"):
    return DiskCache(tmp_path / "cache", name, fingerprint, len(x), [(x.shape[1:], x.dtype), ((), y.dtype)])


@pytest.mark.parametrize("kind", ["memory", "disk", "hybrid"])
def test_cache_returns_identical_data_and_counts(kind, arrays, tmp_path):
    x, y = arrays
    cache = make_cache(kind, name="src", fingerprint="f", length=40, fields=[((3, 4), x.dtype), ((), y.dtype)],
                       directory=tmp_path)
    load = CountingLoader(x, y)
    first = cache.read(ROWS, load)
    second = cache.read(ROWS, load)
    mixed = cache.read(np.array([0, 4, 9, 12]), load)
    for got, rows in ((first, ROWS), (second, ROWS), (mixed, [0, 4, 9, 12])):
        np.testing.assert_array_equal(got[0], x[rows])
        np.testing.assert_array_equal(got[1], y[rows])
    assert load.calls == [[1, 4, 5, 9], [0, 12]]  # only the misses are read
    assert (cache.hits, cache.misses) == (6, 6)


def test_memory_cache_evicts_least_recently_used_within_budget(arrays):
    x, y = arrays
    row_bytes = x[0].nbytes + y[0].nbytes
    cache = MemoryCache(max_bytes=3 * row_bytes)
    load = CountingLoader(x, y)
    cache.read(np.array([0, 1, 2]), load)
    cache.read(np.array([0]), load)  # 0 is now the most recent
    cache.read(np.array([3]), load)  # evicts 1
    assert len(cache) == 3 and cache.nbytes <= cache.max_bytes
    cache.read(np.array([0, 1]), load)
    assert load.calls[-1] == [1]


def test_disk_cache_persists_across_instances(arrays, tmp_path):
    x, y = arrays
    _disk(tmp_path, x, y).read(ROWS, CountingLoader(x, y))
    again = _disk(tmp_path, x, y)
    load = CountingLoader(x, y)
    np.testing.assert_array_equal(again.read(ROWS, load)[0], x[ROWS])
    assert load.calls == [] and again.hits == 4


def test_disk_cache_new_fingerprint_starts_empty_and_prunes_stale(arrays, tmp_path):
    x, y = arrays
    old = _disk(tmp_path, x, y, fingerprint="old")
    old.read(ROWS, CountingLoader(x, y))
    old_path = old.path
    del old
    gc.collect()  # no longer used by anyone: prunable
    new = _disk(tmp_path, x * 2, y, fingerprint="new")
    load = CountingLoader(x * 2, y)
    np.testing.assert_array_equal(new.read(ROWS, load)[0], x[ROWS] * 2)
    assert new.misses == 4 and not old_path.exists()


def test_pruning_skips_a_version_another_job_has_open(arrays, tmp_path):
    """Another running job still reads the old version: it is kept until that job has gone."""
    x, y = arrays
    code = ("import sys, time, numpy as np\n"
            "from nl_lightning.data.cache import DiskCache\n"
            "c = DiskCache(sys.argv[1], 'src', 'old', 40, [((3, 4), 'float32'), ((), 'int64')])\n"
            "c.read(np.arange(4), lambda r: (np.zeros((len(r), 3, 4), np.float32), np.zeros(len(r), np.int64)))\n"
            "print('open', flush=True)\ntime.sleep(120)")
    job = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache")], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "open"
        _disk(tmp_path, x * 2, y, fingerprint="new")
        assert (tmp_path / "cache" / "src-old" / "field0.npy").exists()  # still mapped by the other job: kept
    finally:
        job.kill()
        job.wait()
    _disk(tmp_path, x * 3, y, fingerprint="newer")
    assert not (tmp_path / "cache" / "src-old").exists()  # the job is gone: pruned now


def test_hybrid_counts_memory_and_disk_hits(arrays, tmp_path):
    x, y = arrays
    disk = _disk(tmp_path, x, y)
    disk.read(ROWS, CountingLoader(x, y))  # warm the disk layer only
    cache = HybridCache(MemoryCache(), _disk(tmp_path, x, y))
    load = CountingLoader(x, y)
    cache.read(ROWS, load)
    cache.read(ROWS, load)
    assert load.calls == []
    assert cache.stats() == {"hits": 8, "misses": 0, "memory_hits": 4, "disk_hits": 4}


def test_datamodule_disk_cache_is_invalidated_when_the_source_changes(arrays, tmp_path):
    x, y = arrays
    spec = write("hdf5", tmp_path, x, y)
    kwargs = dict(file_datamodule_kwargs(spec), cache="disk", cache_dir=str(tmp_path / "c"), shuffle=False, batch_size=40)

    def epoch():
        dm = FileDataModule(**kwargs)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        return batch["x"].numpy(), dm.datasets["train"].cache

    first, cache = epoch()
    np.testing.assert_array_equal(first, x)
    assert cache.misses == 40
    second, cache = epoch()
    np.testing.assert_array_equal(second, x)
    assert (cache.hits, cache.misses) == (40, 0)
    write("hdf5", tmp_path, x + 1, y)  # same path, new content: size may match, mtime_ns does not
    os.utime(spec["path"], ns=(os.stat(spec["path"]).st_atime_ns, os.stat(spec["path"]).st_mtime_ns + 1))
    del cache
    gc.collect()  # the old DataModule is gone: its cache version is no longer in use
    third, cache = epoch()
    np.testing.assert_array_equal(third, x + 1)
    assert (cache.hits, cache.misses) == (0, 40)
    assert len(list((tmp_path / "c").iterdir())) == 1  # the stale cache was removed


def test_pre_transform_is_part_of_the_fingerprint(arrays):
    from nl_lightning.data import Normalize

    x, y = arrays
    plain = ArrayDataset(MemoryReader(x), MemoryReader(y))
    scaled = ArrayDataset(MemoryReader(x), MemoryReader(y), pre_transform=Normalize([0.0] * 4, [2.0] * 4))
    other = ArrayDataset(MemoryReader(x), MemoryReader(y), pre_transform=Normalize([0.0] * 4, [3.0] * 4))
    assert len({plain.fingerprint(), scaled.fingerprint(), other.fingerprint()}) == 3
    np.testing.assert_allclose(scaled.load(ROWS)[0], x[ROWS] / 2)


@pytest.mark.slow
def test_disk_cache_filled_by_workers_is_shared(arrays, tmp_path):
    x, y = arrays
    spec = write("npz", tmp_path, x, y)
    kwargs = dict(file_datamodule_kwargs(spec), cache="disk", cache_dir=str(tmp_path / "c"), shuffle=False,
                  batch_size=8, num_workers=2, persistent_workers=False)
    dm = FileDataModule(**kwargs)
    dm.setup("fit")
    got = np.concatenate([b["x"].numpy() for b in dm.train_dataloader()])  # workers fill the cache
    np.testing.assert_array_equal(got, x)
    dm = FileDataModule(**{**kwargs, "num_workers": 0})
    dm.setup("fit")
    np.testing.assert_array_equal(np.concatenate([b["x"].numpy() for b in dm.train_dataloader()]), x)
    assert dm.datasets["train"].cache.stats() == {"hits": 40, "misses": 0}
