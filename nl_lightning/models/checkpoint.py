"""Safe checkpoint loading: ``weights_only=True`` always, and an error that says what is wrong."""

from __future__ import annotations

import importlib
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from nl_lightning.models.base import TaskModule


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, untrusted or not an nl_lightning model."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors for missing, corrupt and unsafe files."""
    path = Path(path)
    if path.is_dir() and (path / ".metadata").is_file():
        raise CheckpointError(
            f"{path} is a sharded torch.distributed.checkpoint directory (ModelParallelStrategy / FSDP2). "
            "Its metadata is pickled, so it is not read here; from trusted code, consolidate it with "
            "`python -m torch.distributed.checkpoint.format_utils dcp_to_torch <dir> <file>` and "
            "add the entries of <dir>/meta.pt, or re-save with a single-device strategy."
        )
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint not found: {path}. Pass the .ckpt written by `nl-lightning fit` "
            "(by default under <default_root_dir>/checkpoints/)."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Refusing to load {path}: it holds objects other than tensors and plain containers, and "
            "unpickling them could run arbitrary code. Re-save it from trusted code with "
            f"nl_lightning, or inspect it yourself. Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}). Use another checkpoint, e.g. last.ckpt."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no 'state_dict'); it may be a bare state dict or "
            "another tool's file. Load it into a model with model.load_state_dict instead."
        )
    return checkpoint


def load_checkpoint(
    path: str | Path, expected: "type[TaskModule] | None" = None, map_location: str | torch.device = "cpu",
) -> "TaskModule":
    """Rebuild an nl_lightning LightningModule from its checkpoint's hyperparameters and weights.

    The class is taken from ``expected`` or from the checkpoint's record, which is only trusted
    when it names a class inside ``nl_lightning`` (importing arbitrary modules runs their code).
    """
    from nl_lightning.models.base import TaskModule

    checkpoint = read_checkpoint(path, map_location)
    record = checkpoint.get("nl_lightning") or {}
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None) or record.get("class_path")
    hparams.pop("_instantiator", None)
    cls = expected or _resolve(class_path, path)
    if not (isinstance(cls, type) and issubclass(cls, TaskModule)):
        raise CheckpointError(f"{path}: {class_path!r} is not an nl_lightning model class.")
    if expected is not None and class_path and not class_path.endswith("." + expected.__qualname__):
        raise CheckpointError(
            f"{path} holds a {class_path}, not a {expected.__qualname__}; load it with that class "
            "or with nl_lightning.models.load_checkpoint(path)."
        )
    try:
        model = cls(**hparams)
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except (TypeError, RuntimeError, ValueError) as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])  # load_state_dict: mismatch on line 2
        raise CheckpointError(
            f"{path} does not match {cls.__qualname__}: {detail.rstrip('.')}. It was probably "
            "written by another model or another version of nl_lightning."
        ) from err
    return model.eval()


def _resolve(class_path: str | None, path: Path) -> type:
    if not class_path or not class_path.startswith("nl_lightning."):
        raise CheckpointError(
            f"{path} does not record an nl_lightning model class (found {class_path!r}). Pass the "
            "class explicitly: TransformerLM.load(path) or load_checkpoint(path, expected=MyModel)."
        )
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{path}: class {class_path} no longer exists in nl_lightning.") from err
