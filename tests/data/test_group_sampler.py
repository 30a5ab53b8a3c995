"""Row-group shuffle for Parquet files bigger than their decode cache: every row once per epoch,
groups read whole, and an exact resume whatever the number of workers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from datafiles import file_datamodule_kwargs

from nl_lightning.data import FileDataModule
from nl_lightning.data.group_sampler import RowGroupSampler, group_members
from nl_lightning.data.readers import ConcatReader, ParquetReader, RowGroups
from nl_lightning.data.readers import parquet as parquet_module
from nl_lightning.data.resumable import EpochSampler

ROWS, GROUP = 160, 16  # datafiles.write: row groups of 16 rows -> 10 groups
TINY_CACHE_MB = 6 * GROUP * 12 * 4 / 2**20  # six groups of (3, 4) float32 rows: windows of 3 (two fit)


@pytest.fixture
def parquet_file(write_data):
    x = np.random.default_rng(0).standard_normal((ROWS, 3, 4)).astype(np.float32)
    x[:, 0, 0] = np.arange(ROWS)
    return write_data("parquet", x, np.arange(ROWS) % 3)


def _members(n_groups: int, size: int) -> list[np.ndarray]:
    return [np.arange(g * size, (g + 1) * size) for g in range(n_groups)]


def test_every_row_once_per_epoch_and_a_new_order_each_epoch():
    sampler = RowGroupSampler(_members(10, 7), window=3, seed=4)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
        assert sorted(epochs[-1]) == list(range(70)) and len(sampler) == 70
    assert epochs[0] != epochs[1] != epochs[2]
    again = RowGroupSampler(_members(10, 7), window=3, seed=4)  # the order is a function of (seed, epoch)
    again.set_epoch(1)
    assert list(again) == epochs[1]
    assert list(RowGroupSampler(_members(10, 7), window=3, seed=5)) != epochs[0]


def test_each_window_holds_whole_groups_and_rows_are_mixed_within_it():
    sampler = RowGroupSampler(_members(10, 7), window=3, seed=0)
    order = np.array(list(sampler))
    for start in range(0, 70, 21):  # windows of 3 groups x 7 rows (the last: 1 group)
        window = order[start : start + 21]
        groups = set(window // 7)
        assert len(groups) == min(3, (70 - start) // 7)
        assert sorted(window) == sorted(i for g in groups for i in range(g * 7, g * 7 + 7))  # whole groups
    assert any((np.diff(order[s : s + 21] // 7) != 0).sum() > 3 for s in (0, 21))  # interleaved, not group after group


def test_group_members_follow_the_source_rows_of_a_subset():
    rows = np.array([33, 2, 17, 5, 40, 16])  # dataset index -> source row (e.g. after a split)
    groups = RowGroups(np.array([0, 16, 32, 48]), window=1)
    assert [m.tolist() for m in group_members(rows, groups)] == [[1, 3], [2, 5], [0, 4]]


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window=0 must be >= 1"):
        RowGroupSampler(_members(2, 2), window=0)


def test_parquet_reports_row_groups_only_when_they_do_not_fit_its_cache(parquet_file):
    fits = ParquetReader(parquet_file["path"], "x", shape=(3, 4))
    assert fits.row_groups() is None
    small = ParquetReader(parquet_file["path"], "x", shape=(3, 4), cache_mb=TINY_CACHE_MB)
    groups = small.row_groups()
    assert groups.offsets.tolist() == list(range(0, ROWS + 1, GROUP)) and groups.window == 3
    both = ConcatReader([small, small]).row_groups()
    assert both.offsets.tolist() == list(range(0, 2 * ROWS + 1, GROUP)) and both.window == 3
    assert ConcatReader([small, fits]).row_groups() is None


def _datamodule(spec, workers: int, **kwargs) -> FileDataModule:
    kwargs = {"parquet_cache_mb": TINY_CACHE_MB, **kwargs}
    return FileDataModule(**file_datamodule_kwargs(spec), batch_size=10, num_workers=workers, seed=1, **kwargs)


def test_shuffled_training_over_a_big_parquet_file_decodes_each_group_about_once(parquet_file, monkeypatch):
    decoded = []
    real = parquet_module.decode_table
    monkeypatch.setattr(parquet_module, "decode_table", lambda table, shape: decoded.append(1) or real(table, shape))
    data = _datamodule(parquet_file, 0, validate=False)
    loader = data.train_dataloader()
    assert isinstance(loader.batch_sampler.sampler, RowGroupSampler)
    rows = np.concatenate([b["row_id"].numpy() for b in loader])
    assert sorted(rows) == list(range(ROWS))
    # Features and targets: each group decoded once per column, though batches straddle windows.
    assert len(decoded) == (ROWS // GROUP) * 2
    uniform = _datamodule(parquet_file, 0, validate=False, parquet_cache_mb=256.0).train_dataloader()
    assert isinstance(uniform.batch_sampler.sampler, EpochSampler)  # fits the cache: plain shuffle


@pytest.mark.parametrize(("before", "after"), [(2, 0), (0, 2), (2, 2)])
def test_row_group_shuffle_resumes_exactly_across_worker_counts(parquet_file, before, after):
    whole = [b["row_id"].tolist() for b in _datamodule(parquet_file, 0).train_dataloader()]
    first = _datamodule(parquet_file, before).train_dataloader()
    seen = [b["row_id"].tolist() for b in itertools.islice(first, 6)]
    state = first.state_dict()
    second = _datamodule(parquet_file, after).train_dataloader()
    second.load_state_dict(state)
    rest = [b["row_id"].tolist() for b in second]
    assert seen + rest == whole and sorted(itertools.chain(*whole)) == list(range(ROWS))
