"""nl_lightning: PyTorch Lightning extensions — transformer blocks, task modules, data, callbacks.

Top-level names are imported lazily (PEP 562), so ``import nl_lightning.nn`` needs torch alone
and never imports Lightning.
"""

from __future__ import annotations

from nl_lightning._lazy import lazy_exports

__version__ = "0.1.0"  #: The package version (PEP 440).

_EXPORTS = {
    "ConfigError": "nl_lightning.errors",
    "NLUserError": "nl_lightning.errors",
    "OptimizerConfig": "nl_lightning.models.optim",
    "SchedulerConfig": "nl_lightning.models.optim",
    "TransformerClassifier": "nl_lightning.models.classifier",
    "TransformerConfig": "nl_lightning.models.config",
    "TransformerLM": "nl_lightning.models.lm",
    "load_checkpoint": "nl_lightning.models.checkpoint",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
