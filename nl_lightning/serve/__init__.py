"""Serving (LitServe) for nl_lightning models (batch inference: ``nl_lightning.predict``).

Names are imported lazily: ``nl-lightning serve`` must set ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus_client is imported, and the model runners (also used by batch inference) need
neither LitServe nor Prometheus.
"""

from __future__ import annotations

from nl_lightning._lazy import lazy_exports

_EXPORTS = {
    "ServeConfig": "nl_lightning.serve.config",
    "ServeLimits": "nl_lightning.serve.config",
    "ModelRegistry": "nl_lightning.serve.registry",
    "ModelSignature": "nl_lightning.export.signature",
    "Runner": "nl_lightning.serve.runners",
    "load_runner": "nl_lightning.serve.runners",
    "ModelAPI": "nl_lightning.serve.api",
    "PredictAPI": "nl_lightning.serve.api",
    "GenerateAPI": "nl_lightning.serve.generation",
    "build_server": "nl_lightning.serve.server",
    "serve": "nl_lightning.serve.server",
    # batch inference lives in nl_lightning.predict; these names stay importable from here
    "Predictor": "nl_lightning.predict.predictor",
    "read_predictions": "nl_lightning.predict.manifest",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
