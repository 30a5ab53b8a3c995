"""``ModelSignature``: what a model takes and returns; the one description of a model's inputs that
export, serving, batch inference and throughput measurement all read.

It is read off an nl_lightning model (``signature_of``) or off an export's manifest
(``signature_from_manifest``), and both readings agree: ``max_seq_len`` is the model's context
(``TransformerConfig.max_seq_len``, one position fewer when a [CLS] token is prepended) whatever its
positions are (``learned``, ``rope``, ``alibi`` or ``none``), so a model served from its checkpoint
and from its ONNX export has one signature and a server can hot-swap between them. The outputs are
the task's (``task_prediction`` / ``ModelSignature.outputs``), the same for ``predict_step``, the
server and batch inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nl_lightning.errors import ConfigError, WrongTypeError

__all__ = ["ModelSignature", "TaskName", "signature_from_manifest", "signature_of", "task_prediction"]

#: What a model computes: next-token logits, class logits or regression values.
TaskName = Literal["lm", "classification", "regression"]
TASKS: tuple[str, ...] = ("lm", "classification", "regression")
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class ModelSignature:
    """``vocab_size`` is set for token-id inputs, ``input_dim`` for float features (exactly one)."""

    task: TaskName | None
    """None for a bare network that cannot tell classification from regression (nothing is claimed)."""
    vocab_size: int | None
    input_dim: int | None
    max_seq_len: int | None
    """Longest input sequence (for the LM: the context window; longer prompts slide it); None only
    for an export that did not record it (then ``limits.max_seq_len`` bounds requests)."""
    num_outputs: int | None
    """Classes (classification), targets (regression) or vocabulary (LM)."""

    def __post_init__(self) -> None:
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ConfigError(
                f"A model takes token ids (vocab_size) or features (input_dim), not both or neither; got "
                f"vocab_size={self.vocab_size}, input_dim={self.input_dim}."
            )
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not a model task; choose one of {TASKS}.")

    @property
    def name(self) -> str:
        """The input's name in exported graphs: ``idx`` for a causal LM, ``x`` otherwise."""
        return "idx" if self.task == "lm" else "x"

    @property
    def output_name(self) -> str:
        return OUTPUT_NAME

    @property
    def inputs(self) -> Literal["tokens", "features"]:
        return "tokens" if self.vocab_size is not None else "features"

    @property
    def tabular(self) -> bool:
        """Rows of scalar features (B, F), read as F tokens of size 1 (``input_dim=1``)."""
        return self.input_dim == 1

    @property
    def dtype(self) -> torch.dtype:
        return torch.int64 if self.input_dim is None else torch.float32

    def example(self, batch_size: int, seq_len: int, seed: int = 0) -> Tensor:
        """A deterministic random input of shape (batch_size, seq_len[, input_dim])."""
        if self.max_seq_len is not None and seq_len > self.max_seq_len:
            raise ConfigError(
                f"seq_len={seq_len} exceeds what the model accepts (max {self.max_seq_len}); use a shorter one."
            )
        g = torch.Generator().manual_seed(seed)
        if self.input_dim is None:
            return torch.randint(0, self.vocab_size, (batch_size, seq_len), generator=g)
        return torch.randn(batch_size, seq_len, self.input_dim, generator=g)

    def input_problems(self, x: Tensor, max_seq_len: int | None = None) -> dict[int, str]:
        """Why rows of a batch ``x`` cannot be answered, by row position (empty when all can): the
        rules a server request is held to (its 422s), so batch inference refuses what the server
        refuses. ``max_seq_len`` overrides the model's (a server's ``limits.max_seq_len``)."""
        limit = max_seq_len or self.max_seq_len
        if self.inputs == "tokens":
            shape_ok, what = x.dim() == 2 and not x.is_floating_point(), "(batch, seq) integer token ids"
        elif self.tabular:
            shape_ok, what = x.dim() == 2 or (x.dim() == 3 and x.shape[-1] == 1), "(batch, features) rows"
        else:
            shape_ok, what = x.dim() == 3 and x.shape[-1] == self.input_dim, f"(batch, seq, {self.input_dim}) features"
        if not shape_ok:
            return dict.fromkeys(range(len(x)), f"input shape {tuple(x.shape[1:])} (dtype {x.dtype}); the model takes {what}")
        if limit is not None and x.shape[1] > limit:
            return dict.fromkeys(range(len(x)), f"{x.shape[1]} steps; the model takes at most max_seq_len={limit}")
        if self.inputs == "tokens":
            bad = ((x < 0) | (x >= self.vocab_size)).flatten(1).any(1)
            reason = f"token ids outside [0, {self.vocab_size})"
        else:
            bad = ~torch.isfinite(x.float()).flatten(1).all(1)
            reason = "NaN or Inf features"
        return {int(i): reason for i in torch.nonzero(bad).flatten().tolist()}

    def clamp_seq(self, seq_len: int) -> int:
        return seq_len if self.max_seq_len is None else min(seq_len, self.max_seq_len)

    def outputs(self, logits: Tensor) -> dict[str, Tensor]:
        """The task's named answer for a batch of raw outputs (the server's and batch inference's):
        ``probabilities`` + ``label``, ``values``, or next-token ``log_probs``."""
        prediction = task_prediction(logits, self.task or "classification")
        if self.task == "regression":
            return {"values": prediction}
        if self.task == "lm":
            return {"log_probs": prediction}
        return {"probabilities": prediction, "label": prediction.argmax(-1)}

    def mismatch(self, other: "ModelSignature") -> str | None:
        """None if ``other`` can replace this model behind the same request schema, else what differs."""
        diff = {k: (v, getattr(other, k)) for k, v in asdict(self).items() if getattr(other, k) != v}
        if not diff:
            return None
        return ", ".join(f"{k}: serving {a!r}, new {b!r}" for k, (a, b) in diff.items())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inputs": self.inputs}

    def manifest_input(self) -> dict[str, Any]:
        """The ``input`` entry of an export manifest (what ``signature_from_manifest`` reads back)."""
        shape = ["batch", "seq"] + ([] if self.input_dim is None else [self.input_dim])
        return {"name": self.name, "vocab_size": self.vocab_size, "feature_dim": self.input_dim,
                "max_seq_len": self.max_seq_len, "output_name": OUTPUT_NAME,
                "dtype": str(self.dtype).removeprefix("torch."), "shape": shape}

    def manifest_task(self) -> dict[str, Any]:
        """``{"task", "num_outputs"}`` for the manifest, so a server needs no checkpoint; empty when unknown."""
        return {} if self.task is None else {"task": self.task, "num_outputs": self.num_outputs}


def task_prediction(logits: Tensor, task: str) -> Tensor:
    """What a task predicts from its raw outputs: class probabilities (B, C), regression values
    (B, K), or the LM's next-token log-probabilities at the last position (B, V). The one
    definition: ``predict_step``, the server and ``Predictor`` all call it."""
    out = logits.float()
    if task == "classification":
        return out.softmax(-1)
    if task == "regression":
        return out
    return out[:, -1].log_softmax(-1)


def network(model: nn.Module) -> nn.Module:
    """The plain network of an nl_lightning task module (its ``.model``), else ``model`` itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def signature_of(model: nn.Module, default_task: str | None = None) -> ModelSignature:
    """Read the signature off an nl_lightning task module or network (``CausalLM`` /
    ``SequenceClassifier``); ``default_task`` where the module does not say (a bare network)."""
    net = network(model)
    config = getattr(net, "config", None)
    if config is None or not hasattr(config, "max_seq_len"):
        raise WrongTypeError(
            f"{type(model).__name__} is not an nl_lightning model (no TransformerConfig). Pass a TransformerLM / "
            "TransformerClassifier (or its network), or describe the model with a ModelSignature(task=..., "
            "vocab_size=... or input_dim=..., max_seq_len=..., num_outputs=...) explicitly."
        )
    vocab = config.vocab_size if config.input_dim is None else None
    head = getattr(net, "lm_head", None)
    if isinstance(head, nn.Linear):
        return ModelSignature("lm", vocab, None, config.max_seq_len, head.out_features)
    reserved = 1 if getattr(net, "cls_token", None) is not None else 0  # [CLS] takes one position
    head = getattr(net, "head", None)
    outputs = head.out_features if isinstance(head, nn.Linear) else None
    return ModelSignature(getattr(model, "task", None) or default_task, vocab, config.input_dim,
                          config.max_seq_len - reserved, outputs)


def signature_from_manifest(manifest: dict[str, Any], num_outputs: int | None = None, task: str = "auto") -> ModelSignature:
    """The signature of an export: the manifest's input entry, its task and output size (recorded by
    the export, else ``task`` / ``num_outputs`` (the graph's), else the source checkpoint's task if
    the file is still on disk; an ``idx`` input is always a causal LM)."""
    spec = manifest.get("input") or {}
    recorded = manifest.get("task")
    if spec.get("name") == "idx":
        recorded = "lm"
    elif recorded is None and task == "auto":
        recorded = _task_of_source(manifest.get("source"))
    resolved = recorded if task == "auto" else task
    if resolved not in TASKS:
        raise ConfigError(
            "The export manifest does not record the model's task; set `task: classification` or "
            "`task: regression` in the serve config (or re-export with a newer nl_lightning)."
        )
    if recorded and task != "auto" and task != recorded:
        raise ConfigError(f"task={task!r} contradicts the export manifest, which records task={recorded!r}.")
    outputs = num_outputs if num_outputs is not None else manifest.get("num_outputs")
    return ModelSignature(resolved, spec.get("vocab_size"), spec.get("feature_dim"), spec.get("max_seq_len"), outputs)


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
