"""Batch inference: ``Trainer.predict`` with a model from a checkpoint or an ONNX export
(``Predictor``), written as resumable, checksummed shards (``PredictionWriter``) and read back
verified (``read_predictions``).

Names are imported lazily: reading predictions needs NumPy alone, not Lightning.
"""

from __future__ import annotations

from nl_lightning._lazy import lazy_exports

_EXPORTS = {
    "PredictionWriter": "nl_lightning.predict.writer",
    "Predictor": "nl_lightning.predict.predictor",
    "ShardError": "nl_lightning.predict.manifest",
    "read_predictions": "nl_lightning.predict.manifest",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
