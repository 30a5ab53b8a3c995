"""Models: the config, plain-torch transformers and the task LightningModules."""

from nl_lightning.models.base import TaskModule
from nl_lightning.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from nl_lightning.models.checkpoint_io import AtomicCheckpointIO
from nl_lightning.models.classifier import TransformerClassifier
from nl_lightning.models.config import PRESETS, TransformerConfig
from nl_lightning.models.generate import generate
from nl_lightning.models.lm import TransformerLM
from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler, param_groups
from nl_lightning.models.transformer import CausalLM, SequenceClassifier, Transformer

__all__ = [
    "PRESETS", "AtomicCheckpointIO", "CausalLM", "CheckpointError", "OptimizerConfig", "SchedulerConfig",
    "SequenceClassifier", "TaskModule", "Transformer", "TransformerClassifier", "TransformerConfig", "TransformerLM",
    "build_optimizer", "build_scheduler", "generate", "load_checkpoint", "param_groups", "read_checkpoint",
]
