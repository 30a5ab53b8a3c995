"""nl_lightning: PyTorch Lightning extensions — transformer blocks, task modules, data, callbacks."""

from nl_lightning.models import (
    OptimizerConfig,
    SchedulerConfig,
    TransformerClassifier,
    TransformerConfig,
    TransformerLM,
    load_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "OptimizerConfig", "SchedulerConfig", "TransformerClassifier", "TransformerConfig", "TransformerLM",
    "__version__", "load_checkpoint",
]
