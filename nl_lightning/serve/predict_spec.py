"""``PredictSpec``: ``POST /predict`` and ``POST /batch_predict`` of a classifier or regressor.

Both take the model's own request schema (a ``/batch_predict`` body is ``{"rows": [<a /predict
body>, ...]}``, each row validated as one, a bad row named by its index) and go to the same
inference workers, where one ``/batch_predict`` request runs as model batches. The validated rows of a
``/batch_predict`` cross to the worker as one NumPy array (pickled in one piece, not as nested lists); a
``/predict`` input crosses as the validated lists, which the worker turns into an array: one small
array costs more to pickle through LitServe's queue manager than its lists (measured: ~0.09 ms of
every request at concurrency 1). The worker answers with the JSON body, which is forwarded as it is.

Bodies are parsed and validated in one pass (``parse_body``); ``/openapi.json`` shows the request
schemas (``routes``). No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
return annotations, response classes built per model.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import Request, Response

from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.api import input_dtype
from nl_lightning.serve.dispatch import ModelSpec
from nl_lightning.serve.loops import ALONE
from nl_lightning.serve.schemas import (
    ServeRequest, ServeResponse, batch_request_schema, batch_response_schema, parse_body,
)

JSON = "application/json"


class PredictSpec(ModelSpec):
    """The routes of a classifier or regressor server."""

    def __init__(self, signature: ModelSignature, schema: type[ServeRequest], response: type[ServeResponse],
                 max_batch_rows: int, state_dir: str, num_workers: int) -> None:
        super().__init__(state_dir, num_workers)
        self.signature, self.schema, self.response = signature, schema, response
        from nl_lightning.serve.config import ServeLimits

        self.batch_schema = batch_request_schema(schema, ServeLimits(max_batch_rows=max_batch_rows))
        self.batch_response = batch_response_schema(response)
        self.field = signature.inputs
        self.dtype = input_dtype(signature)

    def routes(self) -> list[tuple[str, Callable[..., Any], list[str]]]:
        """``/predict`` and ``/batch_predict``."""
        async def predict(request: Request) -> self.response:  # type: ignore[valid-type]
            body = await parse_body(request, self.schema)
            return await self._run({"x": getattr(body, self.field), "request_id": body._request_id})

        async def batch_predict(request: Request) -> self.batch_response:  # type: ignore[valid-type]
            body = await parse_body(request, self.batch_schema)
            return await self._run({"rows": self._rows(body.rows), "request_id": body._request_id})

        predict.__doc__ = "One input in, the model's answer out (the schemas are this model's)."
        batch_predict.__doc__ = "Many inputs in one request (`rows`), answered in order, run as model batches."
        return [("/predict", predict, ["POST"]), ("/batch_predict", batch_predict, ["POST"])]

    def schemas(self) -> dict[str, type]:
        """The request schema of each route."""
        return {"/predict": self.schema, "/batch_predict": self.batch_schema}

    async def _run(self, payload: dict[str, Any]) -> Response:
        payload[ALONE] = not self._inflight  # the worker then runs it without looking for others (loops.py)
        status, body = await self.answer(*self.submit(payload))
        return Response(body, status_code=status, media_type=JSON)

    def _rows(self, rows: list[ServeRequest]) -> "list[np.ndarray] | np.ndarray":
        values = [getattr(row, self.field) for row in rows]
        try:
            return np.asarray(values, dtype=self.dtype)  # rows of one length: one buffer; iterating it gives rows
        except ValueError:
            return [np.asarray(v, dtype=self.dtype) for v in values]
