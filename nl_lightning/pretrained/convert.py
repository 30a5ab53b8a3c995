"""Conversions behind ``nl-lightning convert``: a model folder -> an nl_lightning checkpoint (which
``generate``, ``export``, ``serve`` and ``TaskModule.load`` read), and a checkpoint -> a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nl_lightning._io import save_torch
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.folder import open_folder
from nl_lightning.pretrained.litgpt import LITGPT_FILES
from nl_lightning.pretrained.weights import WEIGHT_FILES

__all__ = ["checkpoint_to_folder", "folder_to_checkpoint", "is_model_folder"]


def is_model_folder(path: str | Path) -> bool:
    """A Hugging Face or LitGPT folder (its config or its weights are there), not a run folder."""
    path = Path(path)
    markers = ("config.json", *LITGPT_FILES, *WEIGHT_FILES)
    return path.is_dir() and any((path / name).is_file() for name in markers)


def folder_to_checkpoint(
    folder: str | Path, output: str | Path, num_classes: int | None = None, task: str | None = None,
    pooling: str = "pooler",
) -> Path:
    """A ``TransformerLM`` (causal LM folders) or ``TransformerClassifier`` (BERT folders) built from
    ``folder``, saved to ``output`` as a checkpoint (atomically). A classifier's ``num_classes`` and
    ``task`` default to the folder's classification head."""
    from nl_lightning.models import TransformerClassifier, TransformerLM

    opened = open_folder(folder)
    if opened.family.task == "lm":
        module = TransformerLM.from_pretrained(folder)
    else:
        module = TransformerClassifier.from_pretrained(folder, **_head_args(opened, num_classes, task), pooling=pooling)
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)  # plain hyperparameters, class path, source folder + hash
    return save_torch(checkpoint, output)


def _head_args(folder: Any, num_classes: int | None, task: str | None) -> dict[str, Any]:
    with folder.tensors() as files:
        rows = files.shape("classifier.weight")[0] if "classifier.weight" in files.names() else None
    if num_classes is None and rows is None:
        raise PretrainedError(
            f"{folder.path} holds a BERT encoder without a classification head: pass --num_classes N (and --task "
            "regression for N regression targets)."
        )
    kind = folder.fields.get("problem_type") or ("regression" if rows == 1 else "classification")
    task = task or ("regression" if kind == "regression" else "classification")
    return {"num_classes": num_classes or rows, "task": task}


def checkpoint_to_folder(checkpoint: str | Path, output: str | Path) -> Path:
    """The model of an nl_lightning checkpoint (or a run folder's newest) as a Hugging Face folder."""
    from nl_lightning.models.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint).save_pretrained(output)
