"""Callbacks: thin wrappers, one per file, only what Lightning lacks."""

from nl_lightning.callbacks.text_sample import TextSampleCallback
from nl_lightning.callbacks.export import ExportCallback
from nl_lightning.callbacks.pruning import PruningCallback
from nl_lightning.callbacks.structured_pruning import StructuredPruningCallback
from nl_lightning.callbacks.quantization import QuantizationCallback
from nl_lightning.callbacks.grad_stats import GradientMonitor, NonFiniteGradientError
from nl_lightning.callbacks.histograms import HistogramMonitor
from nl_lightning.callbacks.confusion_matrix import ConfusionMatrixMonitor
from nl_lightning.callbacks.throughput import TaskThroughputMonitor
from nl_lightning.callbacks.run_metadata import RunMetadata
from nl_lightning.callbacks.curves import CurvesCallback
from nl_lightning.callbacks.model_registry import ModelRegistryCallback
from nl_lightning.predict.writer import PredictionWriter  # batch inference's writer, re-exported
from nl_lightning.callbacks.lr_finder import LRFinder
from nl_lightning.callbacks.last_checkpoint import LastCheckpoint

__all__ = [
    "TextSampleCallback", "ExportCallback", "PruningCallback", "QuantizationCallback",
    "GradientMonitor", "NonFiniteGradientError", "HistogramMonitor", "ConfusionMatrixMonitor",
    "TaskThroughputMonitor", "RunMetadata", "CurvesCallback", "ModelRegistryCallback",
    "PredictionWriter", "LRFinder", "LastCheckpoint", "StructuredPruningCallback",
]
