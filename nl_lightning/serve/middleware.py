"""``RequestContextMiddleware``: a request id for every request, and its count, latency and presence in Prometheus.

A pure ASGI middleware handed to LitServe through ``LitServer(middlewares=...)``. The id comes from
the client's ``X-Request-ID`` when it is a sane token, else a fresh one; it is returned in the
``X-Request-ID`` header, put in error bodies, and travels with the request to the worker's log.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nl_lightning.serve.metrics import process_metrics
from nl_lightning.serve.schemas import REQUEST_ID

#: Routes counted by name; anything else is ``other`` (unbounded label values would swamp Prometheus).
ROUTES = frozenset({"/predict", "/batch_predict", "/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                    "/info", "/metrics", "/admin/reload", "/admin/rollback", "/admin/versions", "/docs",
                    "/openapi.json", "/"})
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 500  # an exception escaping the app is a 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        route = scope["path"] if scope["path"] in ROUTES else "other"
        metrics = process_metrics()
        in_flight = metrics.in_flight.labels(route)
        in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            in_flight.dec()
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)


def request_id_of(scope_or_request: Any) -> str | None:
    """The id this middleware gave the request (from a Starlette ``Request`` or an ASGI scope)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return (scope.get("state") or {}).get("request_id")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) else None
    return None
