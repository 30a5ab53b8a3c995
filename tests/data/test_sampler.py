"""ArrayBatchSampler: the same batches as torch's BatchSampler, as int64 arrays."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DistributedSampler, RandomSampler, SequentialSampler

from nl_lightning.data.sampler import ArrayBatchSampler


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize(
    "make", [lambda n: SequentialSampler(range(n)), lambda n: DistributedSampler(range(n), 2, 1, shuffle=False)]
)
def test_matches_torch_batch_sampler(make, drop_last):
    ours = list(ArrayBatchSampler(make(23), 5, drop_last))
    torch_batches = list(BatchSampler(make(23), 5, drop_last))
    assert [b.tolist() for b in ours] == torch_batches
    assert all(b.dtype == np.int64 for b in ours) and len(ArrayBatchSampler(make(23), 5, drop_last)) == len(ours)


def test_random_sampler_is_a_permutation_and_seeded():
    def epoch(seed):
        sampler = RandomSampler(range(23), generator=torch.Generator().manual_seed(seed))
        return np.concatenate(list(ArrayBatchSampler(sampler, 4, False)))

    assert sorted(epoch(0).tolist()) == list(range(23))
    assert epoch(0).tolist() == epoch(0).tolist() != epoch(1).tolist()


def test_a_sequential_batch_pickles_as_its_two_ends_and_arrives_as_a_plain_array():
    batch = next(iter(ArrayBatchSampler(SequentialSampler(range(5000)), 1024, False)))
    sent = pickle.dumps(batch)
    assert len(sent) < 100  # not 8 KiB of indices: a worker's request stays one small pipe write
    got = pickle.loads(sent)
    assert type(got) is np.ndarray and got.dtype == np.int64 and got.tolist() == list(range(1024))
    with pytest.raises(ValueError, match="read-only"):
        batch[0] = 7  # it could not pickle as a range any more
    for view in (batch[::3], batch[5:9], batch + 1):  # views and results carry their own values
        assert pickle.loads(pickle.dumps(view)).tolist() == view.tolist()
