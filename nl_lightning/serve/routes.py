"""Routes beyond the model's and LitServe's ``/health``: ``/info``, ``/metrics``, ``/docs``,
``/openapi.json`` and ``/admin/*``.

Everything but ``/admin/*`` takes LitServe's API key (``LIT_SERVER_API_KEY``) when one is set, the
API documentation included; the admin routes take the admin key and are left out of
``/openapi.json`` and ``/docs``, as they are out of ``/info``.

``/admin/reload`` (a named or the newest version) and ``/admin/rollback`` return once every worker
serves the new version (TorchServe's management API, on LitServe). They run in a thread: waiting
for workers must not block the HTTP server's event loop, which keeps answering predictions.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.auth import AdminKey
from nl_lightning.serve.config import ServeConfig
from nl_lightning.serve.metrics import process_metrics, render_metrics
from nl_lightning.serve.registry import ModelRegistry, VersionNotFoundError
from nl_lightning.serve.rollout import Rollout, RolloutError
from nl_lightning.serve.dispatch import ModelSpec


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = None
    """Version to serve; None = the newest in model_dir (re-read now, so new versions are found)."""


@dataclass
class ServingInfo:
    """What the routes read; built once in the main process, inherited by the HTTP processes."""

    config: ServeConfig
    signature: ModelSignature
    spec: ModelSpec
    registry: ModelRegistry
    rollout: Rollout


def add_routes(app: FastAPI, info: ServingInfo, api_auth: Any) -> None:
    """``api_auth``: the LitAPI's ``authorize`` (LitServe's key), used for everything but ``/admin/*``."""
    admin = AdminKey(info.config.admin_key_env)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(api_auth)])
    async def openapi() -> JSONResponse:
        return JSONResponse(with_request_bodies(app.openapi(), info.spec.schemas()))

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(api_auth)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{info.signature.task} model - API")

    @app.get("/info", dependencies=[Depends(api_auth)])
    async def model_info() -> dict[str, Any]:
        return describe(info)

    @app.get("/metrics", dependencies=[Depends(api_auth)])
    async def metrics() -> Response:
        body, content_type = await asyncio.to_thread(render_metrics)
        return Response(body, media_type=content_type)

    @app.get("/admin/versions", include_in_schema=False, dependencies=[Depends(admin)])
    async def versions() -> dict[str, Any]:
        state = info.rollout.read()
        return {"live": state.version, "history": state.history, "available": info.registry.versions()}

    @app.post("/admin/reload", include_in_schema=False, dependencies=[Depends(admin)])
    async def reload(request: ReloadRequest | None = Body(default=None)) -> dict[str, Any]:
        version = request.version if request is not None else None
        return await _switch(info, "reload", lambda: info.rollout.switch(_known(info, version)))

    @app.post("/admin/rollback", include_in_schema=False, dependencies=[Depends(admin)])
    async def rollback() -> dict[str, Any]:
        return await _switch(info, "rollback", info.rollout.rollback)


def with_request_bodies(schema: dict[str, Any], bodies: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """The OpenAPI document with each model route's request schema (the routes validate their bodies
    themselves, in one pass of pydantic's parser, so FastAPI does not see them)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in bodies.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        reference = {"$ref": f"#/components/schemas/{model.__name__}"}
        schema["paths"][path]["post"]["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": reference}}}
    return schema


def describe(info: ServingInfo) -> dict[str, Any]:
    """Task, input and output schemas (of ``/predict``, and the request schema of every model route), limits,
    the live version, what each worker has loaded (with its file's SHA-256) and, for ONNX, the export manifest."""
    state = info.rollout.read()
    workers = info.rollout.workers()
    live = next((w for w in workers if w.get("version") == state.version), {})
    config = info.config
    spec = info.spec
    return {
        "task": info.signature.task,
        "signature": info.signature.to_dict(),
        "input_schema": spec.schema.model_json_schema(),
        "output_schema": spec.response.model_json_schema(),
        "route_schemas": {path: schema.model_json_schema() for path, schema in spec.schemas().items()},
        "model_id": getattr(spec, "model_id", None),
        "labels": config.labels,
        "version": state.version,
        "history": state.history,
        "backend": live.get("backend"),
        "source": live.get("path"),
        "sha256": live.get("sha256"),
        "export_manifest": live.get("export_manifest"),
        "workers": [{k: v for k, v in w.items() if k != "export_manifest"} for w in workers],
        "batching": {"max_batch_size": config.max_batch_size, "batch_timeout": config.batch_timeout,
                     "workers_per_device": config.workers_per_device, "timeout": config.timeout,
                     "max_payload_bytes": config.max_payload_bytes},
        "limits": asdict(config.limits),
    }


def _known(info: ServingInfo, version: str | None) -> str:
    try:
        return info.registry.source(version).version
    except VersionNotFoundError as err:
        raise HTTPException(404, str(err)) from err
    except (FileNotFoundError, ValueError) as err:
        raise HTTPException(409, f"Version {version!r} cannot be served: {err}") from err


async def _switch(info: ServingInfo, action: str, run: Any) -> dict[str, Any]:
    counter = process_metrics().switches
    try:
        result = await asyncio.to_thread(run)
    except RolloutError as err:
        counter.labels(action, "failed").inc()
        raise HTTPException(err.status, str(err)) from err
    except HTTPException:
        counter.labels(action, "rejected").inc()
        raise
    counter.labels(action, "ok").inc()
    return result
