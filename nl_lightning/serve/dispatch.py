"""``ModelSpec``: the base of our LitServe specs, sending requests to the inference workers and
waiting for their answers, without ever hanging on a dead worker.

A ``LitSpec`` is LitServe's public way to give a ``LitAPI`` routes of its own (``OpenAISpec`` is
one): LitServe hands it the request queue and the response buffer, registers its endpoints with the
API's ``authorize`` and starts the workers. Subclasses (``PredictSpec``, ``GenerateSpec``) declare
their routes with the model's own schemas (built per model, so FastAPI validates and ``/docs``
shows exactly what this server accepts) and call ``submit`` / ``answer`` / ``events`` here.

When an inference worker dies (SIGKILL, out of memory), LitServe restarts it, but the requests it
held would wait forever. ``WorkerWatch`` checks the workers' pids (from their reports in the
state folder) ten times a second in each HTTP process and answers those requests 503 at once;
while no worker is alive, new requests get 503 without being queued.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import HTTPException, Request
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem

from nl_lightning._process import process_running
from nl_lightning.serve.cancel import Cancellations
from nl_lightning.serve.rollout import Rollout

WATCH_INTERVAL = 0.1
RETRY_AFTER = "1"
DEAD = "WORKER_DIED"


class WorkerWatch:
    """Which inference workers run, seen from an HTTP process (their pids from ``Rollout`` reports)."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.pids: dict[int, int] = {}
        """Worker id -> the pid of its last report (a restarted worker reports a new one)."""
        self._dead: set[int] = set()
        self._checked = float("-inf")

    def dead(self) -> set[int]:
        """Workers whose reported process no longer runs (re-checked at most every ``WATCH_INTERVAL``)."""
        now = time.monotonic()
        if now - self._checked >= WATCH_INTERVAL:
            self._checked = now
            self.pids = {int(r["worker"]): int(r["pid"]) for r in self.rollout.workers() if "pid" in r}
            self._dead = {worker for worker, pid in self.pids.items() if not process_running(pid)}
        return self._dead

    def none_alive(self) -> bool:
        """True when every worker that reported is dead (a restart is under way)."""
        dead = self.dead()
        return bool(self.pids) and len(dead) >= self.rollout.num_workers


class ModelSpec(LitSpec, ABC):
    """Routes of one model; ``pre_setup`` (LitServe calls it) registers ``routes()``."""

    def __init__(self, state_dir: str, num_workers: int) -> None:
        super().__init__()
        self.api_path = "/predict"  # the request queue's name; the routes are the subclass's
        self.state_dir, self.num_workers = state_dir, num_workers
        self._inflight: dict[str, ResponseBufferItem] = {}
        self._watch: asyncio.Task | None = None

    def pre_setup(self, lit_api: Any) -> None:
        """Register ``routes()`` (LitServe adds them to its app with the API's ``authorize``)."""
        for path, endpoint, methods in self.routes():
            self.add_endpoint(path, endpoint, methods)

    @abstractmethod
    def routes(self) -> list[tuple[str, Callable[..., Any], list[str]]]:
        """(path, endpoint, methods) of each route; endpoints are annotated with the model's schemas."""

    @abstractmethod
    def schemas(self) -> dict[str, type]:
        """Route -> its request schema (``/info``, and the field names error messages list)."""

    def fields(self) -> dict[str, list[str]]:
        """Route -> its body's fields; ``route/field`` -> the fields of the objects a list field holds."""
        found: dict[str, list[str]] = {}
        for path, schema in self.schemas().items():
            found[path] = list(schema.model_fields)
            for name, info in schema.model_fields.items():
                item = getattr(info.annotation, "__args__", (None,))[0]
                if isinstance(item, type) and hasattr(item, "model_fields"):
                    found[f"{path}/{name}"] = list(item.model_fields)
        return found

    def __getstate__(self) -> dict[str, Any]:
        # pickled into each inference worker, which needs none of the HTTP side (schemas, endpoints)
        return {"api_path": self.api_path}

    # ---- talking to the workers (HTTP process) -------------------------------------------------
    def submit(self, payload: Any, stream: bool = False) -> tuple[str, ResponseBufferItem]:
        """Queue ``payload`` for a worker; raises 503 when no worker is alive."""
        self._ensure_watch()
        if self.workers.none_alive():
            raise unavailable("every inference worker is down (restarting)")
        uid = uuid.uuid4().hex
        item = ResponseBufferItem(event=asyncio.Event(), response_queue=deque() if stream else None)
        self.response_buffer[uid] = item
        self._inflight[uid] = item
        self.request_queue.put((self.response_queue_id, uid, time.monotonic(), payload))
        return uid, item

    async def answer(self, uid: str, item: ResponseBufferItem) -> Any:
        """The worker's answer to a non-streamed request (its ``encode_response`` output)."""
        try:
            await item.event.wait()
        finally:
            self._forget(uid)
        response, status = item.response
        if status == DEAD:
            raise unavailable(response)
        if status == LitAPIStatus.ERROR:
            raise HTTPException(500, "The inference worker failed on this request")
        return response

    async def events(self, uid: str, item: ResponseBufferItem) -> AsyncIterator[dict[str, Any]]:
        """The worker's events for a streamed request, decoded; ends at its last one. A 503 if its
        worker dies; if the consumer stops early (the client went away), the worker is told."""
        finished = False
        try:
            async for data, status in self.data_streamer(item.response_queue, item.event, send_status=True):
                if status == DEAD:
                    raise unavailable(data)
                if status == LitAPIStatus.ERROR:
                    raise HTTPException(500, "The inference worker failed on this request")
                event = json.loads(data)
                finished = "finish_reason" in event or "error" in event
                yield event
            finished = True
        finally:
            self._forget(uid)
            if not finished:
                Cancellations(self.state_dir).mark(uid)

    async def until_disconnect(self, request: Request) -> None:
        """Returns when the client closes the connection (the body was read already)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def _forget(self, uid: str) -> None:
        self._inflight.pop(uid, None)
        self.response_buffer.pop(uid, None)

    # ---- dead workers --------------------------------------------------------------------------
    @property
    def workers(self) -> WorkerWatch:
        """The inference workers' liveness, as this HTTP process sees it."""
        if not hasattr(self, "_watcher"):
            self._watcher = WorkerWatch(Rollout(self.state_dir, self.num_workers))
        return self._watcher

    def _ensure_watch(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(self._watch_workers())

    async def _watch_workers(self) -> None:
        assigned: dict[str, int] = {}  # request -> pid of the worker that took it
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if not self._inflight:
                assigned.clear()
                continue
            dead = await asyncio.to_thread(self.workers.dead)
            pids, none_alive = self.workers.pids, self.workers.none_alive()
            for uid, item in list(self._inflight.items()):
                worker = item.worker_id
                if worker is None and self.num_workers == 1 and 0 in pids:
                    worker = 0  # the only worker holds it, or will: it sends no START report (``loops``)
                if worker is None:  # still queued: a live worker will take it, unless there is none
                    if none_alive:
                        _fail(item, "every inference worker is down (restarting)")
                        self._inflight.pop(uid, None)
                    continue
                pid = assigned.setdefault(uid, pids.get(worker, -1))
                if worker in dead or pids.get(worker) != pid:
                    _fail(item, f"inference worker {worker} died while answering it (it is restarting)")
                    self._inflight.pop(uid, None)
            for uid in set(assigned) - set(self._inflight):
                assigned.pop(uid)


def _fail(item: ResponseBufferItem, reason: str) -> None:
    if item.response_queue is not None:
        item.response_queue.append((reason, DEAD))
    else:
        item.response = (reason, DEAD)
    item.event.set()


def unavailable(reason: str) -> HTTPException:
    """A 503 that tells the client to retry (``Retry-After``)."""
    return HTTPException(503, f"Service unavailable: {reason}; retry in a moment.", headers={"Retry-After": RETRY_AFTER})
