"""``EagerBatchedLoop``: what a worker takes from its queue for one batch (a real ``queue.Queue``, no server)."""

from __future__ import annotations

import queue
import time
from types import SimpleNamespace

import pytest
from litserve.utils import LitAPIStatus

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


# ---- running batches: LitServe's BatchedLoop is the reference ---------------------------------------
class Recorder:
    """A transport (what the loop sends back) and a LitServe callback (which hooks fired, in order)."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.events: list[str] = []

    def send(self, item: tuple, consumer_id: object) -> None:
        self.sent.append(item)

    def responses(self) -> list[tuple]:
        """(uid, status, what was sent: errors unpickled to (type, message))."""
        import pickle

        out = []
        for uid, (data, status, _kind, _worker) in self.sent:
            if isinstance(data, bytes):
                err = pickle.loads(data)
                data = (type(err).__name__, str(err))
            elif isinstance(data, Exception):
                data = (type(data).__name__, getattr(data, "status_code", None), getattr(data, "detail", None))
            out.append((uid, str(status), data))
        return out


def doubler(recorder: Recorder, max_batch_size: int = 2):
    """A LitAPI whose ``encode_response`` takes LitServe's ``context``; -1 breaks a batch, 99 is a 422."""
    import litserve as ls
    from fastapi import HTTPException

    class Doubler(ls.LitAPI):
        def setup(self, device: str) -> None: ...

        def decode_request(self, request: dict) -> int:
            return request["x"]

        def batch(self, inputs: list) -> list:
            return list(inputs)

        def predict(self, x: list) -> list:
            if 99 in x:
                raise HTTPException(422, "99 is refused")
            if -1 in x:
                raise ValueError("the model broke on -1")
            return [2 * v for v in x]

        def unbatch(self, output: list) -> list:
            return output

        def encode_response(self, output: int, context: dict) -> dict:
            return {"y": output, "context": sorted(context)}

    class Events(ls.Callback):
        def __getattribute__(self, name: str):
            if name.startswith(("on_before_", "on_after_")):
                return lambda **kwargs: recorder.events.append(name)
            return super().__getattribute__(name)

    from litserve.callbacks import CallbackRunner

    api = Doubler(max_batch_size=max_batch_size, batch_timeout=0.01)
    api.request_timeout = 30
    return api, CallbackRunner([Events()])


def run_loop(loop, xs: list[int]) -> Recorder:
    from litserve.loops.base import _SENTINEL_VALUE

    recorder = Recorder()
    api, callbacks = doubler(recorder)
    q: queue.Queue = queue.Queue()
    for i, x in enumerate(xs):
        q.put(("q0", f"r{i}", time.monotonic(), {"x": x}))
    q.put(_SENTINEL_VALUE)
    loop.run_batched_loop(api, q, recorder, callbacks)
    return recorder


@pytest.mark.timeout(30)  # a loop that misses the sentinel never returns
def test_batches_run_as_litserve_runs_them_answers_errors_and_callbacks():
    """Same queue, same API: our loop sends what LitServe's ``BatchedLoop`` sends and fires the same events
    (answers, ``context`` for the hook that takes it, a 422 and a model failure each failing their batch only)."""
    from litserve.loops import BatchedLoop

    xs = [1, 2, 99, 3, -1, 4, 5, 6]
    ours, reference = run_loop(EagerBatchedLoop(), xs), run_loop(BatchedLoop(), xs)
    assert ours.responses() == reference.responses()
    assert ours.events == reference.events and "on_before_predict" in ours.events
    assert ours.responses()[0] == ("r0", str(LitAPIStatus.OK), {"y": 2, "context": []})
    statuses = [status for _, status, _ in ours.responses()]
    assert statuses.count(str(LitAPIStatus.ERROR)) == 4  # the batches [99, 3] and [-1, 4]


@pytest.mark.timeout(30)  # a loop that misses the sentinel never returns
def test_hook_signatures_are_read_once_per_loop_not_per_request(monkeypatch):
    """LitServe calls ``inspect.signature`` on five hooks per request: ~0.2 ms at concurrency 1."""
    import inspect

    calls: list[object] = []
    signature = inspect.signature

    def counting(fn, *args, **kwargs):
        calls.append(fn)
        return signature(fn, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    recorder = run_loop(EagerBatchedLoop(), list(range(10)))
    assert len(recorder.sent) == 10 and len(calls) == 5


@pytest.mark.timeout(30)  # a loop that misses the sentinel never returns
def test_the_stop_sentinel_ends_the_loop_after_answering_what_it_took():
    """LitServe's loop drops the requests it collected with the sentinel; ours answers them, then returns."""
    recorder = run_loop(EagerBatchedLoop(), [7])
    assert [uid for uid, _, _ in recorder.responses()] == ["r0"]
