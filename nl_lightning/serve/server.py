"""Build the LitServe server of a model and run it until SIGINT / SIGTERM, leaving nothing behind.

LitServe supplies the processes, batching, limits, request timeout, ``/health``, worker restarts
and, through our ``authorize``, its API key; the model's routes come from a LitSpec of ours
(``PredictSpec`` or ``GenerateSpec``: LitServe's public way to give an API its own routes), and
``routes`` adds ``/info``, ``/metrics``, ``/admin/*``, ``/docs`` and ``/openapi.json``. Only public
LitServe API is used. ``serve`` owns the run: a fresh state folder (live version, worker reports,
cancellations, Prometheus files), children that die with it even when it is SIGKILLed, signal
handling that turns SIGTERM into LitServe's own graceful shutdown (a plain SIGTERM to LitServe's
main process leaves its workers holding the port), and a final sweep that stops any child still
alive.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import litserve as ls

from nl_lightning._process import forks_die_with_parent, pid_alive
from nl_lightning.errors import ConfigError
from nl_lightning.serve.config import ServeConfig
from nl_lightning.serve.heap import freeze_startup_objects

logger = logging.getLogger("nl_lightning.serve")
RUNTIME_PREFIX = "nl-serve-"
"""A server's runtime folder (live version, worker reports, Prometheus files) is ``<tmp>/nl-serve-<pid>-*``."""


def build_server(config: ServeConfig, state_dir: str | Path) -> ls.LitServer:
    """The server of ``config.model_dir`` (not started). Loads the starting version once here, so a
    bad checkpoint or export fails now with its own message rather than in every worker."""
    from nl_lightning.serve.errors import install_error_handlers
    from nl_lightning.serve.loops import EagerBatchedLoop
    from nl_lightning.serve.metrics import PrometheusCallback, process_metrics
    from nl_lightning.serve.registry import ModelRegistry
    from nl_lightning.serve.rollout import Rollout
    from nl_lightning.serve.routes import ServingInfo, add_routes
    from nl_lightning.serve.runners import load_runner

    process_metrics()  # multiprocess mode must be on before anything counts
    registry = ModelRegistry(config.model_dir, config.backend, config.onnx_format)
    source = registry.source(config.version)
    runner = load_runner(source, "cpu", config.threads, config.task, config.trust)
    _check_labels(config, runner.signature)
    rollout = Rollout(Path(state_dir), timeout=config.reload_timeout)
    rollout.begin(source.version)
    api, spec = _model_api(config, runner, str(state_dir))
    server = ls.LitServer(
        api, accelerator=config.accelerator, devices=config.devices, workers_per_device=config.workers_per_device,
        timeout=config.timeout, max_payload_size=config.max_payload_bytes, info_path="/info/litserve",
        middlewares=_middlewares(config), callbacks=[PrometheusCallback()], disable_openapi_url=True,
        restart_workers=True, model_metadata={"model_dir": str(config.model_dir), "task": runner.signature.task},
    )
    rollout.num_workers = spec.num_workers = len(server.devices) * config.workers_per_device
    if isinstance(api.loop, EagerBatchedLoop):
        api.loop.report_start = spec.num_workers > 1
    server.uvicorn_graceful_timeout = config.shutdown_timeout
    install_error_handlers(server.app, spec.fields(), config.max_payload_bytes, config.timeout)
    add_routes(server.app, ServingInfo(config, runner.signature, spec, registry, rollout), api.authorize)
    return server


def _model_api(config: ServeConfig, runner: Any, state_dir: str) -> tuple[Any, Any]:
    """The LitAPI and the LitSpec of this model's task."""
    from nl_lightning.serve.api import PredictAPI, WorkerPlan, tokenizer_identity
    from nl_lightning.serve.loops import DecodeLoop, EagerBatchedLoop
    from nl_lightning.serve.schemas import request_schema, response_schema

    signature, labels = runner.signature, tuple(config.labels) if config.labels else None
    plan = WorkerPlan(str(config.model_dir), state_dir, signature, config.backend, config.onnx_format, config.task,
                      labels, config.threads, tuple(config.trust), tokenizer_identity(runner), os.getpid(),
                      config.rows_per_forward)
    schema = request_schema(signature, config.limits, runner.codec)
    response = response_schema(signature, labels)
    if signature.task == "lm":
        from nl_lightning.serve.generate_spec import GenerateSpec
        from nl_lightning.serve.generation import GenerateAPI
        from nl_lightning.serve.openai import openai_schemas

        model_id = config.model_name or Path(config.model_dir).resolve().name
        spec = GenerateSpec(schema, response, openai_schemas(model_id, signature, config.limits, runner.codec),
                            model_id, state_dir, 1)
        return GenerateAPI(plan, spec=spec, max_batch_size=config.max_batch_size, loop=DecodeLoop()), spec
    from nl_lightning.serve.predict_spec import PredictSpec

    spec = PredictSpec(signature, schema, response, config.limits.max_batch_rows, state_dir, 1)
    api = PredictAPI(plan, spec=spec, max_batch_size=config.max_batch_size, batch_timeout=config.batch_timeout,
                     loop=EagerBatchedLoop())
    return api, spec


def _middlewares(config: ServeConfig) -> list[Any]:
    from nl_lightning.serve.middleware import RequestContextMiddleware

    middlewares: list[Any] = [RequestContextMiddleware]
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middlewares.append((CORSMiddleware, {"allow_origins": config.cors_origins, "allow_methods": ["GET", "POST"],
                                             "allow_headers": ["Content-Type", "X-API-Key", "X-Request-ID"],
                                             "expose_headers": ["X-Request-ID"]}))
    return middlewares


def serve(config: ServeConfig) -> int:
    """Run the server in this process until SIGINT / SIGTERM; returns when every child has exited."""
    sweep_stale_runtimes()  # first: a SIGKILLed server's folder goes even when its port is still held
    check_port(config.host, config.port)  # before minutes of model loading, not after
    forks_die_with_parent()  # LitServe's manager and HTTP servers (forked) die with this process, even by SIGKILL
    runtime = Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-"))
    metrics_dir = runtime / "prometheus"
    metrics_dir.mkdir()
    previous_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # before prometheus_client is imported
    try:
        with _graceful_signals():
            server = build_server(config, runtime / "state")
            freeze_startup_objects()  # the forked HTTP servers then never walk them in a collection
            logger.warning("Serving %s on http://%s:%d (Ctrl+C or SIGTERM stops it)", config.model_dir,
                           config.host, config.port)
            server.run(host=config.host, port=config.port, num_api_servers=config.num_api_servers,
                       log_level=config.log_level, generate_client_file=False)
    except KeyboardInterrupt:
        pass  # a signal before LitServe's own handler was in place: the sweep below stops the children
    finally:
        _stop_children(config.shutdown_timeout)
        shutil.rmtree(runtime, ignore_errors=True)
        if previous_dir is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous_dir
    return 0


def sweep_stale_runtimes(root: str | Path | None = None) -> list[Path]:
    """Remove the runtime folders of servers that died without cleaning up (SIGKILL, power loss): those
    whose ``<pid>`` no longer runs. Returns what was removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{RUNTIME_PREFIX}*-*"):
        pid = folder.name[len(RUNTIME_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def check_port(host: str, port: int) -> None:
    """Raise if something already listens on ``host:port`` (bound the way uvicorn binds)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(
                f"port={port} on {host} is taken ({err.strerror}): stop what listens there or pick another --port."
            ) from None


@contextmanager
def _graceful_signals() -> Iterator[None]:
    """SIGTERM behaves as Ctrl+C (LitServe shuts down gracefully on KeyboardInterrupt); a second
    signal during the shutdown is ignored, so the shutdown itself is never cut short."""
    received, owner = [], os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked HTTP server re-raising the signal after its own shutdown
            raise SystemExit(0)
        if received:
            logger.warning("Already shutting down; ignoring signal %d.", signum)
            return
        received.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_children(timeout: float) -> None:
    """Terminate, then kill, any process this one started that is still alive."""
    children = mp.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            logger.warning("Process %s (%d) ignored SIGTERM; killing it.", child.name, child.pid)
            child.kill()
            child.join(5)


def _check_labels(config: ServeConfig, signature: Any) -> None:
    if config.labels is not None and (signature.task != "classification" or len(config.labels) != signature.num_outputs):
        raise ConfigError(
            f"labels has {len(config.labels)} names but the model is a {signature.task} model with "
            f"{signature.num_outputs} outputs; give one name per class, or labels: null."
        )
