"""Which ``Family`` a folder is (from ``config.json``'s ``model_type`` and ``architectures``, never
from a list of model names), and which one can hold a model we export."""

from __future__ import annotations

from typing import Any

from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.bert import BERT
from nl_lightning.pretrained.errors import PretrainedError, refuse
from nl_lightning.pretrained.family import Family
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.gpt2 import GPT2
from nl_lightning.pretrained.llama import LLAMA

__all__ = ["MODEL_TYPES", "export_family", "family_of"]

#: config.json ``model_type`` -> the family that reads it.
MODEL_TYPES: dict[str, Family] = {"llama": LLAMA, "mistral": LLAMA, "qwen2": LLAMA, "gpt2": GPT2, "bert": BERT}


def family_of(cfg: ConfigFields) -> Family:
    """The family of a config.json; an unmapped ``model_type`` or ``architectures`` is refused."""
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        raise refuse("model_type", model_type, f"supported model types are {sorted(MODEL_TYPES)}", cfg.where)
    family = MODEL_TYPES[model_type]
    architectures = cfg.get("architectures", [])
    if not isinstance(architectures, list) or len(architectures) > 1:
        raise refuse("architectures", architectures, "one architecture per folder is supported", cfg.where)
    if architectures and architectures[0] not in family.architectures:
        raise refuse("architectures", architectures, f"for model_type {model_type!r} nl_lightning reads "
                     f"{list(family.architectures)}", cfg.where)
    return family


def export_family(config: TransformerConfig, task: str, extra: dict[str, Any]) -> tuple[Family, dict[str, Any]]:
    """The family whose architecture computes exactly ``config`` for ``task``, and its config.json."""
    reasons = []
    for family in dict.fromkeys(MODEL_TYPES.values()):
        if family.task != task or family.write_config is None:
            continue
        try:
            return family, family.write_config(config, extra)
        except PretrainedError as err:
            reasons.append(f"{family.name}: {err}")
    raise PretrainedError(
        f"No transformers architecture computes this {task} model, so save_pretrained would write a different "
        f"model; nothing was written. {' '.join(reasons)}"
    )
