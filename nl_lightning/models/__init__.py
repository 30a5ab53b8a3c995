"""Models: the config, plain-torch transformers and the task LightningModules."""

from nl_lightning.models.base import TaskModule
from nl_lightning.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from nl_lightning.models.checkpoint_io import AtomicCheckpointIO
from nl_lightning.models.classifier import TransformerClassifier
from nl_lightning.models.config import PRESETS, TransformerConfig
from nl_lightning.models.generate import generate
from nl_lightning.models.lm import TransformerLM
from nl_lightning.models.lora import LoRAConfig, apply_lora, lora_parameter_counts, merge_lora
from nl_lightning.models.lora_checkpoint import base_record, load_lora_state_dict, lora_state_dict
from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler, param_groups
from nl_lightning.models.transformer import CausalLM, SequenceClassifier, Transformer

__all__ = [
    "PRESETS", "AtomicCheckpointIO", "CausalLM", "CheckpointError", "LoRAConfig", "OptimizerConfig", "SchedulerConfig",
    "SequenceClassifier", "TaskModule", "Transformer", "TransformerClassifier", "TransformerConfig", "TransformerLM",
    "apply_lora", "base_record", "build_optimizer", "build_scheduler", "generate", "load_checkpoint",
    "load_lora_state_dict", "lora_parameter_counts", "lora_state_dict", "merge_lora", "param_groups", "read_checkpoint",
]
