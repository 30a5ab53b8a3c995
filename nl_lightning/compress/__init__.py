"""Compression cores (no lightning import): pruning, sparsity schedules, quantization, distillation."""

from nl_lightning.compress.distill import distillation_loss, soft_target_loss
from nl_lightning.compress.importance import TaylorScores, magnitude_scores, taylor_scores
from nl_lightning.compress.prune import dense_copy, make_permanent, prunable_parameters, prune_model
from nl_lightning.compress.quantize import QuantizationConfig, module_runner, quantize_model
from nl_lightning.compress.schedule import target_sparsity
from nl_lightning.compress.sparsity import layer_sparsity, model_sparsity, sparsity
from nl_lightning.compress.structured import match_widths, prune_structured

__all__ = [
    "QuantizationConfig", "TaylorScores", "dense_copy", "distillation_loss", "layer_sparsity", "magnitude_scores",
    "make_permanent", "match_widths", "model_sparsity", "module_runner", "prunable_parameters", "prune_model",
    "prune_structured", "quantize_model", "soft_target_loss", "sparsity", "target_sparsity", "taylor_scores",
]
