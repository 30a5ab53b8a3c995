"""``SharedBatchLoader``: DataLoader workers hand batches over through preallocated shared memory.

A plain DataLoader sends every batch's tensors from a worker to the main process through a fresh
shared-memory segment: the worker allocates and fills it, and the main process fetches its file
descriptor over a new, authenticated socket connection (``multiprocessing.resource_sharer``), per
tensor, per batch. Profiled with 2 workers and batches of 256 x 4 KiB, that hand-over took ~2 ms
of every batch and made 2 workers 10-25x slower than none.

Here each worker owns a ring of slots in one shared segment, sized from its first batch and sent
to the main process until the main process says it has it. The worker writes each collated batch
into a free slot and sends only a small :class:`PackedBatch` (slot, layout, sequence number).
The main process returns tensors that are views of the slot, without copying; the slot stays
*held* until the last of them is garbage-collected, and only then may the worker reuse it.

A slot is free when it is not held and its batch was delivered, or was written so long ago that it
cannot still be in flight: torch's DataLoader dispatches a message only when it returns one, keeping
``prefetch_factor x num_workers`` in flight round-robin, so a worker's batches older than its last
``prefetch_factor + 1`` messages were either delivered or discarded with an abandoned pass. A
message holds ``batches_per_message`` (k) batches, all unpacked (held) when it arrives, so slots per
worker = ``(prefetch_factor + 2) x k + 2`` (in flight, being written, being handed out, plus the
batch being trained on and the one Lightning fetches ahead). A worker that finds no free slot (its caller keeps many batches alive, e.g.
``list(loader)``) or a batch larger than its slots takes torch's own path for that batch, or grows
its ring. Each slot's sequence number is written after its data (-1 while writing) and checked by
the main process, so a bug here raises instead of returning another batch's data. Batches are
nested dicts, lists and tuples of tensors and plain values, as collate functions return.

A Dataset can also read a batch's largest field straight into a free slot
(:func:`worker_batch_array`, as ``ArrayDataset`` does): a collated tensor that lies in that slot is
sent where it is, saving the copy into the ring (one copy per batch, memory map to slot, instead of
two).
"""

from __future__ import annotations

import copy
import itertools
import os
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch._utils import ExceptionWrapper
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from nl_lightning.data.worker_queues import direct_queue_context
from nl_lightning.errors import ConfigError, SetupError

__all__ = ["PackedBatch", "SharedBatchCollate", "SharedBatchLoader", "SlotOverwrittenError", "worker_batch_array"]

_ALIGN = 64
# Header (int64): [acknowledged, slots, slot_bytes, then per slot: seq, delivered seq, held].
_FIELDS, _SEQ, _DELIVERED, _HELD = 3, 0, 1, 2
Layout = list[tuple[torch.dtype, tuple[int, ...], int, int]]


class SlotOverwrittenError(RuntimeError):
    """A worker wrote a slot whose batch the main process was reading (a bug, not user input)."""


@dataclass
class PackedBatch:
    """What a worker sends instead of a batch: where its tensors lie in the worker's ring."""

    ring: str
    slot: int
    seq: int
    layout: Layout
    """``(dtype, shape, offset, nbytes)`` of each tensor, in :func:`flatten` order."""
    structure: Any
    segment: Tensor | None = None
    """The ring's shared memory, sent until the main process acknowledges it."""


@dataclass
class _Ref:
    index: int


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def flatten(batch: Any, tensors: list[Tensor]) -> Any:
    """``batch`` with every tensor replaced by a reference into ``tensors`` (appended in order)."""
    if isinstance(batch, Tensor):
        tensors.append(batch)
        return _Ref(len(tensors) - 1)
    if isinstance(batch, dict):
        return {k: flatten(v, tensors) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(flatten(v, tensors) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(flatten(v, tensors) for v in batch)
    return batch


def unflatten(structure: Any, tensors: list[Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(structure, _Ref):
        return tensors[structure.index]
    if isinstance(structure, dict):
        return {k: unflatten(v, tensors) for k, v in structure.items()}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*(unflatten(v, tensors) for v in structure))
    if isinstance(structure, (list, tuple)):
        return type(structure)(unflatten(v, tensors) for v in structure)
    return structure


def _header_bytes(slots: int) -> int:
    return _align(8 * (_FIELDS + 3 * slots))


def _views(segment: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(bytes, header)``: numpy views of a ring's segment (uint8) and of its int64 header."""
    data = segment.numpy()
    slots = int(data[8:16].view(np.int64)[0])
    return data, data[: _header_bytes(slots)].view(np.int64)


def _slot_field(slot: int, which: int) -> int:
    return _FIELDS + 3 * slot + which


class _Ring:
    """A worker's slots in one shared segment: the header, then ``slots`` slots of ``slot_bytes``."""

    def __init__(self, slots: int, slot_bytes: int, in_flight: int) -> None:
        self.slots, self.slot_bytes, self.in_flight = slots, slot_bytes, in_flight
        self.base = _header_bytes(slots)
        nbytes = self.base + slots * slot_bytes
        try:
            self.segment = torch.zeros(nbytes, dtype=torch.uint8).share_memory_()
        except RuntimeError as e:  # /dev/shm full: Docker gives containers 64 MiB unless told otherwise
            raise SetupError(
                f"A DataLoader worker could not allocate {nbytes / 2**20:.1f} MiB of shared memory for its {slots} batch "
                f"slots ({e}). Give the machine or container more shared memory (docker run --shm-size=2g), or "
                "lower num_workers, prefetch_factor or batches_per_message."
            ) from e
        self.segment.numpy()[8:16].view(np.int64)[0] = slots
        self.data, self.header = _views(self.segment)
        self.header[2] = slot_bytes
        self.name, self.count = f"{os.getpid()}-{uuid.uuid4().hex}", 0
        self.claimed: tuple[int, int] | None = None
        """``(slot, nbytes)`` handed to the dataset by :meth:`claim` and not yet written."""

    def free_slot(self) -> int | None:
        """A slot neither held by the main process nor possibly still in flight, else None."""
        h = self.header
        for k in range(self.slots):
            # ``delivered`` is read before ``held``: the main process sets held, then delivered, so a
            # slot seen delivered is seen held too (read the other way round, a batch being unpacked
            # could look delivered and not held, and be overwritten).
            seq, delivered = h[_slot_field(k, _SEQ)], h[_slot_field(k, _DELIVERED)]
            if h[_slot_field(k, _HELD)] or seq < 0:
                continue
            if seq == 0 or delivered == seq or seq <= self.count - self.in_flight:
                return k
        return None

    def claim(self, nbytes: int) -> np.ndarray | None:
        """The first ``nbytes`` of a free slot, marked as being written, or None (no slot free)."""
        self.release_claim()
        slot = self.free_slot() if nbytes <= self.slot_bytes else None
        if slot is None:
            return None
        self.header[_slot_field(slot, _SEQ)] = -1  # writing
        self.claimed = (slot, nbytes)
        start = self.base + slot * self.slot_bytes
        return self.data[start : start + nbytes]

    def release_claim(self) -> None:
        """Free a claimed slot that no batch was written to (a transform replaced the array, say)."""
        if self.claimed is not None:
            self.header[_slot_field(self.claimed[0], _SEQ)] = 0  # never written: free, and no stale read passes
            self.claimed = None

    def in_claim(self, tensor: Tensor) -> int | None:
        """The segment offset of ``tensor`` (contiguous) when its bytes lie in the claimed region."""
        nbytes = tensor.numel() * tensor.element_size()
        if self.claimed is None or not nbytes:
            return None
        slot, claimed = self.claimed
        start = self.base + slot * self.slot_bytes
        offset = tensor.data_ptr() - self.segment.data_ptr()
        return offset if start <= offset and offset + nbytes <= start + claimed else None

    def write(self, slot: int, tensors: list[Tensor], in_place: list[int | None], start: int) -> tuple[int, Layout]:
        """Copy ``tensors`` into ``slot`` from ``start`` bytes in, but those already in it (their
        offsets in ``in_place``); the claim, if any, is used up."""
        self.count += 1
        self.claimed = None
        self.header[_slot_field(slot, _SEQ)] = -1  # writing
        layout, offset = [], self.base + slot * self.slot_bytes + start
        for t, at in zip(tensors, in_place):
            nbytes = t.numel() * t.element_size()
            if at is None:
                if nbytes:
                    self.data[offset : offset + nbytes] = t.reshape(-1).view(torch.uint8).numpy()
                at, offset = offset, offset + _align(nbytes)
            layout.append((t.dtype, tuple(t.shape), at, nbytes))
        self.header[_slot_field(slot, _SEQ)] = self.count
        return self.count, layout

    @property
    def acknowledged(self) -> bool:
        return bool(self.header[0])


class SharedBatchCollate:
    """``collate_fn`` wrapper: in a worker, the collated batch goes into the worker's ring."""

    def __init__(self, collate_fn: Callable[[Any], Any] | None, slots: int, in_flight: int) -> None:
        self.collate_fn, self.slots, self.in_flight = collate_fn or default_collate, slots, in_flight
        self._ring: _Ring | None = None

    def __call__(self, samples: Any) -> Any:
        batch = self.collate_fn(samples)
        if get_worker_info() is None:
            return batch
        _worker_collate[:] = [os.getpid(), self]  # for worker_batch_array
        tensors: list[Tensor] = []
        structure = flatten(batch, tensors)
        tensors = [t.contiguous() for t in tensors]
        ring = self._ring
        in_place = [None if ring is None else ring.in_claim(t) for t in tensors]
        start = _align(ring.claimed[1]) if any(at is not None for at in in_place) else 0  # type: ignore[union-attr]
        nbytes = start + sum(_align(t.numel() * t.element_size()) for t, at in zip(tensors, in_place) if at is None)
        if ring is None or nbytes > ring.slot_bytes:  # a new ring: everything is copied into it
            nbytes = sum(_align(t.numel() * t.element_size()) for t in tensors)
            size = max(nbytes, 2 * ring.slot_bytes) if ring else nbytes
            self._ring = ring = _Ring(self.slots, size, self.in_flight)
            in_place, start = [None] * len(tensors), 0
        if start:  # the dataset read into the claimed slot: the batch is written around that
            slot: int | None = ring.claimed[0]  # type: ignore[index]
        else:
            ring.release_claim()
            slot = ring.free_slot()
        if slot is None:  # the caller keeps many batches alive: torch's own path for this one
            return batch
        seq, layout = ring.write(slot, tensors, in_place, start)
        return PackedBatch(ring.name, slot, seq, layout, structure, None if ring.acknowledged else ring.segment)

    def claim(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An uninitialised ``shape`` / ``dtype`` array in a free slot of this worker's ring, or None."""
        if self._ring is None:
            return None
        raw = self._ring.claim(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        return None if raw is None else raw.view(dtype).reshape(shape)

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "_ring": None}  # each worker process builds its own ring


_worker_collate: list[Any] = []
"""``[pid, SharedBatchCollate]`` of this DataLoader worker process, once it collated a batch."""


def worker_batch_array(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray | None:
    """An uninitialised array in a free slot of this :class:`SharedBatchLoader` worker's ring, for a
    Dataset's ``__getitems__`` to read a batch's largest field into; None anywhere else (the main
    process, another DataLoader, before the worker's first batch, no free slot).

    Returned in the batch as it is (e.g. ``torch.from_numpy``), it reaches the main process without
    another copy; if the batch does not use it, the slot is freed at the next collate or claim. Only
    the last claim of a worker holds a slot.
    """
    if len(_worker_collate) != 2 or _worker_collate[0] != os.getpid() or get_worker_info() is None:
        return None
    return _worker_collate[1].claim(tuple(shape), np.dtype(dtype))


@dataclass
class _Unpacker:
    """Main process: tensors viewing a packed batch's slot; the slot is released when they are all gone."""

    pin_memory: bool = False
    rings: dict[str, tuple[Tensor, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __call__(self, item: Any) -> Any:
        if not isinstance(item, PackedBatch):
            return item
        if item.ring not in self.rings:
            self.rings[item.ring] = (item.segment, *_views(item.segment))
            self.rings[item.ring][2][0] = 1  # acknowledged: the worker stops sending the segment
        _, data, header = self.rings[item.ring]
        seq_at = _slot_field(item.slot, _SEQ)
        if header[seq_at] != item.seq:
            raise SlotOverwrittenError(
                f"DataLoader worker ring {item.ring} slot {item.slot} holds batch {header[seq_at]}, not the batch "
                f"{item.seq} being read. Please report this with your torch version."
            )
        header[_slot_field(item.slot, _HELD)] = 1
        header[_slot_field(item.slot, _DELIVERED)] = item.seq
        arrays = [_array(data, *entry) for entry in item.layout]
        tensors = [_tensor(a, dtype, shape) for a, (dtype, shape, _, _) in zip(arrays, item.layout)]
        if self.pin_memory:  # page-locked copies: the slot is free again at once
            tensors, arrays = [t.pin_memory() for t in tensors], []
        _release_when_gone(arrays, header, item.slot)
        return unflatten(item.structure, tensors)


_NUMPY = {dtype: torch.empty(0, dtype=dtype).numpy().dtype for dtype in (
    torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
    torch.bool, torch.complex64, torch.complex128)}


def _array(data: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...], offset: int, nbytes: int) -> np.ndarray:
    """The slot bytes of one tensor, typed and shaped in numpy where numpy has the dtype (views cost
    ~1 us in numpy, ~30 us in torch on a busy machine)."""
    raw = data[offset : offset + nbytes]
    return raw.view(_NUMPY[dtype]).reshape(shape) if dtype in _NUMPY else raw


def _tensor(array: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    tensor = torch.from_numpy(array)
    return tensor if tensor.dtype == dtype else tensor.view(dtype).view(shape)  # bfloat16 & co: bytes in numpy


def _release_when_gone(arrays: list[np.ndarray], header: np.ndarray, slot: int) -> None:
    """Clear the slot's held flag once none of ``arrays`` (the tensors' memory) is referenced."""
    remaining = [len(arrays)]
    held = _slot_field(slot, _HELD)

    def gone() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            header[held] = 0

    if not arrays:
        header[held] = 0
    for array in arrays:
        weakref.finalize(array, gone)


class SharedBatchLoader(DataLoader):
    """A ``DataLoader`` whose workers return batches through preallocated shared memory.

    Same arguments and behaviour as torch's (Lightning re-creates it under DDP like any
    DataLoader); with ``num_workers=0`` it is torch's loader as is. Batches from workers are
    views of shared memory, released when garbage-collected; indices and packed batches travel
    through :class:`~nl_lightning.data.worker_queues.DirectQueue` (same start method).

    ``batches_per_message``: consecutive batches a worker reads per request and returns in one
    message. Every message costs the main process a fixed ~50-100 us (pickling, two pipe
    operations, torch's bookkeeping, waking a process), which small batches cannot hide:
    ``FileDataModule`` sets it from the batch size (:func:`~nl_lightning.data.datamodule.auto_batches_per_message`).
    ``prefetch_factor`` then counts messages, as torch's does. Batches still arrive one at a
    time and in order; a worker's error is raised at the batch that failed.
    """

    def __init__(self, *args: Any, batches_per_message: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(batches_per_message, int) or batches_per_message < 1:
            raise ConfigError(f"batches_per_message must be an integer >= 1; got {batches_per_message!r}.")
        self.batches_per_message = batches_per_message

    def _chunks(self) -> int:
        """Batches per worker message: 1 unless workers read a map-style dataset in batches."""
        map_style = not isinstance(self.dataset, IterableDataset) and self.batch_sampler is not None
        return self.batches_per_message if self.num_workers > 0 and map_style else 1

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if self.num_workers == 0:
            yield from super().__iter__()
            return
        if not isinstance(self.collate_fn, SharedBatchCollate):
            prefetch, k = self.prefetch_factor or 2, self._chunks()
            # Per worker: ``prefetch`` messages in flight, the one being written, the one being
            # handed out, and the batch being trained on plus the one Lightning fetches ahead.
            self.collate_fn = SharedBatchCollate(self.collate_fn, slots=(prefetch + 2) * k + 2,
                                                 in_flight=(prefetch + 1) * k + 1)
        self.multiprocessing_context = direct_queue_context(self.multiprocessing_context)
        unpacker = self.__dict__.setdefault("_unpacker", _Unpacker(pin_memory=self.pin_memory))
        if not self.persistent_workers:
            unpacker.rings.clear()  # new worker processes, new rings
        for item in super().__iter__():
            if not isinstance(item, _Chunk):
                yield unpacker(item)
                continue
            batches = [unpacker(b) for b in reversed(item)]  # all held before the first is handed out
            item.clear()
            while batches:  # popped, so that none is kept alive here once handed out
                if isinstance(batches[-1], ExceptionWrapper):
                    batches.pop().reraise()
                yield batches.pop()

    def _get_iterator(self) -> Any:
        k = self._chunks()
        if k == 1:
            return super()._get_iterator()
        # torch's iterator over a copy that sends ``k`` batches' indices per message to a dataset
        # that reads and collates each (the loader itself keeps its sampler, dataset and length).
        view = copy.copy(self)
        vars(view).update(batch_sampler=_ChunkSampler(self.batch_sampler, k), collate_fn=_chunk_collate,
                          dataset=_ChunkFetcher(self.dataset, self.collate_fn))
        return _MultiProcessingDataLoaderIter(view)


class _Chunk(list):
    """A worker's message of several batches (packed, or as torch sends them), in order."""

    def pin_memory(self, device: Any = None) -> "_Chunk":
        """Left as is by torch's pin-memory thread: :class:`_Unpacker` pins each batch it unpacks."""
        return self


class _ChunkSampler:
    """Groups of ``k`` consecutive batches of ``batches`` (a batch sampler), re-iterated each pass."""

    def __init__(self, batches: Any, k: int) -> None:
        self.batches, self.k = batches, k

    def __iter__(self) -> Iterator[list[Any]]:
        batches = iter(self.batches)
        while chunk := list(itertools.islice(batches, self.k)):
            yield chunk

    def __len__(self) -> int:
        return -(-len(self.batches) // self.k)


class _ChunkFetcher:
    """Worker side: reads and collates each batch of a chunk as torch's fetcher would, one after the
    other (a dataset's slot claim is collated before the next batch claims one)."""

    def __init__(self, dataset: Any, collate_fn: Callable[[Any], Any]) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __getitems__(self, chunk: list[Any]) -> _Chunk:
        out, getitems = _Chunk(), getattr(self.dataset, "__getitems__", None)
        for indices in chunk:
            try:
                out.append(self.collate_fn(getitems(indices) if getitems else [self.dataset[i] for i in indices]))
            except Exception:
                info = get_worker_info()
                out.append(ExceptionWrapper(where=f"in DataLoader worker process {info.id if info else 0}"))
                break
        return out

    def __len__(self) -> int:
        return len(self.dataset)


def _chunk_collate(chunk: _Chunk) -> _Chunk:
    return chunk
