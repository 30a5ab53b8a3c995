"""Error responses: every 4xx names the field and the limit, every 5xx carries the request id.

Installed on LitServe's FastAPI app as exception handlers. Bodies are ``{"detail": <one line>,
"request_id": ...}`` plus ``errors`` (one entry per invalid field) for validation failures.
Malformed JSON and an empty body are 400, schema violations 422, an oversized body 413.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nl_lightning.serve.middleware import request_id_of
from nl_lightning.serve.schemas import FLOAT32_MAX

logger = logging.getLogger("nl_lightning.serve")


def install_error_handlers(app: FastAPI, fields: dict[str, list[str]], max_payload_bytes: int, timeout: float) -> None:
    """``fields``: route -> its body's field names (listed when a request sends an unknown one)."""

    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type")
        if request.method == "POST" and "json" not in (content_type or "json"):
            return _reply(request, 415, f"Send the body as JSON with Content-Type: application/json (got {content_type!r}).")
        if request.method == "POST" and content_type is None and int(request.headers.get("content-length") or 0):
            return _reply(request, 415, "Send the body as JSON with Content-Type: application/json (the request "
                                        "has no Content-Type header).")
        errors = [_describe(e, fields, request.url.path) for e in exc.errors()]
        status = 400 if any(e["type"] in ("json_invalid", "body_missing") for e in errors) else 422
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return _reply(request, status, detail, errors=errors)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413:
            detail = f"Request body exceeds max_payload_size={max_payload_bytes} bytes; send less data per request."
        elif exc.status_code == 504:
            detail = f"The request waited longer than timeout={timeout} s for a worker; retry, or add workers."
        elif exc.status_code == 503:
            detail = f"{exc.detail} (request id {request_id_of(request)})"
        elif exc.status_code >= 500:
            logger.error("Request %s failed with %s: %s", request_id_of(request), exc.status_code, exc.detail)
            detail = (f"{exc.detail}: the server failed on this request; it is logged with request id "
                      f"{request_id_of(request)}.")
        return _reply(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Request %s crashed", request_id_of(request))
        detail = f"Internal server error; it is logged with request id {request_id_of(request)}."
        return _reply(request, 500, detail)

    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def error_body(detail: str, request_id: str | None, path: str = "", **extra: Any) -> dict[str, Any]:
    """``{"detail", "request_id", ...}``; on the OpenAI routes (``/v1/...``) also OpenAI's ``error``
    object, whose ``message`` the ``openai`` client shows in its exceptions."""
    body = {"detail": detail, "request_id": request_id, **extra}
    if path.startswith("/v1/"):
        body["error"] = {"message": detail, "type": "invalid_request_error", "param": None, "code": None}
    return body


def _reply(request: Request, status: int, detail: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    body = error_body(detail, request_id_of(request), request.url.path, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(error: dict[str, Any], fields: dict[str, list[str]], path: str) -> dict[str, Any]:
    """One pydantic / FastAPI error as ``{"field", "message", "type"}`` with the fix in the message."""
    loc = [part for part in error.get("loc", ()) if part != "body"]
    kind, message, ctx = error.get("type", ""), error.get("msg", ""), error.get("ctx") or {}
    nested = len(loc) > 2 and isinstance(loc[1], int) and f"{path}/{loc[0]}" in fields
    allowed = fields[f"{path}/{loc[0]}"] if nested else fields.get(path, [])  # a /batch_predict row's own fields
    if kind == "json_invalid":  # pydantic's parser: "Invalid JSON: EOF while parsing a list at line 1 column 26"
        return {"field": "body", "type": kind, "message": f"malformed JSON ({message.removeprefix('Invalid JSON: ')})"}
    if kind == "missing" and not loc:
        return {"field": "body", "type": "body_missing",
                "message": f"the request body is empty; send a JSON object with the fields {allowed}"}
    field = _field_name(loc)
    if kind in ("model_attributes_type", "dict_type", "model_type") and not loc:
        message = f"the body must be a JSON object with the fields {allowed}"
    elif kind == "extra_forbidden":
        message = f"unknown field; {'each row' if nested else 'this endpoint'} takes {allowed}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("less_than_equal", "greater_than_equal") and abs(ctx.get("le", ctx.get("ge", 0))) == FLOAT32_MAX:
        message = f"{error.get('input')!r} is outside the float32 range (|x| <= {FLOAT32_MAX:.4g})"
    elif kind.startswith(("finite_number",)):
        message = "must be a finite number (NaN and Infinity are not allowed)"
    return {"field": field, "type": kind, "message": message.replace("Value error, ", "")}


def _field_name(loc: list[Any]) -> str:
    """``["features", 3, 2]`` -> ``features[3][2]``; model-level errors -> ``body``."""
    if not loc:
        return "body"
    name = str(loc[0])
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name
