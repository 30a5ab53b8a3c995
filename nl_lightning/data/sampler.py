"""A BatchSampler that yields NumPy index arrays, so a batch reaches the reader without Python lists."""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
from torch.utils.data import BatchSampler, SequentialSampler


class ArrayBatchSampler(BatchSampler):
    """torch's ``BatchSampler`` yielding ``int64`` arrays instead of lists.

    Converting a 1,024-index list to an array costs about as much as reading 1 MB from the page
    cache; a sequential sampler is sliced with ``np.arange`` instead, other samplers (random,
    Lightning's ``DistributedSampler`` under DDP) are drained with ``np.fromiter``. The
    arguments are torch's, so Lightning can inject its distributed sampler as usual.
    """

    def __iter__(self) -> Iterator[np.ndarray]:
        if type(self.sampler) is SequentialSampler:
            n = len(self.sampler)
            stop = n - n % self.batch_size if self.drop_last else n
            for start in range(0, stop, self.batch_size):
                yield np.arange(start, min(start + self.batch_size, n))
            return
        indices = iter(self.sampler)
        while True:
            batch = np.fromiter(itertools.islice(indices, self.batch_size), dtype=np.int64)
            if len(batch) == 0 or (self.drop_last and len(batch) < self.batch_size):
                return
            yield batch
