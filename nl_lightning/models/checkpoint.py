"""Safe checkpoint loading: ``weights_only=True`` always, an allow-list for the classes a file
names, and an error that says exactly what is wrong with the file and what to do."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from nl_lightning.errors import CheckpointError, NLUserError
from nl_lightning.models.runs import find_checkpoint
from nl_lightning.models.trust import UntrustedClassError, bind_arguments, resolve_class

if TYPE_CHECKING:
    import lightning as L

__all__ = ["CONSOLIDATE", "CheckpointError", "load_checkpoint", "read_checkpoint"]

#: The command that turns a sharded (FSDP2) checkpoint folder ``{dir}`` into one file.
CONSOLIDATE = "nl-lightning consolidate {dir} --output {dir}.consolidated.ckpt"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", lightning: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint file, after checking what the path is.

    ``lightning=True`` also requires what ``Trainer.fit(ckpt_path=...)`` needs to resume.
    """
    path = Path(path)
    _check_path(path)
    checkpoint = _load(path, map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no 'state_dict'); it may be a bare state dict or "
            "another tool's file. Load it into a model with model.load_state_dict instead."
        )
    if lightning and "pytorch-lightning_version" not in checkpoint:
        raise CheckpointError(
            f"{path} has weights but no Lightning training state ('pytorch-lightning_version' is missing): it "
            "was not written by Trainer.save_checkpoint, so training cannot resume from it. Load the weights "
            "with load_checkpoint(path) and start a new fit instead."
        )
    return checkpoint


def _check_path(path: Path) -> None:
    if path.is_dir():
        if (path / ".metadata").is_file():
            raise CheckpointError(
                f"{path} is a sharded torch.distributed.checkpoint folder (written by ModelParallelStrategy / FSDP2). "
                "Resume it with the same strategy, or consolidate it once into a single file: "
                + CONSOLIDATE.format(dir=path)
            )
        try:
            hint = f"; the newest checkpoint in it is {find_checkpoint(path)}"
        except CheckpointError:
            hint = " and holds no checkpoint"
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}. Pass a .ckpt file.")
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint not found: {path}. Pass the .ckpt written by `nl-lightning fit` (under "
            "runs/<name>/version_<N>/checkpoints/), or the run folder runs/<name> for its newest last.ckpt."
        )
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): its save was interrupted or never happened. Use another checkpoint, "
            "e.g. last.ckpt of an earlier run."
        )
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except PermissionError:
        raise CheckpointError(
            f"{path} cannot be read: permission denied. Give your user read access (chmod u+r) or copy the file."
        ) from None
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: it is neither a zip archive (torch.save) nor a legacy pickle "
            f"(first bytes {head!r}). It may be another kind of file or overwritten; use the .ckpt from fit."
        )


def _load(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.findall(r"GLOBAL ([\w.]+)", str(err))
        if zipfile.is_zipfile(path) and found:
            raise CheckpointError(
                f"Refusing to load {path}: it holds a pickled Python object ({found[0]}), not only tensors and "
                "plain values, and unpickling it could run code from the file. Re-save the checkpoint from "
                "code you trust with tensors and plain values only."
            ) from None
        raise CheckpointError(f"{path} is corrupt: its pickled data cannot be read. Use another checkpoint.") from None
    except PermissionError:
        raise CheckpointError(
            f"{path} cannot be read: permission denied. Give your user read access (chmod u+r) or copy the file."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, ValueError) as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(
            f"{path} is truncated or corrupt and cannot be read ({type(err).__name__}: {detail[:160]}). "
            "Use another checkpoint, e.g. last.ckpt of an earlier run."
        ) from None


def load_checkpoint(
    path: str | Path, expected: "type[L.LightningModule] | None" = None, map_location: str | torch.device = "cpu",
    merge_lora: bool = False, trust: Sequence[str] = (),
) -> "L.LightningModule":
    """Rebuild an nl_lightning LightningModule from its checkpoint's hyperparameters and weights.

    ``path`` is a ``.ckpt`` file or a run folder (``runs/char_lm``: its newest ``last.ckpt``).
    ``merge_lora=True`` folds LoRA adapters into the weights (for export and serving; see
    ``TaskModule.merge_lora``); otherwise a LoRA model comes back as it trained.

    The class the file names must be on the allow-list (``nl_lightning.models.trust``), be
    ``expected`` itself, a subclass of ``expected`` that your code has imported, or listed in
    ``trust`` (class paths you vouch for: the ``trust:`` setting of the commands); its stored
    arguments are checked against the class's signature before it is called.
    """
    from lightning import LightningModule

    path = find_checkpoint(path)  # a run folder (runs/char_lm) means its newest last.ckpt
    checkpoint = read_checkpoint(path, map_location)
    record = checkpoint.get("nl_lightning") or {}
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None) or record.get("class_path")
    hparams.pop("_instantiator", None)
    hparams.update(record.get("arguments") or {})  # what makes the file self-contained (a tokenizer's JSON)
    if class_path is None and expected is None:
        raise CheckpointError(
            f"{path} does not record which model class wrote it. Pass the class: TransformerLM.load(path) or "
            "load_checkpoint(path, expected=MyModel)."
        )
    try:
        cls = expected if class_path is None else resolve_class(class_path, LightningModule, "model", path, expected, trust)
    except UntrustedClassError as err:
        raise CheckpointError(str(err)) from None
    if expected is not None and not issubclass(cls, expected):
        raise CheckpointError(
            f"{path} holds a {class_path}, not a {expected.__qualname__}; load it with "
            f"{cls.__qualname__}.load(path) or nl_lightning.load_checkpoint(path)."
        )
    try:
        model = cls(**bind_arguments(cls, hparams, path))
        model.on_load_checkpoint(checkpoint)  # as Lightning's load_from_checkpoint: adapter-only files complete here
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except UntrustedClassError as err:
        raise CheckpointError(str(err)) from None
    except NLUserError:
        raise  # says what is wrong and the fix already (a tokenizer, adapters on another base)
    except (TypeError, RuntimeError, ValueError) as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])  # load_state_dict: mismatch on line 2
        raise CheckpointError(
            f"{path} does not match {cls.__qualname__}: {detail.rstrip('.')}. It was probably "
            "written by another model or another version of nl_lightning."
        ) from err
    return (model.merge_lora() if merge_lora else model).eval()
