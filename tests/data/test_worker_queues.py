"""DirectQueue: small messages are written in the caller's thread, larger ones (or a full pipe) go
through a feeder thread; put never blocks, order is kept, and DataLoaders work under every start
method."""

from __future__ import annotations

import multiprocessing as mp
import queue
import select
import threading

import numpy as np
import pytest
import torch

from nl_lightning.data.shared_batches import SharedBatchLoader
from nl_lightning.data.worker_queues import DirectQueue, direct_queue_context


def test_small_messages_are_written_without_a_feeder_thread():
    q = DirectQueue(mp.get_context("fork"))
    for i in range(10):
        q.put(("index", np.arange(i, i + 64)))
    assert q._thread is None  # every put wrote to the pipe itself
    for i in range(10):
        tag, rows = q.get(timeout=1)
        assert tag == "index" and rows.tolist() == list(range(i, i + 64))


@pytest.mark.parametrize("large_every", [0, 50], ids=["small", "mixed"])
def test_a_full_pipe_never_blocks_put_and_order_is_kept(large_every):
    q = DirectQueue(mp.get_context("fork"))
    # 1-4 MB, nothing read meanwhile: the pipe (64 KiB) fills while messages are still being put
    messages = [bytes(20_000) if large_every and i % large_every == large_every - 1 else (i, bytes(100))
                for i in range(10_000)]
    putter = threading.Thread(target=lambda: [q.put(m) for m in messages], daemon=True)
    putter.start()
    putter.join(10)
    assert not putter.is_alive() and q._thread is not None  # a blocked put would still be running
    assert [q.get(timeout=5) for _ in messages] == messages


def test_a_message_larger_than_one_atomic_pipe_write_goes_through_the_feeder():
    """Writes up to PIPE_BUF are atomic (workers share the result pipe) and fit a writable pipe."""
    q = DirectQueue(mp.get_context("fork"))
    q.put(bytes(select.PIPE_BUF))
    assert q._thread is not None and q.get(timeout=5) == bytes(select.PIPE_BUF)


def _echo(inbox: DirectQueue, outbox: DirectQueue) -> None:
    while (item := inbox.get(timeout=10)) is not None:
        outbox.put(item * 2)


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_queues_cross_processes(method):
    ctx = direct_queue_context(method)
    inbox, outbox = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=_echo, args=(inbox, outbox))
    worker.start()
    for i in range(50):
        inbox.put(i)
    assert [outbox.get(timeout=30) for _ in range(50)] == [2 * i for i in range(50)]
    inbox.put(None)
    worker.join(10)
    assert worker.exitcode == 0


def test_get_times_out_with_queue_empty():
    q = DirectQueue(mp.get_context("fork"))
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


def test_the_context_keeps_the_start_method_and_a_user_s_own_context():
    assert direct_queue_context("spawn").get_start_method() == "spawn"
    fork = direct_queue_context(mp.get_context("fork"))
    assert fork.get_start_method() == "fork" and direct_queue_context(fork) is fork
    assert isinstance(fork.Queue(), DirectQueue)

    class Mine(type(mp.get_context("fork"))):
        pass

    mine = Mine()
    assert direct_queue_context(mine) is mine  # a custom Process or Queue of the user's stays


class Squares(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([i * i])


@pytest.mark.slow
def test_shared_batch_loader_under_spawn():
    loader = SharedBatchLoader(Squares(), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert torch.cat(list(loader)).flatten().tolist() == [i * i for i in range(40)]
    assert isinstance(loader.multiprocessing_context, mp.context.SpawnContext)
