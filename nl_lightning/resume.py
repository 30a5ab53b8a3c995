"""What ``nl-lightning fit|validate|test|predict --ckpt_path`` checks before Lightning reads the file.

Lightning's own path would show raw ``UnpicklingError`` / ``PytorchStreamReader`` / ``KeyError``
for a bad file, and its CLI silently replaces the config's model arguments with the checkpoint's.
Here the path is resolved (``last`` and run folders mean the newest ``last.ckpt``, ``best`` the
monitored best checkpoint it records), read with the safe loader, its model class checked against the allow-list and the config's class, and an
architecture that differs from the config's is refused with the fields named.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path, PurePath
from typing import Any, Mapping, Sequence

import lightning as L

from nl_lightning.models.checkpoint import CheckpointError, read_checkpoint
from nl_lightning.models.runs import find_checkpoint
from nl_lightning.models.trust import UntrustedClassError, resolve_class

#: Model arguments that define the network: a difference means the weights cannot be this model.
ARCHITECTURE_KEYS = ("config.", "num_classes", "task", "pooling", "student.", "lora.")


def resolve_ckpt_path(value: str, default_root_dir: str | None) -> str:
    """``last`` = the newest ``last.ckpt`` under the run root (runs are versioned, so Lightning's own
    ``last`` would look in the new, empty version folder); ``best`` = the checkpoint that run's
    ``ModelCheckpoint(monitor=...)`` kept as best (Lightning's ``best`` needs a fit in the same
    process); a run folder = its newest ``last.ckpt``."""
    if value in ("last", "best"):
        root = Path(default_root_dir or ".")
        try:
            found = find_checkpoint(root) if root.is_dir() else None
        except CheckpointError:
            found = None
        if found is None or found == root:
            raise CheckpointError(
                f"--ckpt_path {value}: no last.ckpt under {root} (trainer.default_root_dir); pass the checkpoint "
                "file or the run folder."
            )
        return str(found if value == "last" else best_checkpoint(found))
    if value in ("hpc", "registry") or value.startswith("registry:"):
        return value  # Lightning's own meanings
    return str(find_checkpoint(value))


def best_checkpoint(last: Path) -> Path:
    """The monitored best checkpoint that ``last`` (a run's ``last.ckpt``) records, looked up by name
    beside it: the run may have moved, and a file's word never points outside its folder."""
    states = (read_checkpoint(last).get("callbacks") or {}).items()
    best = [s for k, s in states if str(k).startswith("ModelCheckpoint") and isinstance(s, dict)
            and s.get("monitor") and s.get("best_model_path")]
    if not best:
        raise CheckpointError(
            f"--ckpt_path best: {last} records no monitored best checkpoint (no ModelCheckpoint with a monitor "
            "saved one); pass a checkpoint file, or --ckpt_path last."
        )
    path = last.parent / PurePath(str(best[0]["best_model_path"])).name
    if not path.is_file():
        raise CheckpointError(
            f"--ckpt_path best: the run's best checkpoint ({best[0]['monitor']}) was "
            f"{PurePath(str(best[0]['best_model_path'])).name}, which is no longer in {last.parent}; pass a checkpoint file."
        )
    return path


def check_checkpoint_against_config(path: str, model: Any, stage: str, trust: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``path`` safely and compare its model with the config's ``model`` namespace."""
    checkpoint = read_checkpoint(path, lightning=stage == "fit")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    stored_class = hparams.pop("_class_path", None) or (checkpoint.get("nl_lightning") or {}).get("class_path")
    hparams.pop("_instantiator", None)
    config_class = _import(getattr(model, "class_path", None)) if model is not None else None
    if stored_class:
        try:
            cls = resolve_class(stored_class, L.LightningModule, "model", path, expected=config_class, trust=trust)
        except UntrustedClassError as err:
            raise CheckpointError(str(err)) from None
        if config_class is not None and not issubclass(cls, config_class):
            raise CheckpointError(
                f"{path} holds a {stored_class} but the config's model is {model.class_path}; pass a checkpoint of "
                "that model, or the config it was trained with."
            )
    if model is not None:
        _compare(path, _flat(dict(getattr(model, "init_args", {}) or {})), {**_flat(hparams), **_pruned_from(checkpoint)})
    return checkpoint


def _pruned_from(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A structurally pruned checkpoint is compared with the config it was pruned from: its widths
    before pruning (``TaskModule.structured_pruning``) stand in for the pruned ones."""
    record = (checkpoint.get("nl_lightning") or {}).get("structured_pruning") or {}
    return {f"config.{key}": value for key, value in (record.get("original") or {}).items()}


def _compare(path: str, configured: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
    differ = {k: (configured[k], stored[k]) for k in configured.keys() & stored.keys()
              if configured[k] is not None and _norm(configured[k]) != _norm(stored[k])}
    arch = {k: v for k, v in differ.items() if k.startswith(ARCHITECTURE_KEYS)}
    if arch:
        fields = ", ".join(f"{k}: config {c!r} vs checkpoint {s!r}" for k, (c, s) in sorted(arch.items()))
        raise CheckpointError(
            f"{path} was trained with a different architecture than the config ({fields}). Use the config the "
            "checkpoint was trained with, or start a new fit without --ckpt_path."
        )
    if differ:
        fields = ", ".join(f"{k} ({c!r} -> {s!r})" for k, (c, s) in sorted(differ.items()))
        warnings.warn(f"--ckpt_path {path}: the checkpoint's values replace the config's for {fields}.", stacklevel=2)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if hasattr(value, "items") and not isinstance(value, (str, bytes)):
            out.update(_flat(dict(value.items()), f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _import(class_path: str | None) -> type | None:
    """The config's own model class (the user's config is trusted; a checkpoint is not)."""
    if not class_path or "." not in class_path:
        return None
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return None
