"""``EagerBatchedLoop``: what a worker takes from its queue for one batch (a real ``queue.Queue``, no server)."""

from __future__ import annotations

import queue
import time
from types import SimpleNamespace

from nl_lightning.serve.loops import ALONE, EagerBatchedLoop


def loop_and_api(max_batch_size: int = 4, batch_timeout: float = 0.2) -> tuple[EagerBatchedLoop, SimpleNamespace]:
    loop = EagerBatchedLoop()
    loop.report_start = False
    return loop, SimpleNamespace(max_batch_size=max_batch_size, batch_timeout=batch_timeout, request_timeout=30)


def request(uid: str, alone: bool = False) -> tuple:
    return ("q0", uid, time.monotonic(), {"x": uid, ALONE: alone})


def uids(payloads: list) -> list[str]:
    return [uid for _, uid, _ in payloads]


def test_queued_requests_join_the_first_one_without_waiting():
    loop, api = loop_and_api()
    q: queue.Queue = queue.Queue()
    for uid in "abc":
        q.put(request(uid))
    start = time.monotonic()
    payloads, timed_out = loop.get_batch_requests(api, q, None)
    assert uids(payloads) == list("abc") and not timed_out
    assert time.monotonic() - start < api.batch_timeout  # not full: it runs what is queued, no wait
    for uid in "defgh":
        q.put(request(uid))
    assert uids(loop.get_batch_requests(api, q, None)[0]) == list("defg") and q.qsize() == 1  # max_batch_size


def test_a_request_sent_alone_runs_without_looking_at_the_queue():
    """The HTTP side had nothing else in flight: the worker does not spend a queue round trip on a drain."""
    loop, api = loop_and_api()
    q: queue.Queue = queue.Queue()
    q.put(request("a", alone=True))
    q.put(request("b"))
    payloads, _ = loop.get_batch_requests(api, q, None)
    assert uids(payloads) == ["a"] and q.qsize() == 1
    payloads, _ = loop.get_batch_requests(api, q, None)
    assert uids(payloads) == ["b"]


def test_after_a_full_batch_it_waits_to_fill_the_next_even_for_a_lone_request():
    loop, api = loop_and_api(max_batch_size=2, batch_timeout=0.05)
    q: queue.Queue = queue.Queue()
    for uid in "ab":
        q.put(request(uid))
    assert uids(loop.get_batch_requests(api, q, None)[0]) == ["a", "b"]  # full: the queue outpaces the model
    q.put(request("c", alone=True))
    start = time.monotonic()
    assert uids(loop.get_batch_requests(api, q, None)[0]) == ["c"]
    assert time.monotonic() - start >= 0.04


def test_the_http_side_marks_a_request_alone_only_when_nothing_else_is_in_flight(tmp_path):
    import asyncio

    from nl_lightning.export.signature import ModelSignature
    from nl_lightning.serve.config import ServeLimits
    from nl_lightning.serve.predict_spec import PredictSpec
    from nl_lightning.serve.schemas import request_schema, response_schema

    signature = ModelSignature("classification", None, 2, 4, 3)
    spec = PredictSpec(signature, request_schema(signature, ServeLimits()), response_schema(signature), 8,
                       str(tmp_path), 1)
    sent: list[dict] = []

    def submit(payload: dict, stream: bool = False) -> tuple:
        sent.append(payload)
        spec._inflight[str(len(sent))] = None
        return str(len(sent)), None

    async def answer(uid: str, item: object) -> tuple:
        await asyncio.sleep(0.01)
        spec._inflight.pop(uid)
        return 200, b"{}"

    spec.submit, spec.answer = submit, answer  # type: ignore[method-assign]

    async def clients() -> None:
        await spec._run({"x": 1})  # nothing else in flight
        await asyncio.gather(spec._run({"x": 2}), spec._run({"x": 3}))  # the second finds the first in flight

    asyncio.run(clients())
    assert [p[ALONE] for p in sent] == [True, True, False]
