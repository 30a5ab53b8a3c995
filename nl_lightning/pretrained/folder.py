"""Model folders on disk: open a Hugging Face or LitGPT folder for reading; write a Hugging Face one.

A folder is untrusted input: its config is parsed as JSON / safe YAML, its weights are read
with ``safetensors`` or ``torch.load(weights_only=True)``. A folder is written whole or not at all
(``_io.staged_dir``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from nl_lightning._io import staged_dir
from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.families import family_of
from nl_lightning.pretrained.family import Family
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.litgpt import LITGPT, LITGPT_FILES, reassemble_legacy_qkv
from nl_lightning.pretrained.weights import TensorFiles, find_weight_files, load_bin

__all__ = ["ModelFolder", "folder_tokenizer", "open_folder", "write_folder"]

RESERVED = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class ModelFolder:
    """A folder opened for reading: its family, its architecture and where its weights are."""

    path: Path
    family: Family
    config: TransformerConfig
    fields: ConfigFields
    weight_files: list[Path]

    def tensors(self) -> TensorFiles:
        """The folder's tensors under the names the family's rules use (close it after use)."""
        if self.family is not LITGPT:
            return TensorFiles(self.weight_files, rename=self.family.canonical)
        state = load_bin(self.weight_files[0])
        if any(".attn.attn." in name for name in state):
            state = reassemble_legacy_qkv(state, self.config)
        return TensorFiles.from_state(state, self.weight_files[0])


def open_folder(path: str | Path) -> ModelFolder:
    """Open a Hugging Face folder (``config.json`` + weights) or a LitGPT one (``lit_model.pth`` +
    ``model_config.yaml``); its architecture is read and checked, its weights are not read yet."""
    path = Path(path)
    if not path.is_dir():
        raise PretrainedError(
            f"Pretrained model folder not found: {path}. Pass a folder holding config.json and the weights "
            "(a Hugging Face model folder) or lit_model.pth and model_config.yaml (LitGPT)."
        )
    if (path / "config.json").is_file():
        fields = ConfigFields(_read(path / "config.json", json.loads), path / "config.json")
        family, files = family_of(fields), find_weight_files(path)
    elif all((path / name).is_file() for name in LITGPT_FILES):
        fields = ConfigFields(_read(path / "model_config.yaml", yaml.safe_load), path / "model_config.yaml")
        family, files = LITGPT, [path / "lit_model.pth"]
    else:
        raise PretrainedError(
            f"{path} has no config.json, so its architecture is unknown (and no lit_model.pth + model_config.yaml "
            "of a LitGPT folder). Copy the model's config.json next to its weights."
        )
    try:
        config = TransformerConfig(**family.read_config(fields))
    except PretrainedError:
        raise
    except ValueError as err:
        raise PretrainedError(f"{fields.where} describes a model nl_lightning cannot build: {err}") from None
    return ModelFolder(path, family, config, fields, files)


def _read(path: Path, parse: Any) -> dict[str, Any]:
    try:
        values = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise PretrainedError(f"{path} cannot be parsed: {err}. Restore it from the model's source.") from None
    if not isinstance(values, dict):
        raise PretrainedError(f"{path} must hold a mapping of settings, got {type(values).__name__}.")
    return values


def folder_tokenizer(path: str | Path) -> str | None:
    """The folder itself when it holds a ``tokenizer.json`` (for a model that takes a tokenizer): the
    codec then also reads the folder's ``tokenizer_config.json`` (end-of-text token, chat template)."""
    return str(path) if (Path(path) / "tokenizer.json").is_file() else None


def write_folder(
    path: str | Path, config: dict[str, Any], tensors: Mapping[str, torch.Tensor],
    extra_files: Mapping[str, str | bytes | Path] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``extra_files``: name -> text, bytes or a
    file to copy, e.g. a tokenizer.json) as one folder; a failure leaves ``path`` as it was."""
    extra_files = dict(extra_files or {})
    for name in extra_files:
        if Path(name).name != name or name in RESERVED or name in (".", ".."):
            raise PretrainedError(f"extra_files name {name!r} must be a plain file name other than {RESERVED}.")
    with staged_dir(path) as build:
        (build / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(_unshared(tensors), str(build / "model.safetensors"), metadata={"format": "pt"})
        for name, content in extra_files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, build / name)
            elif isinstance(content, bytes):
                (build / name).write_bytes(content)
            else:
                (build / name).write_text(content)
    return Path(path)


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (views of one fused weight): copy those."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out
