"""Serving (LitServe) and batch inference for nl_lightning models.

Names are imported lazily: ``nl-lightning serve`` must set ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus_client is imported, and batch inference needs neither LitServe nor Prometheus.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ServeConfig": "nl_lightning.serve.config",
    "ServeLimits": "nl_lightning.serve.config",
    "ModelRegistry": "nl_lightning.serve.registry",
    "ModelSignature": "nl_lightning.serve.signature",
    "Runner": "nl_lightning.serve.runners",
    "load_runner": "nl_lightning.serve.runners",
    "ModelAPI": "nl_lightning.serve.api",
    "ModelServer": "nl_lightning.serve.server",
    "build_server": "nl_lightning.serve.server",
    "serve": "nl_lightning.serve.server",
    "Predictor": "nl_lightning.serve.predictor",
    "read_predictions": "nl_lightning.serve.shard_manifest",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nl_lightning.serve' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
