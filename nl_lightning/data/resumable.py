"""DataLoaders that Lightning resumes mid-epoch exactly: same order, no batch seen twice or skipped.

Lightning 2.x saves ``state_dict()`` of every training DataLoader that has one into the
checkpoint and calls ``load_state_dict`` before iterating again. Three pieces make that exact:

- :class:`EpochSampler`: a ``RandomSampler`` whose order is a function of ``(seed, epoch)`` only.
  Lightning calls ``set_epoch`` on it every epoch (and restores the epoch on resume), and under DDP
  replaces it with a ``DistributedSampler`` that shuffles by ``(seed, epoch)`` the same way.
- :class:`SkippingBatchSampler`: batches of index arrays that can start ``skip`` batches in;
  skipped batches are index arithmetic, no data is read.
- :class:`ResumableDataLoader`: counts the batches it has handed out this epoch (in the main
  process, so worker prefetching does not count) and restores that count as the skip. Its
  workers hand batches over through shared memory (``data/shared_batches.py``).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import RandomSampler

from nl_lightning.data.sampler import ArrayBatchSampler
from nl_lightning.errors import WrongTypeError
from nl_lightning.data.shared_batches import SharedBatchLoader


class EpochSampler(RandomSampler):
    """A random permutation drawn from ``seed + epoch``: reproducible after a restart."""

    def __init__(self, data_source: Any, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class SkippingBatchSampler(ArrayBatchSampler):
    """:class:`ArrayBatchSampler` whose next iteration starts ``skip`` batches in (then resets)."""

    skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                yield batch


class ResumableDataLoader(SharedBatchLoader):
    """A ``DataLoader`` with ``state_dict`` / ``load_state_dict``: the batches handed out this epoch.

    Use it with a :class:`SkippingBatchSampler` (``batch_sampler=``); Lightning re-creates the
    loader and batch sampler under DDP with its distributed sampler, keeping both classes.
    """

    _handed_out = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.batch_sampler
        self._handed_out = getattr(sampler, "skip", 0)
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": int(self._handed_out)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batches = int(state.get("batches", 0))
        sampler = self.batch_sampler
        if not isinstance(sampler, SkippingBatchSampler):
            raise WrongTypeError(f"ResumableDataLoader needs a SkippingBatchSampler to resume, got {type(sampler).__name__}.")
        # A checkpoint taken at the end of an epoch resumes at the start of the next one.
        sampler.skip = batches if batches < len(sampler) else 0
        self._handed_out = sampler.skip
