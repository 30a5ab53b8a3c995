"""Callbacks: thin wrappers, one per file, only what Lightning lacks."""

from nl_lightning.callbacks.text_sample import TextSampleCallback
from nl_lightning.callbacks.export import ExportCallback
from nl_lightning.callbacks.pruning import PruningCallback
from nl_lightning.callbacks.quantization import QuantizationCallback

__all__ = ["TextSampleCallback", "ExportCallback", "PruningCallback", "QuantizationCallback"]
