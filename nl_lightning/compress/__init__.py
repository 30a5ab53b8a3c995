"""Compression cores (no lightning import): pruning, sparsity schedules, quantization, distillation."""

from nl_lightning.compress.distill import distillation_loss, soft_target_loss
from nl_lightning.compress.prune import dense_copy, make_permanent, prunable_parameters, prune_model
from nl_lightning.compress.quantize import QuantizationConfig, module_runner, quantize_model
from nl_lightning.compress.schedule import target_sparsity
from nl_lightning.compress.sparsity import layer_sparsity, model_sparsity, sparsity

__all__ = [
    "QuantizationConfig", "dense_copy", "distillation_loss", "layer_sparsity",
    "make_permanent", "model_sparsity", "module_runner", "prunable_parameters", "prune_model", "quantize_model",
    "soft_target_loss", "sparsity", "target_sparsity",
]
