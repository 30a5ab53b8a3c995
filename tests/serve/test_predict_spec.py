"""``PredictSpec``'s routes on the HTTP side: what a validated request sends to the inference workers."""

from __future__ import annotations

import asyncio

import numpy as np
from starlette.requests import Request

from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.config import ServeLimits
from nl_lightning.serve.predict_spec import PredictSpec
from nl_lightning.serve.schemas import request_schema, response_schema


def post(body: bytes) -> Request:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", b"application/json")]}
    return Request(scope, receive)


def sent_payloads(tmp_path, signature: ModelSignature, route: str, body: bytes) -> list[dict]:
    spec = PredictSpec(signature, request_schema(signature, ServeLimits()), response_schema(signature), 8,
                       str(tmp_path), 1)
    sent: list[dict] = []

    def submit(payload: dict, stream: bool = False) -> tuple:
        sent.append(payload)
        return "uid", None

    async def answer(uid: str, item: object) -> tuple:
        return 200, b"{}"

    spec.submit, spec.answer = submit, answer  # type: ignore[method-assign]
    endpoint = {path: fn for path, fn, _ in spec.routes()}[route]
    asyncio.run(endpoint(post(body)))
    return sent


def test_a_predict_input_crosses_as_its_lists_and_batch_rows_as_one_array(tmp_path):
    """A small array costs more to pickle through LitServe's queue manager than its lists (~0.09 ms of every
    request at concurrency 1); many rows cost less as one buffer."""
    features = ModelSignature("classification", None, 3, 8, 2)
    [payload] = sent_payloads(tmp_path, features, "/predict", b'{"features": [[1, 2, 3], [4, 5, 6]]}')
    assert payload["x"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] and type(payload["x"]) is list
    [payload] = sent_payloads(tmp_path, features, "/batch_predict",
                              b'{"rows": [{"features": [[1, 2, 3]]}, {"features": [[4, 5, 6]]}]}')
    assert isinstance(payload["rows"], np.ndarray) and payload["rows"].dtype == np.float32
    assert payload["rows"].shape == (2, 1, 3)
