"""ResumableDataLoader: a restored loader continues the same epoch order where it stopped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nl_lightning.data import ArrayDataModule, CharTextDataModule
from nl_lightning.data.resumable import EpochSampler, ResumableDataLoader, SkippingBatchSampler


def _loader(seed: int = 3) -> ResumableDataLoader:
    data = torch.arange(23)
    return ResumableDataLoader(data, batch_sampler=SkippingBatchSampler(EpochSampler(data, seed), 4, drop_last=False))


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(range(50), seed=1), EpochSampler(range(50), seed=1)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(1)
    assert list(a) != list(b)
    assert list(EpochSampler(range(50), seed=2)) != list(a)


@pytest.mark.parametrize("stop", [1, 3, 5])
def test_restored_loader_continues_where_it_stopped(stop):
    uninterrupted = [batch.tolist() for batch in _loader()]
    first = _loader()
    seen = []
    for i, batch in enumerate(first):
        seen.append(batch.tolist())
        if i + 1 == stop:
            break
    state = first.state_dict()
    assert state == {"batches": stop}
    second = _loader()
    second.load_state_dict(state)
    rest = [batch.tolist() for batch in second]
    assert seen + rest == uninterrupted
    assert second.state_dict() == {"batches": len(uninterrupted)}
    assert [batch.tolist() for batch in second] == uninterrupted  # the skip applies once


def test_state_at_the_end_of_an_epoch_starts_the_next_one_whole():
    loader = _loader()
    n = len(list(loader))
    loader.load_state_dict({"batches": n})
    assert len(list(loader)) == n


def test_datamodules_train_on_resumable_loaders():
    x, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int64)
    for loader in (ArrayDataModule(x_train=x, y_train=y, batch_size=4).train_dataloader(),):
        assert isinstance(loader, ResumableDataLoader) and isinstance(loader.batch_sampler.sampler, EpochSampler)
    text = CharTextDataModule(seq_len=8, batch_size=4)
    text.setup("fit")
    assert isinstance(text.train_dataloader(), ResumableDataLoader)


def test_char_text_has_its_own_test_slice():
    dm = CharTextDataModule(seq_len=8, batch_size=4, val_fraction=0.1, test_fraction=0.05)
    dm.setup()
    n = len(dm.train_set.tokens) + len(dm.val_set.tokens) + len(dm.test_set.tokens)
    assert len(dm.test_set.tokens) == pytest.approx(0.05 * n, abs=2)
    assert not torch.equal(dm.val_set.tokens[-50:], dm.test_set.tokens[-50:])  # test is not validation
    none = CharTextDataModule(seq_len=8, test_fraction=0.0)
    none.setup()
    with pytest.raises(ValueError, match=r"no test split \(test_fraction=0\): set test_fraction"):
        none.test_dataloader()
