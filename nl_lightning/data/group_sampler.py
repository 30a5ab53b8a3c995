"""``RowGroupSampler``: a shuffle for data stored in row groups too many to keep decoded at once.

A uniform shuffle over a Parquet file bigger than its decode cache touches nearly every row group
in every batch, so each batch decodes most of the file again. Here the groups are visited in a
random order, ``window`` at a time (as many as the cache holds), and the rows of each window
are shuffled together: every row once per epoch, each group decoded about once per epoch and
process, and batches mixing rows of ``window`` groups rather than of all. The order is a
function of ``(seed, epoch)`` only, like :class:`~nl_lightning.data.resumable.EpochSampler`, so
:class:`~nl_lightning.data.resumable.SkippingBatchSampler` resumes it exactly, with any number
of workers; under DDP Lightning's ``DistributedSamplerWrapper`` deals its indices to the ranks
(keeping the locality) and forwards ``set_epoch``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from nl_lightning.data.readers.base import RowGroups

__all__ = ["RowGroupSampler", "group_members"]


def group_members(rows: np.ndarray, groups: RowGroups) -> list[np.ndarray]:
    """Dataset indices of each row group: ``rows`` maps dataset index -> source row."""
    group_of = np.searchsorted(groups.offsets, rows, side="right") - 1
    order = np.argsort(group_of, kind="stable")
    cuts = np.flatnonzero(np.diff(group_of[order])) + 1
    return [part for part in np.split(order, cuts) if len(part)]


class RowGroupSampler(Sampler[int]):
    """Row groups in random order, ``window`` at a time; rows shuffled within each window."""

    def __init__(self, members: list[np.ndarray], window: int, seed: int = 0) -> None:
        if window < 1:
            raise ValueError(f"RowGroupSampler window={window} must be >= 1 (row groups shuffled together).")
        self.members, self.window, self.seed, self.epoch = members, window, seed, 0
        self._len = int(sum(len(m) for m in members))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.members))
        for start in range(0, len(order), self.window):
            rows = np.concatenate([self.members[g] for g in order[start : start + self.window]])
            yield from rng.permutation(rows).tolist()
