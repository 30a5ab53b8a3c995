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
It runs a batch as LitServe's loop does, hook for hook, except that it reads once, at start, which
hooks take LitServe's ``context`` argument: LitServe calls ``inspect.signature`` on every hook of
every batch, five times per request here, which measured ~0.2 ms of every request at concurrency 1.

``DecodeLoop`` (LMs): LitServe's ``ContinuousBatchingLoop`` spins on the event loop while no
generation runs (a core at 100% per idle worker); this one sleeps until a request is added.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from queue import Queue
from typing import Any

from fastapi import HTTPException
from litserve.callbacks import EventTypes
from litserve.loops import BatchedLoop, ContinuousBatchingLoop
from litserve.utils import LitAPIStatus, LoopResponseType, PickleableHTTPException

logger = logging.getLogger(__name__)

IDLE_POLL = 1.0
"""Seconds a worker blocks on its queue before looking again (LitServe's own loops use 1 s too)."""
ALONE = "alone"
"""Payload key the HTTP side sets to True when the request is the only one it has in flight."""


class EagerBatchedLoop(BatchedLoop):
    """``BatchedLoop`` that never waits on an empty queue (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._full = False
        self._stopped = False
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
            if self._stopped or len(payloads) + len(timed_out) >= lit_api.max_batch_size or (
                    not self._full and _alone(item)):
                break
            wait = deadline - time.monotonic()
            item = self.get_request(request_queue, block=wait > 0, timeout=max(wait, 0.0))
        self._full = len(payloads) >= lit_api.max_batch_size
        return payloads, timed_out

    def run_batched_loop(self, lit_api: Any, request_queue: Queue, transport: Any, callback_runner: Any,
                         lit_spec: Any = None) -> None:
        """Batches until LitServe's stop sentinel (see the module docstring)."""
        hook = _Hooks(lit_api)
        while not self._stopped:
            try:
                payloads, timed_out = self.get_batch_requests(lit_api, request_queue, transport)
            except KeyboardInterrupt:  # as LitServe's loop
                self.kill()
                return
            for response_queue_id, uid in timed_out:
                logger.error("Request %s waited in the queue longer than %s s; answered 504.", uid,
                             lit_api.request_timeout)
                self.put_response(transport, response_queue_id, uid, HTTPException(504, "Request timed out"),
                                  LitAPIStatus.ERROR, LoopResponseType.REGULAR)
            if payloads:
                self._run_batch(lit_api, hook, payloads, transport, callback_runner)

    def _run_batch(self, lit_api: Any, hook: "_Hooks", payloads: list, transport: Any, callback_runner: Any) -> None:
        """One batch through the API's hooks and callbacks, as LitServe's ``BatchedLoop`` runs it."""
        queue_ids, uids, inputs = zip(*payloads)
        try:
            contexts = [{} for _ in inputs]
            spec = lit_api.spec
            if hasattr(spec, "populate_context"):
                for payload, context in zip(inputs, contexts):
                    spec.populate_context(context, payload)
            callback_runner.trigger_event(EventTypes.BEFORE_DECODE_REQUEST.value, lit_api=lit_api)
            x = [hook("decode_request", context, payload) for payload, context in zip(inputs, contexts)]
            callback_runner.trigger_event(EventTypes.AFTER_DECODE_REQUEST.value, lit_api=lit_api)
            x = hook("batch", contexts, x)
            callback_runner.trigger_event(EventTypes.BEFORE_PREDICT.value, lit_api=lit_api)
            y = hook("predict", contexts, x)
            callback_runner.trigger_event(EventTypes.AFTER_PREDICT.value, lit_api=lit_api)
            outputs = hook("unbatch", contexts, y)
            if len(outputs) != len(inputs):
                logger.error("LitAPI.predict / unbatch returned %d outputs for %d inputs.", len(outputs), len(inputs))
                raise HTTPException(500, detail="Batch size mismatch")
            callback_runner.trigger_event(EventTypes.BEFORE_ENCODE_RESPONSE.value, lit_api=lit_api)
            encoded = [hook("encode_response", context, out) for out, context in zip(outputs, contexts)]
            callback_runner.trigger_event(EventTypes.AFTER_ENCODE_RESPONSE.value, lit_api=lit_api)
        except HTTPException as err:
            error = PickleableHTTPException.from_exception(err)
            for response_queue_id, uid in zip(queue_ids, uids):
                self.put_response(transport, response_queue_id, uid, error, LitAPIStatus.ERROR,
                                  LoopResponseType.REGULAR)
            return
        except Exception as err:  # the API's bug: logged with its traceback, every request of the batch a 500
            logger.exception("The batch of requests %s failed in the LitAPI.", list(uids))
            for response_queue_id, uid in zip(queue_ids, uids):
                self.put_error_response(transport, response_queue_id, uid, err, LoopResponseType.REGULAR)
            return
        for response_queue_id, uid, body in zip(queue_ids, uids, encoded):
            self.put_response(transport, response_queue_id, uid, body, LitAPIStatus.OK, LoopResponseType.REGULAR)

    def _admit(self, item: tuple, lit_api: Any, transport: Any, payloads: list, timed_out: list) -> None:
        """As LitServe's ``collate_requests``: report the start (for worker restarts), time out stale requests."""
        response_queue_id, uid, timestamp, payload = item
        if uid is None:  # LitServe's stop sentinel: run what was taken, then stop
            self._stopped = True
            return
        if self.report_start:
            self.put_response(transport, response_queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
        timeout = lit_api.request_timeout
        if timeout not in (None, -1, False) and time.monotonic() - timestamp > timeout:
            timed_out.append((response_queue_id, uid))
        else:
            payloads.append((response_queue_id, uid, payload))


class _Hooks:
    """Calls a LitAPI's hooks, passing ``context`` to those whose signature takes it (read once, not per call)."""

    def __init__(self, lit_api: Any) -> None:
        self.lit_api = lit_api
        self.takes_context = {
            name: "context" in inspect.signature(getattr(lit_api, name)).parameters
            for name in ("decode_request", "batch", "predict", "unbatch", "encode_response")
        }

    def __call__(self, name: str, context: Any, value: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.lit_api, name)
        return fn(value, context=context) if self.takes_context[name] else fn(value)


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
