"""The tensors of a model folder, by name, without reading them until asked.

``model.safetensors`` (or shards listed by ``model.safetensors.index.json``) is memory-mapped by
``safetensors``: a tensor costs no memory until its pages are touched, and writing to it copies
only those pages (the file never changes). A ``pytorch_model.bin`` (or its shards) is read with
``torch.load(weights_only=True, mmap=True)`` only: a file that needs pickle is refused.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from nl_lightning.pretrained.errors import PretrainedError

__all__ = ["WEIGHT_FILES", "TensorFiles", "find_weight_files", "load_bin"]

#: What a folder's weights may be, in order of preference (an index lists shards).
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")


def find_weight_files(folder: Path) -> list[Path]:
    """The weight files of ``folder``: one file, or the shards its index names (each checked)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            return _shards(path) if name.endswith(".index.json") else [path]
    raise PretrainedError(
        f"{folder} has no weights: expected one of {list(WEIGHT_FILES)}. Copy the model's weight files "
        "next to its config.json (safetensors preferred)."
    )


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainedError(
            f"{index} is not a shard index (JSON with a 'weight_map' of tensor name -> file): {err}. "
            "Restore it from the model's source."
        ) from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise PretrainedError(f"{index}: 'weight_map' must map tensor names to shard files; it is empty or not a map.")
    shards = []
    for name in dict.fromkeys(weight_map.values()):
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise PretrainedError(f"{index} names the shard {name!r}; shards must be plain file names in the same folder.")
        if not (index.parent / name).is_file():
            raise PretrainedError(
                f"{index} names the shard {name!r}, which is not in {index.parent}. Copy every shard the index "
                "lists (a download may have stopped early)."
            )
        shards.append(index.parent / name)
    return shards


class TensorFiles:
    """Read-only ``name -> tensor`` over a folder's weight files; use as a context manager.

    ``shape(name)`` reads only the header; ``get(name)`` returns the tensor (memory-mapped for
    safetensors). ``rename`` maps each file's names to canonical ones (prefixes, legacy names).
    """

    def __init__(self, files: list[Path], rename: Callable[[str], str] | None = None) -> None:
        self.files = files
        self._stack = ExitStack()
        self._where: dict[str, tuple[Any, str, Path]] = {}
        try:
            for path in files:
                for raw, handle in self._open(path):
                    name = rename(raw) if rename is not None else raw
                    if name in self._where:
                        raise PretrainedError(f"{path}: tensor {raw!r} also appears in {self._where[name][2].name}.")
                    self._where[name] = (handle, raw, path)
        except BaseException:
            self._stack.close()
            raise

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], path: Path) -> "TensorFiles":
        """Tensors already loaded from ``path`` (a LitGPT ``lit_model.pth``), under their own names."""
        files = cls([])
        files.files = [path]
        files._where = {name: (state, name, path) for name in state}
        return files

    def __enter__(self) -> "TensorFiles":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Drop the file handles; tensors already returned stay valid (they hold their own mapping)."""
        self._stack.close()

    def names(self) -> list[str]:
        """Every tensor name (canonical), over all files."""
        return list(self._where)

    def file_of(self, name: str) -> Path:
        """The file holding ``name`` (for messages)."""
        return self._where[name][2]

    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape, read from the header only."""
        handle, raw, _ = self._where[name]
        if isinstance(handle, dict):
            return tuple(handle[raw].shape)
        return tuple(handle.get_slice(raw).get_shape())

    def get(self, name: str) -> torch.Tensor:
        """The tensor (memory-mapped, copy-on-write, for safetensors)."""
        handle, raw, path = self._where[name]
        if isinstance(handle, dict):
            return handle[raw]
        try:
            return handle.get_tensor(raw)
        except SafetensorError as err:
            raise PretrainedError(f"{path}: tensor {raw!r} cannot be read ({err}); the file is corrupt.") from None

    def _open(self, path: Path) -> Iterator[tuple[str, Any]]:
        if path.suffix == ".safetensors":
            handle = self._open_safetensors(path)
            return ((name, handle) for name in handle.keys())
        state = load_bin(path)
        return ((name, state) for name in state)

    def _open_safetensors(self, path: Path) -> Any:
        try:
            return self._stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
        except SafetensorError as err:
            raise PretrainedError(
                f"{path} is truncated or corrupt: {err}. Download or copy the file again (compare its size "
                "and checksum with the source)."
            ) from None
        except OSError as err:
            raise PretrainedError(f"{path} cannot be read: {err}.") from None


def load_bin(path: Path) -> dict[str, torch.Tensor]:
    """A ``pytorch_model.bin`` state dict, tensors and plain values only (never arbitrary pickle)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        found = re.findall(r"GLOBAL ([\w.]+)", str(err))
        what = f" (it holds {found[0]})" if found else ""
        raise PretrainedError(
            f"Refusing to load {path}: it needs pickle to load{what}, and unpickling could run code from the "
            "file. Ask for the model in safetensors (model.safetensors), or convert the .bin with a tool you "
            "trust on a machine you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise PretrainedError(f"{path} is truncated or corrupt and cannot be read ({detail}). Copy it again.") from None
    for key in ("state_dict", "model"):  # a training checkpoint (Lightning, LitGPT's fine-tunes) wraps it
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f"{path} is not a state dict (tensor name -> tensor); it cannot be a model's weights.")
    return state
