"""The inference workers' loops: LitServe's own, minus their idle waiting.

``EagerBatchedLoop`` (classifiers, regressors): LitServe's ``BatchedLoop`` waits ``batch_timeout``
for every batch, even for a lone request with nothing else queued (measured: 9.7 ms p50 at
concurrency 1 against 1.6 ms for a plain FastAPI app). This one blocks until a request arrives,
takes whatever else is queued at that moment, and runs at once; requests that arrive while a
batch runs form the next batch by themselves, so batching follows the load. Only when the last
batch was full (the queue outpaces the model) does it wait up to ``batch_timeout`` to fill one.
A request the HTTP process sent while it had no other in flight (``ALONE`` in its payload) runs
without that look at the queue: each look is a round trip through LitServe's queue manager
(~0.2 ms at concurrency 1), and whatever arrives after it forms the next batch all the same.

``DecodeLoop`` (LMs): LitServe's ``ContinuousBatchingLoop`` spins on the event loop while no
generation runs (a core at 100% per idle worker); this one sleeps until a request is added.
"""

from __future__ import annotations

import asyncio
import time
from queue import Queue
from typing import Any

from litserve.loops import BatchedLoop, ContinuousBatchingLoop
from litserve.utils import LitAPIStatus, LoopResponseType

IDLE_POLL = 1.0
"""Seconds a worker blocks on its queue before looking again (LitServe's own loops use 1 s too)."""
ALONE = "alone"
"""Payload key the HTTP side sets to True when the request is the only one it has in flight."""


class EagerBatchedLoop(BatchedLoop):
    """``BatchedLoop`` that never waits on an empty queue (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._full = False
        self.report_start = True
        """Send LitServe's per-request START report (which worker took it; ``dispatch`` needs it to fail a dead
        worker's requests). A server with one worker turns it off: the HTTP side knows the worker then, and
        each report is a round trip through LitServe's queue manager (~0.2 ms of every request at concurrency 1)."""

    def get_batch_requests(self, lit_api: Any, request_queue: Queue, transport: Any) -> tuple[list, list]:
        """The next batch: the first request as soon as it comes, then what is queued (see the module docstring)."""
        payloads: list = []
        timed_out: list = []
        item = self.get_request(request_queue, block=True, timeout=IDLE_POLL)
        deadline = time.monotonic() + (lit_api.batch_timeout if self._full else 0.0)
        while item is not None:
            self._admit(item, lit_api, transport, payloads, timed_out)
            if len(payloads) + len(timed_out) >= lit_api.max_batch_size or (not self._full and _alone(item)):
                break
            wait = deadline - time.monotonic()
            item = self.get_request(request_queue, block=wait > 0, timeout=max(wait, 0.0))
        self._full = len(payloads) >= lit_api.max_batch_size
        return payloads, timed_out

    def _admit(self, item: tuple, lit_api: Any, transport: Any, payloads: list, timed_out: list) -> None:
        """As LitServe's ``collate_requests``: report the start (for worker restarts), time out stale requests."""
        response_queue_id, uid, timestamp, payload = item
        if uid is None:  # a stop sentinel: nothing to run
            return
        if self.report_start:
            self.put_response(transport, response_queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
        timeout = lit_api.request_timeout
        if timeout not in (None, -1, False) and time.monotonic() - timestamp > timeout:
            timed_out.append((response_queue_id, uid))
        else:
            payloads.append((response_queue_id, uid, payload))


def _alone(item: tuple) -> bool:
    payload = item[3]
    return isinstance(payload, dict) and payload.get(ALONE) is True


class DecodeLoop(ContinuousBatchingLoop):
    """``ContinuousBatchingLoop`` that sleeps while no generation runs instead of spinning."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived: asyncio.Event | None = None

    def add_request(self, uid: str, request: Any, lit_api: Any, lit_spec: Any, transport: Any = None) -> None:
        """LitServe's, then wake ``run``."""
        super().add_request(uid, request, lit_api, lit_spec, transport)
        if self._arrived is not None:
            self._arrived.set()

    async def run(self, lit_api: Any, *args: Any) -> None:
        """Wait (up to ``IDLE_POLL``) for a generation, then LitServe's decoding loop."""
        if not lit_api.has_active_requests():
            self._arrived = self._arrived or asyncio.Event()
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), IDLE_POLL)
            except asyncio.TimeoutError:
                return
        await super().run(lit_api, *args)
