"""``GenerateSpec``: an LM's routes, ``POST /predict``, ``/v1/completions``, ``/v1/chat/completions`` and
``GET /v1/models``, all fed by the same decoding workers (``GenerateAPI``).

Every generation reaches the HTTP process as a stream of events (LitServe's streaming), one per
token. A streamed request forwards them as they come: ``/predict`` as newline-delimited JSON
(``{"text", "tokens"}`` lines, then ``{"finish_reason", "prompt_tokens", "completion_tokens",
"version"}``), the OpenAI routes as server-sent events ending in ``data: [DONE]``. A non-streamed
request joins the same events into one answer, so both carry the same text. A client that goes
away (closing a stream, or the connection of a non-streamed request) stops its generation: its
batch slot frees at the worker's next step.

No ``from __future__ import annotations``: FastAPI reads the endpoints' return annotations, classes
built per model.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from litserve.specs.openai import ChoiceDelta

from nl_lightning.serve import openai
from nl_lightning.serve.dispatch import ModelSpec
from nl_lightning.serve.errors import error_body
from nl_lightning.serve.schemas import parse_body

NDJSON, SSE = "application/x-ndjson", "text/event-stream"


class GenerateSpec(ModelSpec):
    """The routes of an LM server (see the module docstring)."""

    def __init__(self, schema: type, response: type, openai_schemas: tuple[type, type], model_id: str,
                 state_dir: str, num_workers: int) -> None:
        super().__init__(state_dir, num_workers)
        self.schema, self.response, self.model_id = schema, response, model_id
        self.completion_schema, self.chat_schema = openai_schemas
        self.created = int(time.time())

    @property
    def stream(self) -> bool:
        """LitServe streams every generation to the HTTP process (it reads this to pick its handlers)."""
        return True  # every generation streams from the worker; non-streamed answers are joined here

    def routes(self) -> list[tuple[str, Callable[..., Any], list[str]]]:
        """``/predict``, ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``."""
        async def predict(request: Request) -> self.response:  # type: ignore[valid-type]
            """Continue a prompt (text or ids); `"stream": true` streams newline-delimited JSON events."""
            body = await parse_body(request, self.schema)
            uid, item = self.submit(body.generation(), stream=True)
            events = self.events(uid, item)
            if body.stream:
                first = await _first(events)
                if "error" in first:
                    return _model_error(request, first)
                return StreamingResponse(_ndjson(first, events), media_type=NDJSON)
            return await self._whole(request, events, lambda text, tokens, last: _predict_answer(text, tokens, last))

        async def completions(request: Request) -> dict:
            """OpenAI's text completions (`openai.completions.create`)."""
            return await self._openai(await parse_body(request, self.completion_schema), request, chat=False)

        async def chat_completions(request: Request) -> dict:
            """OpenAI's chat completions (`openai.chat.completions.create`); the model's chat template applies."""
            return await self._openai(await parse_body(request, self.chat_schema), request, chat=True)

        async def models() -> dict:
            """The served model (OpenAI's `openai.models.list`)."""
            return openai.models(self.model_id, self.created)

        return [("/predict", predict, ["POST"]), ("/v1/completions", completions, ["POST"]),
                ("/v1/chat/completions", chat_completions, ["POST"]), ("/v1/models", models, ["GET"])]

    def schemas(self) -> dict[str, type]:
        """The request schema of each POST route."""
        return {"/predict": self.schema, "/v1/completions": self.completion_schema,
                "/v1/chat/completions": self.chat_schema}

    async def _openai(self, body: Any, request: Request, chat: bool) -> Response:
        if body.model != self.model_id:
            raise HTTPException(404, f"The model {body.model!r} does not exist; this server serves {self.model_id!r} "
                                     "(GET /v1/models).")
        uid, item = self.submit(body.generation(openai.prompt_ids(body)), stream=True)
        events = self.events(uid, item)
        if body.stream:
            sse = _chat_sse if chat else _completion_sse
            first = await _first(events)
            if "error" in first:
                return _model_error(request, first)
            return StreamingResponse(sse(uid, self.model_id, first, events, body.include_usage), media_type=SSE)
        answer = openai.chat_completion if chat else openai.completion
        return await self._whole(request, events, lambda text, tokens, last: answer(uid, self.model_id, text, last))

    async def _whole(self, request: Request, events: AsyncIterator[dict], build: Callable[..., Any]) -> Response:
        """Join a generation's events into one answer; stop it if the client disconnects first."""
        joined = asyncio.ensure_future(_join(events))
        gone = asyncio.ensure_future(self.until_disconnect(request))
        try:
            await asyncio.wait({joined, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not joined.done():  # the client left: closing the events marks the generation cancelled
            joined.cancel()
            await asyncio.gather(joined, return_exceptions=True)
            await events.aclose()
            return Response(status_code=499)
        text, tokens, last = joined.result()
        if "error" in last:
            return _model_error(request, last)
        body = build(text, tokens, last)
        return Response(body if isinstance(body, str) else json.dumps(body), media_type="application/json")


async def _first(events: AsyncIterator[dict]) -> dict:
    """The first event, before the response starts: a worker failure is still a proper 5xx then."""
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        raise HTTPException(500, "The inference worker ended the generation without an answer") from None


async def _join(events: AsyncIterator[dict]) -> tuple[str, list[int], dict]:
    text, tokens, last = [], [], {}
    async for event in events:
        text.append(event.get("text") or "")
        tokens += event.get("tokens", [])
        last = event
    return "".join(text), tokens, last


def _predict_answer(text: str, tokens: list[int], last: dict) -> dict:
    return {"text": text if last.get("text") is not None else None, "tokens": tokens,
            "finish_reason": last["finish_reason"], "prompt_tokens": last["prompt_tokens"],
            "completion_tokens": last["completion_tokens"], "version": last["version"]}


def _model_error(request: Request, last: dict) -> Response:
    rid = request.scope.get("state", {}).get("request_id")
    detail = f"{last['error']} It is logged with request id {rid}."
    body = error_body(detail, rid, request.url.path, version=last.get("version"))
    return Response(json.dumps(body), status_code=500, media_type="application/json")


async def _ndjson(first: dict, events: AsyncIterator[dict]) -> AsyncIterator[str]:
    async for event in _chain(first, events):
        yield json.dumps(event) + "\n"


async def _completion_sse(uid: str, model: str, first: dict, events: AsyncIterator[dict],
                          include_usage: bool) -> AsyncIterator[str]:
    async for event in _chain(first, events):
        if "error" in event:
            yield _sse({"error": {"message": event["error"], "type": "server_error"}})
            return
        yield _sse(openai.completion_chunk(uid, model, event.get("text") or "", event.get("finish_reason")))
        if "finish_reason" in event and include_usage:
            yield _sse(openai.completion_chunk(uid, model, "", None, openai.usage(event)))
    yield "data: [DONE]\n\n"


async def _chat_sse(uid: str, model: str, first: dict, events: AsyncIterator[dict],
                    include_usage: bool) -> AsyncIterator[str]:
    yield f"data: {openai.chat_chunk(uid, model, ChoiceDelta(role='assistant', content=''), None)}\n\n"
    async for event in _chain(first, events):
        if "error" in event:
            yield _sse({"error": {"message": event["error"], "type": "server_error"}})
            return
        delta = ChoiceDelta(content=event.get("text") or "")
        yield f"data: {openai.chat_chunk(uid, model, delta, event.get('finish_reason'))}\n\n"
        if "finish_reason" in event and include_usage:
            yield f"data: {openai.chat_chunk(uid, model, None, None, openai.usage(event))}\n\n"
    yield "data: [DONE]\n\n"


async def _chain(first: dict, events: AsyncIterator[dict]) -> AsyncIterator[dict]:
    """``first``, then the rest; a failure once the answer has started streaming (its worker died)
    becomes a last ``{"error": ...}`` event, since the status line is sent already."""
    yield first
    try:
        async for event in events:
            yield event
    except HTTPException as err:
        yield {"error": err.detail, "status": err.status_code}


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"
