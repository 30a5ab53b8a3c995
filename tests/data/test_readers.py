"""Readers: every format round-trips, reads batches of sorted rows, pickles, and opens lazily."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import warnings

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nl_lightning.data.readers import ConcatReader, MemoryReader, infer_format, open_reader, open_source
from datafiles import FORMATS, write

ROWS = np.array([0, 1, 2, 7, 15, 16, 17, 30, 39])  # dense run, gaps, across parquet row groups


def _open(fmt, spec, key="features"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # compressed NPZ warns; tested below
        return open_reader(spec["path"], spec[key], shape=spec.get("feature_shape") if key == "features" else None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(fmt, arrays, tmp_path):
    x, y = arrays
    spec = write(fmt, tmp_path, x, y)
    features, targets = _open(fmt, spec), _open(fmt, spec, "targets")
    assert len(features) == len(targets) == 40
    assert features.sample_shape == (3, 4)
    np.testing.assert_array_equal(features.read_batch(ROWS), x[ROWS])
    np.testing.assert_array_equal(features.read_range(5, 25), x[5:25])
    np.testing.assert_array_equal(features.read(17), x[17])
    np.testing.assert_array_equal(targets.read_batch(ROWS), y[ROWS])
    clone = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(clone.read_batch(ROWS), x[ROWS])


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_batch_returns_a_writable_copy(fmt, arrays, tmp_path):
    x, _ = arrays
    reader = _open(fmt, write(fmt, tmp_path, x, None))
    for rows in (np.arange(4, 12), ROWS):
        out = reader.read_batch(rows)
        assert out.flags.writeable
        out[:] = -1  # must not write through to the source
    np.testing.assert_array_equal(reader.read_batch(ROWS), x[ROWS])


@pytest.mark.parametrize("fmt", [*FORMATS, "memory", "hdf5_contiguous", "hdf5_compressed"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_read_into_writes_the_rows_into_out_converted(fmt, dtype, arrays, tmp_path):
    """What a DataLoader worker reads straight into shared memory: every layout, one slice or not,
    converted to ``out``'s dtype as ``astype`` does, nothing written outside the rows asked for."""
    x, _ = arrays
    if fmt == "memory":
        reader = MemoryReader(x)
    elif fmt.startswith("hdf5_"):
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f.create_dataset("x", data=x, **({"chunks": (4, 3, 4), "compression": "gzip"} if fmt == "hdf5_compressed"
                                             else {}))
        reader = open_reader(tmp_path / "x.h5", "x")
    else:
        reader = _open(fmt, write(fmt, tmp_path, x, None))
    for rows in (np.arange(4, 12), ROWS, np.array([39]), np.array([], dtype=np.int64)):
        buffer = np.full((len(rows) + 2, 3, 4), -7, dtype=dtype)
        target = buffer[1:-1]
        assert reader.read_into(rows, target) is target
        np.testing.assert_array_equal(buffer[1:-1], x[rows].astype(dtype))
        assert (buffer[[0, -1]] == -7).all()


@pytest.mark.parametrize("source", ["numpy", "tensor"])
def test_memory_reader(arrays, source):
    x, _ = arrays
    reader = MemoryReader(x if source == "numpy" else torch.from_numpy(x))
    np.testing.assert_array_equal(reader.read_batch(ROWS), x[ROWS])
    assert reader.fingerprint() != MemoryReader(x + 1).fingerprint()


def test_memory_reader_bfloat16_becomes_float32():
    reader = MemoryReader(torch.ones(4, 2, dtype=torch.bfloat16))
    assert reader.dtype == np.float32


@pytest.mark.parametrize("chunks", [None, (1, 3, 4), (8, 3, 4)])
def test_hdf5_layouts_read_sorted_rows(chunks, arrays, tmp_path):
    x, _ = arrays
    with h5py.File(tmp_path / "l.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=chunks)
    reader = open_reader(tmp_path / "l.h5", "x")
    for rows in (np.array([0, 1, 2, 30, 31, 39]), np.array([5]), np.arange(10, 30), np.array([3, 7, 11, 12])):
        np.testing.assert_array_equal(reader.read_batch(rows), x[rows])


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "<i8", ">i2", "u1"])
def test_contiguous_hdf5_is_read_through_a_memory_map(dtype, tmp_path):
    x = (np.arange(500 * 6).reshape(500, 2, 3) % 97).astype(dtype)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("pad", data=np.ones(77, "u1"))  # the dataset does not start at the file's first bytes
        f.create_dataset("g/x", data=x)
    reader = open_reader(tmp_path / "c.h5", "/g/x")
    rows = np.sort(np.random.default_rng(0).choice(500, 64, replace=False))
    out = reader.read_batch(rows)
    assert type(reader._dataset.get()[1]) is np.memmap
    np.testing.assert_array_equal(out, x[rows])
    assert out.dtype == np.dtype(dtype) and out.flags.writeable
    np.testing.assert_array_equal(reader.read_range(490, 500), x[490:])
    assert type(reader.read_range(0, 3)) is np.ndarray


@pytest.mark.parametrize("dtype", ["<f4", ">f8", "u1"])
@pytest.mark.parametrize("rows_per_chunk", [1, 7, 64])
def test_hdf5_chunked_by_whole_rows_is_read_from_the_file_bytes(rows_per_chunk, dtype, tmp_path):
    x = (np.arange(300 * 6).reshape(300, 2, 3) % 251).astype(dtype)  # 300 rows: the last chunk is partial
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(rows_per_chunk, 2, 3))
    reader = open_reader(tmp_path / "k.h5", "x")
    rng = np.random.default_rng(rows_per_chunk)
    for rows in (np.sort(rng.choice(300, 50, replace=False)), np.arange(60, 140), np.array([0, 1, 2, 299]),
                 np.array([], dtype=np.int64), np.array([7, 8, 9, 10, 11, 12, 13, 14])):
        out = reader.read_batch(rows)
        np.testing.assert_array_equal(out, x[rows])
        assert out.dtype == np.dtype(dtype) and out.flags.writeable and out.shape == (len(rows), 2, 3)
    np.testing.assert_array_equal(reader.read_range(290, 300), x[290:])
    assert type(reader._dataset.get()[1]).__name__ == "ChunkedRows"


def test_hdf5_one_value_per_row_chunked(tmp_path):
    y = np.arange(100, dtype=np.int64) * 3
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.create_dataset("y", data=y, chunks=(16,))
    reader = open_reader(tmp_path / "y.h5", "y")
    rows = np.array([0, 15, 16, 17, 50, 99])
    np.testing.assert_array_equal(reader.read_batch(rows), y[rows])
    assert type(reader._dataset.get()[1]).__name__ == "ChunkedRows"


@pytest.mark.parametrize("layout", [{"chunks": (4, 1, 3)}, {"chunks": (4, 2, 3), "compression": "gzip"},
                                    {"chunks": (4, 2, 3), "shuffle": True}, {"userblock": 512}, {"empty": True},
                                    {"partly_written": True}])
def test_hdf5_layouts_without_a_plain_block_keep_h5py(layout, tmp_path):
    x = np.arange(40 * 6, dtype=np.float32).reshape(40, 2, 3)
    with h5py.File(tmp_path / "l.h5", "w", userblock_size=layout.get("userblock", 0)) as f:
        if layout.get("empty"):  # never written: no storage allocated, reads give the fill value
            f.create_dataset("x", shape=x.shape, dtype=x.dtype, fillvalue=3.0)
            x = np.full_like(x, 3.0)
        elif layout.get("partly_written"):  # chunks never written hold no bytes: HDF5 gives the fill value
            ds = f.create_dataset("x", shape=x.shape, dtype=x.dtype, chunks=(4, 2, 3), fillvalue=3.0)
            ds[:8] = x[:8]
            x[8:] = 3.0
        else:
            f.create_dataset("x", data=x, chunks=layout.get("chunks"), compression=layout.get("compression"),
                             shuffle=layout.get("shuffle", False))
    reader = open_reader(tmp_path / "l.h5", "x")
    rows = np.array([1, 5, 6, 30])
    np.testing.assert_array_equal(reader.read_batch(rows), x[rows])
    assert type(reader._dataset.get()[1]).__name__ == "Dataset"  # h5py's own reads


def test_parquet_tabular_columns_and_scalar_column(tmp_path):
    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "label": [0, 1, 0], "name": ["p", "q", "r"]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    rows = open_reader(tmp_path / "t.parquet", ["a", "b"])
    assert rows.sample_shape == (2,)
    np.testing.assert_array_equal(rows.read_batch(np.array([0, 2])), [[1.0, 4.0], [3.0, 6.0]])
    labels = open_reader(tmp_path / "t.parquet", "label")
    assert labels.sample_shape == () and labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels.read_batch(np.arange(3)), [0, 1, 0])


def test_parquet_reads_only_the_row_groups_it_needs(arrays, tmp_path):
    x, y = arrays
    reader = _open("parquet", write("parquet", tmp_path, x, y))
    reader.read_batch(np.array([1, 2]))
    groups = reader._groups.get().groups
    assert list(groups) == [0]  # 16 rows per group: one group decoded, not the file
    reader.read_batch(np.array([17, 33]))
    assert list(groups) == [0, 1, 2]


def _decodes(reader) -> list[int]:
    """Record which row groups the reader decodes from the file."""
    groups = reader._groups.get()
    seen, read = [], groups.file.read_row_group
    groups.file.read_row_group = lambda group, **kw: seen.append(group) or read(group, **kw)
    return seen


@pytest.mark.parametrize("cache_mb, decoded_once", [(256.0, True), (0.0, False)])
def test_shuffled_parquet_batches_decode_each_group_once_when_it_fits(tmp_path, cache_mb, decoded_once):
    x = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)  # 8 groups of 16 KiB
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 64)}),
                   tmp_path / "x.parquet", row_group_size=64)
    reader = open_reader(tmp_path / "x.parquet", "x", parquet_cache_mb=cache_mb)
    seen = _decodes(reader)
    order = np.random.default_rng(1).permutation(512)
    for batch in np.split(order, 16):
        rows = np.sort(batch)  # the sampler's batches: random rows, sorted
        np.testing.assert_array_equal(reader.read_batch(rows), x[rows])
    assert sorted(set(seen)) == list(range(8))
    if decoded_once:
        assert sorted(seen) == list(range(8))  # 16 batches touching every group, each decoded once
    else:
        assert len(seen) > 8 * 8 and len(reader._groups.get().groups) == 2  # no budget: only the 2 newest stay


def test_parquet_cache_keeps_within_its_budget(tmp_path):
    x = np.arange(512 * 64, dtype=np.float32).reshape(512, 64)  # 16 KiB per group of 64 rows
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 64)}),
                   tmp_path / "x.parquet", row_group_size=64)
    reader = open_reader(tmp_path / "x.parquet", "x", parquet_cache_mb=48 / 1024)  # room for 3 groups
    for group in range(8):
        reader.read_batch(np.array([64 * group]))
    cache = reader._groups.get()
    assert list(cache.groups) == [5, 6, 7] and cache.nbytes == 3 * 64 * 64 * 4
    with pytest.raises(ValueError, match="cache_mb=-1 must be >= 0"):
        open_reader(tmp_path / "x.parquet", "x", parquet_cache_mb=-1)


def test_npz_stored_is_memory_mapped_and_compressed_loads_with_warning(arrays, tmp_path):
    x, y = arrays
    stored = open_reader(write("npz", tmp_path, x, y)["path"], "x")
    assert stored._loaded is None  # memory-mapped
    path = write("npz_compressed", tmp_path, x, y, name="c")["path"]
    with pytest.warns(UserWarning, match="compressed and cannot be memory-mapped; loading it into memory once"):
        loaded = open_reader(path, "x")
    np.testing.assert_array_equal(loaded.read_batch(ROWS), x[ROWS])
    with pytest.raises(ValueError, match="is compressed .* Re-save it with numpy.savez"):
        open_reader(path, "x", npz_compressed="error")


def test_concat_reader_joins_files_and_locates_rows(arrays, tmp_path):
    x, _ = arrays
    a = write("hdf5", tmp_path, x[:25], None, name="a")
    b = write("npz", tmp_path, x[25:], None, name="b")
    a["path"] = [a["path"]]
    reader = ConcatReader([open_source(a["path"], "/group/x"), open_reader(b["path"], "x")])
    assert len(reader) == 40
    np.testing.assert_array_equal(reader.read_batch(ROWS), x[ROWS])
    assert reader.locate(30) == f"'{b['path']}' key 'x' row 5"


def test_concat_rejects_different_sample_shapes():
    with pytest.raises(ValueError, match=r"Cannot concatenate .* all files must hold the same sample shape"):
        ConcatReader([MemoryReader(np.zeros((2, 3))), MemoryReader(np.zeros((2, 4)))])


@pytest.mark.parametrize(
    "name, fmt",
    [("a.npy", "npy"), ("a.NPZ", "npz"), ("a.h5", "hdf5"), ("a.hdf5", "hdf5"), ("a.parquet", "parquet"), ("a.pt", "pt")],
)
def test_infer_format(name, fmt):
    assert infer_format(name) == fmt


def test_fingerprint_changes_with_the_file(arrays, tmp_path):
    x, y = arrays
    spec = write("hdf5", tmp_path, x, y)
    before = _open("hdf5", spec).fingerprint()
    spec = write("hdf5", tmp_path, x[:30], y[:30])
    assert _open("hdf5", spec).fingerprint() != before


def _read_in_child(reader, queue):
    queue.put(reader.read_batch(ROWS))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hdf5", "npy", "parquet"])
def test_handle_opened_in_parent_is_reopened_after_fork(fmt, arrays, tmp_path):
    x, y = arrays
    reader = _open(fmt, write(fmt, tmp_path, x, y))
    reader.read_batch(ROWS)  # opens the handle in this process
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    out = queue.get(timeout=30)
    child.join(timeout=30)
    np.testing.assert_array_equal(out, x[ROWS])
    np.testing.assert_array_equal(reader.read_batch(ROWS), x[ROWS])  # the parent's handle still works
