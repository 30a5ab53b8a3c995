"""SharedBatchLoader: worker batches through shared-memory slots equal torch's, never alias a slot,
survive abandoned passes and growing batches, and a reused slot is detected, not returned; a
dataset reads features straight into a slot without leaking it."""

from __future__ import annotations

import gc
import itertools
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from nl_lightning.data import shared_batches
from nl_lightning.data.dataset import ArrayDataset, collate_batch
from nl_lightning.data.readers import MemoryReader, NpyReader
from nl_lightning.data.shared_batches import (
    PackedBatch, SharedBatchCollate, SharedBatchLoader, SlotOverwrittenError, worker_batch_array,
)
from nl_lightning.errors import ConfigError, SetupError

Pair = namedtuple("Pair", ["a", "b"])


class Batches(Dataset):
    """Whole batches from ``__getitems__``, of several dtypes and nested containers; batch ``i``'s
    values depend on its indices only. ``grow``: later batches are wider (the ring must grow)."""

    def __init__(self, n: int = 200, grow: bool = False, fail_at: int | None = None) -> None:
        self.n, self.grow, self.fail_at = n, grow, fail_at

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, indices: list[int]) -> dict:
        if self.fail_at in indices:
            raise ValueError(f"bad row {self.fail_at}")
        idx = torch.tensor(indices)
        width = 4 + (indices[0] // 10 if self.grow else 0)
        x = idx[:, None].float() * 1000 + torch.arange(width)
        return {"x": x, "y": idx % 3 == 0, "meta": {"half": x.half(), "bf16": x.bfloat16(), "ids": [idx, "tag"],
                                                   "empty": torch.empty(0, 2), "scalar": idx.sum()},
                "pair": Pair(idx.to(torch.int32), 7)}


def _collate(batch):
    return batch


def _loader(cls=SharedBatchLoader, workers: int = 2, **kwargs) -> DataLoader:
    return cls(Batches(**kwargs.pop("data", {})), batch_size=kwargs.pop("batch_size", 8), num_workers=workers,
               collate_fn=_collate, **kwargs)


def _same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    else:
        assert a == b


@pytest.mark.parametrize("persistent", [True, False])
def test_batches_from_workers_equal_torch_and_are_not_views_of_a_slot(persistent):
    expected = list(_loader(DataLoader, workers=0))
    loader = _loader(persistent_workers=persistent)
    for _ in range(2):  # two passes: the rings are reused (persistent) or rebuilt
        got = list(loader)  # all kept until the end: slots have been reused many times by then
        assert len(got) == len(expected) == 25
        for a, b in zip(got, expected):
            _same(a, b)


def test_a_batch_larger_than_the_slots_grows_the_ring():
    expected = list(_loader(DataLoader, workers=0, data={"grow": True}))
    got = list(_loader(data={"grow": True}, persistent_workers=True))
    assert got[-1]["x"].shape[1] > got[0]["x"].shape[1]
    for a, b in zip(got, expected):
        _same(a, b)


def test_abandoned_passes_leave_the_next_pass_whole():
    """What limit_train_batches and the sanity check do: stop a pass early, then start another."""
    expected = list(_loader(DataLoader, workers=0))
    loader = _loader(persistent_workers=True, prefetch_factor=3)
    for stop in (1, 2, 5, 0):
        if stop:
            seen = list(itertools.islice(loader, stop))
            for a, b in zip(seen, expected):
                _same(a, b)
        else:
            for a, b in zip(list(loader), expected):
                _same(a, b)


def test_out_of_order_delivery_keeps_every_batch():
    got = list(_loader(persistent_workers=True, in_order=False))
    assert sorted(int(b["meta"]["ids"][0][0]) for b in got) == list(range(0, 200, 8))


def test_without_workers_it_is_torch_s_loader():
    loader = _loader(workers=0)
    assert list(loader)[0]["x"].shape == (8, 4) and not isinstance(loader.collate_fn, SharedBatchCollate)


def _as_worker(monkeypatch):
    monkeypatch.setattr(shared_batches, "get_worker_info", lambda: object())
    monkeypatch.setattr(shared_batches, "_worker_collate", [])  # this test's collate only


def test_the_ring_is_sent_until_the_main_process_has_it(monkeypatch):
    _as_worker(monkeypatch)
    collate = SharedBatchCollate(_collate, slots=3, in_flight=2)
    unpacker = shared_batches._Unpacker()
    first, second = collate(Batches().__getitems__([0, 1])), collate(Batches().__getitems__([2, 3]))
    assert isinstance(first, PackedBatch) and first.segment is not None and second.segment is not None
    unpacker(first)  # registers the ring and acknowledges it
    third = collate(Batches().__getitems__([4, 5]))
    assert third.segment is None and third.ring == first.ring
    _same(unpacker(third), Batches().__getitems__([4, 5]))
    assert not any(isinstance(v, torch.Tensor) for v in vars(third).values())  # no tensor crosses the queue


def test_a_slot_is_not_reused_while_its_tensors_are_alive(monkeypatch):
    _as_worker(monkeypatch)
    collate = SharedBatchCollate(_collate, slots=2, in_flight=1)
    unpacker = shared_batches._Unpacker()
    first = unpacker(collate(Batches().__getitems__([0])))
    view = first["x"][0]  # a view keeps the slot held, like the batch itself
    del first
    second = unpacker(collate(Batches().__getitems__([1])))
    third = collate(Batches().__getitems__([2]))
    assert not isinstance(third, PackedBatch)  # both slots held: torch's own path, data intact
    _same(third, Batches().__getitems__([2]))
    del view
    gc.collect()
    fourth = collate(Batches().__getitems__([3]))
    assert isinstance(fourth, PackedBatch) and fourth.slot == 0  # released with its last view
    _same(unpacker(fourth), Batches().__getitems__([3]))
    _same(second, Batches().__getitems__([1]))


def test_an_undelivered_batch_overwritten_in_flight_raises(monkeypatch):
    """Batches older than the in-flight bound that were never delivered were discarded with an
    abandoned pass, so their slots are reused; were the bound wrong, reading one raises."""
    _as_worker(monkeypatch)
    collate = SharedBatchCollate(_collate, slots=2, in_flight=1)
    unpacker = shared_batches._Unpacker()
    packed = [collate(Batches().__getitems__([i])) for i in range(3)]  # the third reclaims slot 0
    assert [p.slot for p in packed] == [0, 1, 0]
    _same(unpacker(packed[1]), Batches().__getitems__([1]))
    with pytest.raises(SlotOverwrittenError, match=r"slot 0 holds batch 3, not the batch 1 being read"):
        unpacker(packed[0])
    _same(unpacker(packed[2]), Batches().__getitems__([2]))


def test_batches_from_workers_are_views_of_shared_memory_not_copies():
    loader = _loader(persistent_workers=True)
    expected = list(_loader(DataLoader, workers=0))
    shared = 0
    for batch, ref in zip(loader, expected):  # each batch dropped before the next: slots are recycled
        _same(batch, ref)
        segments = [seg for seg, _, _ in loader._unpacker.rings.values()]
        ptr = batch["x"].data_ptr()
        shared += any(seg.data_ptr() <= ptr < seg.data_ptr() + seg.numel() for seg in segments)
    assert shared == len(expected)  # no batch fell back to torch's path


def _npy_dataset(tmp_path, **kwargs):
    x = np.arange(64 * 6, dtype=np.float32).reshape(64, 2, 3)
    np.save(tmp_path / "x.npy", x)
    return x, ArrayDataset(NpyReader(tmp_path / "x.npy"), MemoryReader(np.arange(64) % 5), **kwargs)


def _in_segment(tensor: torch.Tensor, segment: torch.Tensor) -> int | None:
    offset = tensor.data_ptr() - segment.data_ptr()
    return offset if 0 <= offset < segment.numel() else None


@pytest.mark.parametrize("indices", [list(range(8, 16)), [9, 3, 40, 3, 17, 8, 63, 0]], ids=["sequential", "shuffled"])
def test_array_dataset_reads_features_straight_into_the_slot(monkeypatch, tmp_path, indices):
    """One copy per batch: the worker's features are read into a free slot and sent from there; the
    small fields are copied after them."""
    _as_worker(monkeypatch)
    x, dataset = _npy_dataset(tmp_path)
    collate, unpacker = SharedBatchCollate(collate_batch, slots=3, in_flight=2), shared_batches._Unpacker()
    assert worker_batch_array((2, 3), "float32") is None  # no ring before the worker's first batch
    unpacker(collate(dataset.__getitems__([0, 1, 2, 3, 4, 5, 6, 7])))
    batch = dataset.__getitems__(indices)
    segment = collate._ring.segment
    offset = _in_segment(batch["x"], segment)
    assert offset is not None and _in_segment(batch["y"], segment) is None
    copied = []
    write = shared_batches._Ring.write
    monkeypatch.setattr(shared_batches._Ring, "write", lambda ring, slot, tensors, in_place, start: (
        copied.extend(t.numel() * t.element_size() for t, at in zip(tensors, in_place) if at is None),
        write(ring, slot, tensors, in_place, start))[1])
    packed = collate(batch)
    assert packed.layout[0][2] == offset and sum(copied) == 2 * 8 * 8  # x sent where it was read; y, row_id copied
    got = unpacker(packed)
    np.testing.assert_array_equal(got["x"].numpy(), x[indices])
    np.testing.assert_array_equal(got["y"].numpy(), np.array(indices) % 5)
    np.testing.assert_array_equal(got["row_id"].numpy(), indices)


def test_an_unused_or_abandoned_claim_frees_its_slot(monkeypatch, tmp_path):
    """A transform that returns a new tensor leaves the claimed slot unused, and a batch that raises
    after its claim never reaches the collate: neither may leak the slot (3 slots, 8 batches)."""
    _as_worker(monkeypatch)
    x, dataset = _npy_dataset(tmp_path, transform=lambda t, generator: t * 2)
    collate, unpacker = SharedBatchCollate(collate_batch, slots=3, in_flight=2), shared_batches._Unpacker()
    for start in range(0, 64, 8):
        rows = list(range(start, start + 8))
        assert worker_batch_array((8, 2, 3), "float32") is not None or start == 0  # claimed, never collated
        packed = collate(dataset.__getitems__(rows))
        assert isinstance(packed, PackedBatch)
        np.testing.assert_array_equal(unpacker(packed)["x"].numpy(), x[rows] * 2)


def test_worker_batch_array_is_none_outside_workers(tmp_path):
    x, dataset = _npy_dataset(tmp_path)
    assert worker_batch_array((2, 3), "float32") is None
    loader = SharedBatchLoader(dataset, batch_size=8, num_workers=2, collate_fn=collate_batch)
    for batch, start in zip(loader, range(0, 64, 8)):
        np.testing.assert_array_equal(batch["x"].numpy(), x[start : start + 8])


class _UnpackedWhileRead:
    """A ring header whose slot is unpacked by the main process (held, then delivered) just as the
    worker reads that slot's held flag: the interleaving that let a worker overwrite a held slot."""

    def __init__(self, header, slot: int, seq: int) -> None:
        self.header, self.seq, self.fired = header, seq, False
        self.held, self.delivered = (shared_batches._slot_field(slot, f) for f in (shared_batches._HELD,
                                                                                    shared_batches._DELIVERED))

    def __getitem__(self, i):
        value = self.header[i]
        if i == self.held and not self.fired:
            self.fired = True
            self.header[self.held], self.header[self.delivered] = 1, self.seq  # _Unpacker's order
        return value

    def __setitem__(self, i, value):
        self.header[i] = value


def test_a_slot_being_unpacked_is_never_free(monkeypatch):
    _as_worker(monkeypatch)
    collate = SharedBatchCollate(_collate, slots=2, in_flight=2)
    packed = [collate(Batches().__getitems__([i])) for i in range(2)]  # both slots in flight
    ring = collate._ring
    monkeypatch.setattr(ring, "header", _UnpackedWhileRead(ring.header, packed[0].slot, packed[0].seq))
    assert ring.free_slot() is None and ring.header.fired


@pytest.mark.parametrize("per_message", [3, 25, 40])  # 25 batches: 9 messages (last short), 1, 1 (short)
@pytest.mark.parametrize("persistent", [True, False])
def test_several_batches_per_message_equal_torch_and_keep_the_loader_s_length(per_message, persistent):
    expected = list(_loader(DataLoader, workers=0))
    loader = _loader(persistent_workers=persistent, batches_per_message=per_message, prefetch_factor=2)
    assert len(loader) == 25
    for _ in range(2):
        shared = 0
        for batch, ref in zip(loader, expected, strict=True):  # each dropped before the next: slots recycled
            _same(batch, ref)
            segments = [seg for seg, _, _ in loader._unpacker.rings.values()]
            shared += any(s.data_ptr() <= batch["x"].data_ptr() < s.data_ptr() + s.numel() for s in segments)
        assert shared == 25  # the rings hold whole messages in flight: no batch fell back to torch's path
        got = list(loader)  # all kept alive: slots run out, torch's path takes over, data intact
        for a, b in zip(got, expected, strict=True):
            _same(a, b)
        del got, a, b, batch  # the next pass starts with every slot free


def test_passes_abandoned_mid_message_leave_the_next_pass_whole():
    expected = list(_loader(DataLoader, workers=0))
    loader = _loader(persistent_workers=True, batches_per_message=4, prefetch_factor=2)
    for stop in (1, 6, 9, 0):
        for a, b in zip(itertools.islice(loader, stop or None), expected[: stop or None], strict=True):
            _same(a, b)


def test_out_of_order_messages_keep_every_batch_once():
    got = list(_loader(persistent_workers=True, in_order=False, batches_per_message=4))
    assert sorted(int(b["meta"]["ids"][0][0]) for b in got) == list(range(0, 200, 8))


def test_an_error_mid_message_is_raised_at_its_batch_after_the_batches_before_it():
    """Batch 6 (rows 48-55) fails in the worker: batches 0-5 are handed out first, as without chunks."""
    loader = _loader(data={"fail_at": 50}, batches_per_message=4, persistent_workers=True)
    seen = []
    with pytest.raises(ValueError, match="bad row 50") as raised:
        for batch in loader:
            seen.append(int(batch["meta"]["ids"][0][0]))
    assert seen == [0, 8, 16, 24, 32, 40]
    assert "in DataLoader worker process" in str(raised.value)  # torch's wrapping: the worker's traceback


def test_batches_per_message_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="batches_per_message must be an integer >= 1; got 0"):
        _loader(batches_per_message=0)


def test_shared_memory_that_runs_out_names_the_fix(monkeypatch):
    """A full /dev/shm (Docker's 64 MiB default) fails the worker's ring with what to change."""
    _as_worker(monkeypatch)

    def full(tensor):
        raise RuntimeError("unable to write to file </torch_1_2_3>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", full)
    with pytest.raises(SetupError, match=r"could not allocate .* MiB of shared memory for its 3 batch slots "
                                         r"\(unable to write .*No space left.*--shm-size.*batches_per_message"):
        SharedBatchCollate(_collate, slots=3, in_flight=2)(Batches().__getitems__([0, 1]))
