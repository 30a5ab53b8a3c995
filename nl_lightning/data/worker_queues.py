"""``DirectQueue``: DataLoader queues that write small messages in the caller's thread.

``multiprocessing.Queue.put`` hands every message to a feeder thread that pickles and writes it.
A DataLoader sends one small message per batch each way (the batch's indices to a worker, a
:class:`~nl_lightning.data.shared_batches.PackedBatch` back), so each batch wakes two feeder
threads and moves the GIL between threads twice. On 2 cores with 2 workers (batches of 256 x 4 KiB
from a page-cached ``.npy``), writing directly took the loader from ~330-420 to ~245-260 us per
batch (``benchmarks/data_throughput.py``).

A message is written directly only when that cannot block: it fits in one atomic pipe write
(``select.PIPE_BUF``), the pipe has room (``poll`` says writable), no earlier message is still
waiting, and no other process is writing. Otherwise it goes to a feeder thread, as in
``multiprocessing.Queue``; either way ``put`` never blocks and messages keep their order.
"""

from __future__ import annotations

import collections
import os
import queue
import select
import sys
import threading
import time
from multiprocessing import context as mp_context
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["DirectQueue", "direct_queue_context"]

_DIRECT_MAX = select.PIPE_BUF - 4  # Connection.send_bytes prefixes a 4-byte length


class DirectQueue:
    """``multiprocessing.Queue``'s interface as the DataLoader uses it (``put``, ``get`` with a
    timeout, ``close``, ``cancel_join_thread``, ``join_thread``), writing small messages directly."""

    def __init__(self, ctx: mp_context.BaseContext) -> None:
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._rlock, self._wlock = ctx.Lock(), ctx.Lock()
        self._local()

    def _local(self) -> None:
        """This process's writer state (a forked or unpickled copy starts with none pending)."""
        self._pid, self._mutex = os.getpid(), threading.Lock()
        self._pending: collections.deque[bytes] = collections.deque()
        self._writing, self._thread, self._wake = False, None, threading.Event()
        self._poller = select.poll()
        self._poller.register(self._writer.fileno(), select.POLLOUT)

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        data = ForkingPickler.dumps(obj)
        if self._pid != os.getpid():
            self._local()
        with self._mutex:
            if not self._pending and not self._writing and len(data) <= _DIRECT_MAX and self._try_write(data):
                return
            self._pending.append(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._feed, name="DirectQueue feeder", daemon=True)
                self._thread.start()
        self._wake.set()

    def _try_write(self, data: bytes) -> bool:
        """Write ``data`` now if the pipe has room and no other process is writing."""
        if not self._wlock.acquire(False):
            return False
        try:
            if not self._poller.poll(0):  # full: a write could block
                return False
            self._writer.send_bytes(data)  # <= PIPE_BUF into a writable pipe: atomic, does not block
            return True
        finally:
            self._wlock.release()

    def _feed(self) -> None:
        """Feeder thread: write pending messages in order (these writes may block)."""
        while True:
            self._wake.wait()
            with self._mutex:
                if not self._pending:
                    self._wake.clear()
                    continue
                data, self._writing = self._pending.popleft(), True
            try:
                with self._wlock:
                    self._writer.send_bytes(data)
            except OSError:  # the reader is gone (shutdown): nothing left to deliver to
                return
            finally:
                with self._mutex:
                    self._writing = False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._rlock.acquire(block, timeout):
            raise queue.Empty
        try:
            wait = (None if deadline is None else max(0.0, deadline - time.monotonic())) if block else 0.0
            if not self._reader.poll(wait):
                raise queue.Empty
            data = self._reader.recv_bytes()
        finally:
            self._rlock.release()
        return ForkingPickler.loads(data)

    def cancel_join_thread(self) -> None:
        """Nothing to do: the feeder thread is a daemon and is never joined at exit."""

    def join_thread(self) -> None:
        """Nothing to do (see :meth:`cancel_join_thread`)."""

    def close(self) -> None:
        """Nothing to do: the pipe closes with the last process holding it."""

    def __getstate__(self) -> dict[str, Any]:
        mp_context.assert_spawning(self)
        return {k: getattr(self, k) for k in ("_reader", "_writer", "_rlock", "_wlock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._local()


class _DirectQueues:
    """Context mixin: ``Queue()`` is a :class:`DirectQueue`."""

    def Queue(self, maxsize: int = 0) -> DirectQueue:
        return DirectQueue(self)


class _Spawn(_DirectQueues, mp_context.SpawnContext):
    pass


_CONTEXTS: dict[str, type] = {"spawn": _Spawn}
if sys.platform != "win32":  # multiprocessing has fork and forkserver contexts there only

    class _Fork(_DirectQueues, mp_context.ForkContext):
        pass

    class _ForkServer(_DirectQueues, mp_context.ForkServerContext):
        pass

    _CONTEXTS.update(fork=_Fork, forkserver=_ForkServer)


def direct_queue_context(base: str | mp_context.BaseContext | None) -> str | mp_context.BaseContext | None:
    """The start method of ``base`` (a context, its name, or None for the default) with
    :class:`DirectQueue` queues. ``base`` itself when it has them already, when it is a context
    class of the user's own, or where ``select.poll`` is missing (Windows)."""
    import torch.multiprocessing as torch_mp

    standard = base is None or isinstance(base, str) or type(base) in (
        mp_context.DefaultContext, *(c.__mro__[2] for c in _CONTEXTS.values()))
    if not standard or not hasattr(select, "poll"):
        return base
    method = base if isinstance(base, str) else (base or torch_mp).get_start_method()
    return _CONTEXTS[method]()
