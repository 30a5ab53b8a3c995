"""Prometheus metrics in prometheus-client's multiprocess mode, plus the LitServe callback that times batches.

LitServe runs HTTP servers and inference workers as separate processes; each writes its samples to
files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up with ``MultiProcessCollector``,
so every process's counts are in one answer. The variable must be set before prometheus_client is
imported (``nl-lightning serve`` sets it first thing); metrics here are created lazily per process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from litserve.callbacks import Callback

from nl_lightning.errors import SetupError

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Every metric of the server; create one per process (values live in per-process files)."""

    def __init__(self) -> None:
        check_multiprocess_mode()
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("nl_serve_requests", "HTTP requests by route, method and status code",
                                ["route", "method", "status"], registry=None)
        self.in_flight = Gauge("nl_serve_requests_in_flight", "HTTP requests being handled now, by route", ["route"],
                               multiprocess_mode="livesum", registry=None)
        self.latency = Histogram("nl_serve_request_duration_seconds", "HTTP request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=None)
        self.batch_size = Histogram("nl_serve_batch_size", "Requests per model batch", buckets=BATCH_BUCKETS,
                                    registry=None)
        self.inference = Histogram("nl_serve_inference_duration_seconds", "Model time per batch, by version",
                                   ["version"], buckets=LATENCY_BUCKETS, registry=None)
        self.model_version = Gauge("nl_serve_model_version", "Inference workers serving each version",
                                   ["version", "backend"], multiprocess_mode="livesum", registry=None)
        self.model_errors = Counter("nl_serve_model_errors", "Requests the model failed on, by version",
                                    ["version"], registry=None)
        self.switches = Counter("nl_serve_version_switches", "Admin reloads and rollbacks by outcome",
                                ["action", "outcome"], registry=None)


_PROCESS_METRICS: ServeMetrics | None = None


def process_metrics() -> ServeMetrics:
    """This process's metrics, created on first use (forked HTTP servers inherit the parent's: the
    values notice the new pid and write to files of their own)."""
    global _PROCESS_METRICS
    if _PROCESS_METRICS is None:
        _PROCESS_METRICS = ServeMetrics()
    return _PROCESS_METRICS


def check_multiprocess_mode() -> None:
    """Raise unless prometheus_client writes to ``PROMETHEUS_MULTIPROC_DIR`` in this process."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    from prometheus_client import values

    if not directory or not os.path.isdir(directory) or values.ValueClass is values.MutexValue:
        raise SetupError(
            "Prometheus multiprocess mode is off: set PROMETHEUS_MULTIPROC_DIR to an existing, empty folder "
            "before prometheus_client is first imported (nl_lightning.serve.serve() does this), or the "
            "server's processes would each count alone."
        )


def render_metrics() -> tuple[bytes, str]:
    """The exposition text of every process's metrics and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class PrometheusCallback(Callback):
    """LitServe callback timing each batch in the inference worker (``ModelAPI`` records the batch's
    size and version on itself before predict returns)."""

    def __init__(self) -> None:
        self._started = 0.0

    def on_before_predict(self, lit_api: Any, *args: Any, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_after_predict(self, lit_api: Any, *args: Any, **kwargs: Any) -> None:
        metrics = process_metrics()
        info = getattr(lit_api, "batch_info", None) or {}
        version = info.get("version", "unknown")
        metrics.inference.labels(version).observe(time.perf_counter() - self._started)
        metrics.batch_size.observe(info.get("size", 1))
        if info.get("errors"):
            metrics.model_errors.labels(version).inc(info["errors"])

    def on_after_setup(self, lit_api: Any, *args: Any, **kwargs: Any) -> None:
        process_metrics()  # fail at start-up, not on the first request, if multiprocess mode is off
