"""Pretrained models in and out: Hugging Face and LitGPT model folders <-> nl_lightning networks.

``TransformerLM.from_pretrained(folder)`` / ``TransformerClassifier.from_pretrained(folder, ...)``
(or ``pretrained: folder`` in a fit config) read a local folder; ``model.save_pretrained(folder)``
writes one transformers loads back. The architecture always comes from the folder's config
(``model_type`` / ``architectures``), never from a list of model names; whatever we cannot compute
exactly is refused with the field, its value and what is supported. Nothing is downloaded.
"""

from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.families import MODEL_TYPES
from nl_lightning.pretrained.folder import ModelFolder, folder_tokenizer, open_folder, write_folder
from nl_lightning.pretrained.load import load_weights
from nl_lightning.pretrained.save import hf_config, save_pretrained
from nl_lightning.pretrained.task import (
    OVERRIDABLE,
    PretrainedSource,
    load_classifier,
    load_lm,
    pretrained_init_args,
)

__all__ = [
    "MODEL_TYPES", "OVERRIDABLE", "ModelFolder", "PretrainedError", "PretrainedSource", "folder_tokenizer",
    "hf_config", "load_classifier", "load_lm", "load_weights", "open_folder", "pretrained_init_args",
    "save_pretrained", "write_folder",
]
