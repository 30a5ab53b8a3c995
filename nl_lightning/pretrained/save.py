"""``save_pretrained``: one of our networks -> a Hugging Face folder that transformers loads as the
same model (``AutoModelForCausalLM`` / ``AutoModel`` / ``AutoModelForSequenceClassification``).

The architecture written is the one that computes exactly this config (Llama, Mistral, Qwen2 or
GPT-2 for a language model; BERT for a classifier); a model none of them computes is refused
with the fields that prevent it, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nl_lightning.models.transformer import CausalLM, SequenceClassifier
from nl_lightning.nn.pooling import FirstTokenPooler
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.families import export_family
from nl_lightning.pretrained.family import Family, Parts
from nl_lightning.pretrained.folder import write_folder
from nl_lightning.pretrained.rules import export_tensors

__all__ = ["hf_config", "save_pretrained"]


def save_pretrained(
    model: nn.Module, path: str | Path, *, task: str = "classification",
    extra_files: Mapping[str, str | bytes | Path] | None = None,
) -> Path:
    """Write ``model`` (a ``CausalLM`` or a ``SequenceClassifier``) to ``path`` as config.json +
    model.safetensors (+ ``extra_files``, e.g. a tokenizer.json), atomically. ``task`` is a
    classifier's ('classification' or 'regression')."""
    family, config = hf_config(model, task)
    tensors = export_tensors(family.rules(model.config, Parts(pooler=True, head=True)), model.state_dict())
    return write_folder(path, config, tensors, extra_files)


def hf_config(model: nn.Module, task: str = "classification") -> tuple[Family, dict[str, Any]]:
    """The family whose architecture computes ``model``, and the config.json describing it."""
    if isinstance(model, CausalLM):
        family, config = export_family(model.config, "lm", {})
    elif isinstance(model, SequenceClassifier):
        family, config = export_family(model.config, "classifier", _head_keys(model, task))
    else:
        raise PretrainedError(
            f"save_pretrained takes a CausalLM or SequenceClassifier (the .model of TransformerLM / "
            f"TransformerClassifier), got {type(model).__name__}."
        )
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    config.update(dtype=dtype, torch_dtype=dtype)  # 5.x and 4.x names
    return family, config


def _head_keys(model: SequenceClassifier, task: str) -> dict[str, Any]:
    """BertForSequenceClassification reads its head from the pooler: the classifier must pool that way."""
    if not isinstance(model.pool, FirstTokenPooler):
        raise PretrainedError(
            f"save_pretrained of a classifier writes BertForSequenceClassification, whose head reads BERT's pooler; "
            f"this model pools with {type(model.pool).__name__}. Train with pooling='pooler' to export it."
        )
    if model.input_norm.fitted:
        raise PretrainedError("save_pretrained: this classifier normalizes float features; BERT reads token ids only.")
    labels = model.head.out_features
    return {
        "problem_type": "regression" if task == "regression" else "single_label_classification",
        "id2label": {str(i): f"LABEL_{i}" for i in range(labels)},
        "label2id": {f"LABEL_{i}": i for i in range(labels)},
    }
