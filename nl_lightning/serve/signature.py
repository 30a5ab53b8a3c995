"""``ModelSignature``: what a served model takes and returns, the contract every version must keep.

The request schema is built from it once, at start-up; a hot reload is refused when the new
version's signature differs (another input size or class count would make the schema lie).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from nl_lightning.errors import ConfigError, WrongTypeError

TaskName = Literal["lm", "classification", "regression"]


@dataclass(frozen=True)
class ModelSignature:
    """``vocab_size`` is set for token-id inputs, ``input_dim`` for float features (exactly one)."""

    task: TaskName
    vocab_size: int | None
    input_dim: int | None
    max_seq_len: int | None
    """Longest input sequence (for the LM: the context window; longer prompts slide it); None for
    an export whose positions are unbounded (then ``limits.max_seq_len`` bounds requests)."""
    num_outputs: int
    """Classes (classification), targets (regression) or vocabulary (LM)."""

    def __post_init__(self) -> None:
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ConfigError(
                f"A model takes token ids (vocab_size) or features (input_dim), not both or neither; got "
                f"vocab_size={self.vocab_size}, input_dim={self.input_dim}."
            )

    @property
    def inputs(self) -> Literal["tokens", "features"]:
        return "tokens" if self.vocab_size is not None else "features"

    @property
    def tabular(self) -> bool:
        """Rows of scalar features (B, F), read as F tokens of size 1 (``input_dim=1``)."""
        return self.input_dim == 1

    def mismatch(self, other: "ModelSignature") -> str | None:
        """None if ``other`` can replace this model behind the same schema, else what differs."""
        diff = {k: (v, getattr(other, k)) for k, v in asdict(self).items() if getattr(other, k) != v}
        if not diff:
            return None
        return ", ".join(f"{k}: serving {a!r}, new {b!r}" for k, (a, b) in diff.items())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inputs": self.inputs}


def signature_of(model: nn.Module) -> ModelSignature:
    """Read the signature off an nl_lightning ``TransformerLM`` / ``TransformerClassifier``."""
    net = getattr(model, "model", model)
    config = getattr(net, "config", None)
    if config is None or not hasattr(config, "max_seq_len"):
        raise WrongTypeError(
            f"{type(model).__name__} is not an nl_lightning model (no TransformerConfig); serve a "
            "TransformerLM or TransformerClassifier checkpoint, or its export folder."
        )
    vocab = config.vocab_size if config.input_dim is None else None
    if hasattr(net, "lm_head"):
        return ModelSignature("lm", vocab, None, config.max_seq_len, config.vocab_size)
    task = getattr(model, "task", "classification")
    reserved = 1 if getattr(net, "cls_token", None) is not None else 0  # [CLS] takes one position
    return ModelSignature(task, vocab, config.input_dim, config.max_seq_len - reserved, net.head.out_features)


def signature_from_manifest(manifest: dict[str, Any], num_outputs: int, task: str = "auto") -> ModelSignature:
    """The signature of an export: the manifest's input spec, the graph's output size and the task
    (recorded by the export, else ``task``, else the source checkpoint's if it is still on disk; an
    ``idx`` input is always a causal LM)."""
    spec = manifest.get("input") or {}
    recorded = manifest.get("task")
    if spec.get("name") == "idx":
        recorded = "lm"
    elif recorded is None and task == "auto":
        recorded = _task_of_source(manifest.get("source"))
    resolved = recorded if task == "auto" else task
    if resolved not in ("lm", "classification", "regression"):
        raise ConfigError(
            "The export manifest does not record the model's task; set `task: classification` or "
            "`task: regression` in the serve config (or re-export with a newer nl_lightning)."
        )
    if recorded and task != "auto" and task != recorded:
        raise ConfigError(f"task={task!r} contradicts the export manifest, which records task={recorded!r}.")
    max_len = spec.get("max_seq_len")
    return ModelSignature(resolved, spec.get("vocab_size"), spec.get("feature_dim"), max_len, num_outputs)


def _task_of_source(source: str | None) -> str | None:
    """The task recorded in the checkpoint an export came from, if that file is still there."""
    if not source or not Path(source).is_file():
        return None
    from nl_lightning.models.checkpoint import CheckpointError, read_checkpoint

    try:
        hparams = read_checkpoint(source).get("hyper_parameters") or {}
    except CheckpointError:
        return None
    return hparams.get("task")
