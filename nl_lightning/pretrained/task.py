"""What ``TransformerLM`` / ``TransformerClassifier`` call for their ``pretrained`` argument:
the network built from a folder, the config overrides a fine-tune may make, and the record of
the source folder (path + ``path_sha256``) that their checkpoints keep."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nl_lightning._io import path_sha256
from nl_lightning.models.config import TransformerConfig, as_config
from nl_lightning.models.transformer import CausalLM, SequenceClassifier
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.family import Parts
from nl_lightning.pretrained.folder import ModelFolder, folder_tokenizer, open_folder
from nl_lightning.pretrained.load import load_weights

__all__ = ["OVERRIDABLE", "PretrainedSource", "load_classifier", "load_lm", "pretrained_init_args"]

#: Config fields a fine-tune may set differently from the folder: none changes a weight's shape or
#: what the pretrained network computes at inference (``max_seq_len`` only with RoPE).
OVERRIDABLE = ("dropout", "attn_dropout", "drop_path", "attn_backend", "max_seq_len")


@dataclass
class PretrainedSource:
    """The folder a model started from. ``record()`` (path and ``path_sha256``, hashed once, on first
    use) goes into every checkpoint, so a run says exactly which weights it fine-tuned."""

    path: str
    _sha256: str | None = field(default=None, repr=False)

    def record(self) -> dict[str, str]:
        """``{"path": ..., "sha256": ...}`` for a checkpoint (the record LoRA adapters are checked against)."""
        if self._sha256 is None:
            self._sha256 = path_sha256(self.path)
        return {"path": self.path, "sha256": self._sha256}


def load_lm(path: str | Path, config: TransformerConfig | dict | None = None) -> tuple[TransformerConfig, CausalLM, PretrainedSource]:
    """A ``CausalLM`` with the folder's architecture (``config``: the same, with allowed overrides) and weights."""
    folder = _open(path, "lm", "TransformerLM")
    config = _merge(folder, config)
    model = load_weights(folder, lambda: CausalLM(config), config)
    return config, model, PretrainedSource(str(Path(path).resolve()))


def load_classifier(
    path: str | Path, config: TransformerConfig | dict | None, num_classes: int, pooling: str, task: str,
) -> tuple[TransformerConfig, SequenceClassifier, PretrainedSource]:
    """A ``SequenceClassifier`` whose encoder (and pooler / head, when they fit) come from the folder."""
    folder = _open(path, "classifier", "TransformerClassifier")
    config = _merge(folder, config)
    parts = Parts(pooler=pooling == "pooler", head=_head_fits(folder, num_classes, task))
    model = load_weights(folder, lambda: SequenceClassifier(config, num_classes, pooling), config, parts)
    return config, model, PretrainedSource(str(Path(path).resolve()))


def pretrained_init_args(cls: type, path: str | Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``cls.from_pretrained(path, **kwargs)`` as ``cls(**args)``: keyword arguments that are
    ``TransformerConfig`` fields override the folder's config (only ``OVERRIDABLE`` ones), the others
    are ``cls``'s own arguments (``num_classes``, ``optimizer``...)."""
    if "pretrained" not in inspect.signature(cls).parameters:
        raise PretrainedError(f"{cls.__name__} does not start from a model folder (its __init__ has no `pretrained`).")
    names = {f.name for f in fields(TransformerConfig)}
    overrides = {k: v for k, v in kwargs.items() if k in names}
    args = {k: v for k, v in kwargs.items() if k not in names}
    accepted = set(inspect.signature(cls).parameters) - {"config", "pretrained"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise PretrainedError(
            f"{cls.__name__}.from_pretrained got unknown argument(s) {unknown}; it takes TransformerConfig fields "
            f"{list(OVERRIDABLE)} and {sorted(accepted)}."
        )
    folder = open_folder(path)
    args.update(pretrained=str(path), config=replace(folder.config, **overrides) if overrides else None)
    # The folder's tokenizer: handed to models that take one (issue 18's `tokenizer` argument).
    tokenizer = folder_tokenizer(path)
    if tokenizer is not None and "tokenizer" in accepted:
        args.setdefault("tokenizer", tokenizer)
    return args


def _open(path: str | Path, task: str, owner: str) -> ModelFolder:
    folder = open_folder(path)
    if folder.family.task != task:
        reads = "BERT folders (BertModel, BertForSequenceClassification...)" if task == "classifier" else \
            "causal LM folders (Llama, Mistral, Qwen2, GPT-2, LitGPT)"
        raise PretrainedError(
            f"{folder.path} holds a {folder.family.name} model; {owner} reads {reads}. Use "
            f"{'TransformerLM' if task == 'classifier' else 'TransformerClassifier'} for this folder."
        )
    return folder


def _merge(folder: ModelFolder, config: TransformerConfig | dict | None) -> TransformerConfig:
    """The folder's config, or ``config`` if it differs from it only in ``OVERRIDABLE`` fields."""
    if config is None:
        return folder.config
    given = as_config(config, causal=folder.config.causal)
    allowed = OVERRIDABLE if folder.config.position == "rope" else tuple(k for k in OVERRIDABLE if k != "max_seq_len")
    differ = {f.name: (getattr(folder.config, f.name), getattr(given, f.name)) for f in fields(TransformerConfig)
              if f.name not in allowed and getattr(folder.config, f.name) != getattr(given, f.name)}
    if differ:
        listed = ", ".join(f"{k}: folder {a!r} vs config {b!r}" for k, (a, b) in sorted(differ.items()))
        raise PretrainedError(
            f"config differs from the pretrained folder {folder.path} in {listed}. Only {list(allowed)} may differ: "
            "leave config unset (null) to take the folder's architecture, or override only those fields."
        )
    return given


def _head_fits(folder: ModelFolder, num_classes: int, task: str) -> bool:
    """Whether the folder's classification head (if any) is this task's: same size and kind."""
    with folder.tensors() as files:
        if "classifier.weight" not in files.names():
            return False
        rows = files.shape("classifier.weight")[0]
    kind = folder.fields.get("problem_type") or ("regression" if rows == 1 else "single_label_classification")
    wanted = "regression" if task == "regression" else "single_label_classification"
    return rows == num_classes and kind == wanted
