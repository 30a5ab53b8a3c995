"""``InputSpec``: what an exported model takes (name, dtype, dynamic axes), and sample inputs for it.

nl_lightning models take one tensor: token ids ``idx`` (B, T) int64 for ``CausalLM``, or ``x``
as ids (B, T) or features (B, T, F) float32 for ``SequenceClassifier``. The batch and sequence
axes are dynamic; the sequence axis is bounded where positions are (rope / learned tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError, DataError, WrongTypeError


@dataclass
class InputSpec:
    """One model input. ``feature_dim`` None means integer token ids in ``[0, vocab_size)``."""

    name: str = "x"
    vocab_size: int | None = 256
    feature_dim: int | None = None
    max_seq_len: int | None = None
    """Largest sequence the model accepts (None = unbounded)."""
    output_name: str = "logits"

    def __post_init__(self) -> None:
        if (self.vocab_size is None) == (self.feature_dim is None):
            raise ConfigError(
                f"InputSpec needs exactly one of vocab_size (token ids) or feature_dim (float features); "
                f"got vocab_size={self.vocab_size}, feature_dim={self.feature_dim}."
            )

    @property
    def dtype(self) -> torch.dtype:
        return torch.int64 if self.feature_dim is None else torch.float32

    def example(self, batch_size: int, seq_len: int, seed: int = 0) -> Tensor:
        """A deterministic random input of shape (batch_size, seq_len[, feature_dim])."""
        if self.max_seq_len is not None and seq_len > self.max_seq_len:
            raise ConfigError(
                f"seq_len={seq_len} exceeds what the model accepts (max {self.max_seq_len}); use a shorter one."
            )
        g = torch.Generator().manual_seed(seed)
        if self.feature_dim is None:
            return torch.randint(0, self.vocab_size, (batch_size, seq_len), generator=g)
        return torch.randn(batch_size, seq_len, self.feature_dim, generator=g)

    def clamp_seq(self, seq_len: int) -> int:
        return seq_len if self.max_seq_len is None else min(seq_len, self.max_seq_len)

    def to_dict(self) -> dict[str, Any]:
        shape = ["batch", "seq"] + ([] if self.feature_dim is None else [self.feature_dim])
        return {**asdict(self), "dtype": str(self.dtype).removeprefix("torch."), "shape": shape}


def network(model: nn.Module) -> nn.Module:
    """The plain network of an nl_lightning task module (its ``.model``), else ``model`` itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def input_spec(model: nn.Module) -> InputSpec:
    """Read the spec off an nl_lightning ``CausalLM`` / ``SequenceClassifier`` (or a module holding one)."""
    model = network(model)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "max_seq_len"):
        raise WrongTypeError(
            f"Cannot infer the input of {type(model).__name__}: it has no TransformerConfig. "
            "Pass an InputSpec(name=..., vocab_size=... or feature_dim=..., max_seq_len=...) explicitly."
        )
    is_lm = hasattr(model, "lm_head")
    # A [CLS] token is prepended inside the model, so one position fewer is left for the input.
    reserved = 1 if getattr(model, "cls_token", None) is not None else 0
    bounded = config.position in ("rope", "learned")
    return InputSpec(
        name="idx" if is_lm else "x",
        vocab_size=config.vocab_size if config.input_dim is None else None,
        feature_dim=config.input_dim,
        max_seq_len=config.max_seq_len - reserved if bounded else None,
    )


def batch_input(batch: Any) -> Tensor:
    """The model input of a DataLoader batch: ``x`` of ``(x, y)``, ``batch["x"]`` / ``["idx"]``, or a tensor."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, dict):
        for key in ("x", "idx", "input_ids"):
            if key in batch:
                return batch[key]
        raise DataError(f"Cannot find the model input in a batch with keys {sorted(batch)}; expected 'x' or 'idx'.")
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise DataError(
        f"Cannot find the model input in a batch of type {type(batch).__name__}; expected (x, y) or a dict."
    )


def batch_target(batch: Any) -> Tensor:
    """The target of a ``(x, y)`` / dict batch."""
    if isinstance(batch, dict):
        for key in ("y", "targets"):
            if key in batch:
                return batch[key]
        raise DataError(f"Cannot find the target in a batch with keys {sorted(batch)}; expected 'y' or 'targets'.")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise DataError(f"Cannot find the target in a batch of type {type(batch).__name__}; expected (x, y).")


def dynamic_shapes(spec: InputSpec) -> tuple[dict[int, Any], ...]:
    """``torch.export`` dynamic shapes: batch and sequence axes of the single input."""
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=spec.max_seq_len) if spec.max_seq_len else torch.export.Dim("seq", min=1)
    return ({0: batch, 1: seq},)


def export_example(spec: InputSpec) -> Tensor:
    """The tracing example: batch 2 and a sequence > 1, so neither axis is specialized to a constant."""
    return spec.example(2, spec.clamp_seq(8))
