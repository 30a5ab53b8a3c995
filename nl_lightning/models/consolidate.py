"""One ordinary checkpoint file from a sharded ``torch.distributed.checkpoint`` folder, read safely.

``ModelParallelStrategy`` (FSDP2) saves ``last.ckpt`` as a folder: tensor shards, a pickled
``.metadata`` and Lightning's ``meta.pt`` (hyperparameters, loops, callbacks). Lightning's own
``consolidate_checkpoint`` script reads ``FSDPStrategy`` folders only, and torch's
``dcp_to_torch_save`` unpickles ``.metadata`` and every non-tensor value with plain pickle, so a
crafted folder would run code. Here ``.metadata`` is unpickled with an allow-list of the classes
DCP's metadata is made of (``SafeMetadataReader``), non-tensor values and tensors load with
``weights_only=True`` (``SafeLoadPlanner``), and anything else is refused before it is called.
The result is a plain checkpoint that ``load_checkpoint`` / ``--ckpt_path`` read.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch.distributed.checkpoint import CheckpointException, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from nl_lightning._io import atomic_output
from nl_lightning.models.checkpoint import CheckpointError

__all__ = ["METADATA_CLASSES", "SafeLoadPlanner", "SafeMetadataReader", "consolidate_dcp", "read_dcp_metadata"]

#: What a DCP ``.metadata`` pickle may name (torch 2.5-2.13): its dataclasses, torch's sizes, dtypes
#: and layouts, and the checkpoint's path. Nothing here runs code when built from pickled arguments.
METADATA_CLASSES: frozenset[tuple[str, str]] = frozenset({
    *(("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
        "BytesStorageMetadata", "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING")),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"), ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PureWindowsPath"),
    ("collections", "OrderedDict"),
})


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in METADATA_CLASSES or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise CheckpointError(
            f"{self.source} names {module}.{name}, which is not part of torch.distributed.checkpoint metadata; "
            "unpickling it could run code from the folder, so it is refused. Only consolidate folders written by "
            "ModelParallelStrategy / torch.distributed.checkpoint."
        )


def read_dcp_metadata(folder: str | Path) -> Metadata:
    """A DCP folder's ``.metadata``, unpickled with :data:`METADATA_CLASSES` as the only globals."""
    path = Path(folder) / ".metadata"
    try:
        metadata = _MetadataUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except CheckpointError:
        raise
    except Exception as err:  # any failure to unpickle the bytes: a truncated or foreign file
        raise CheckpointError(f"{path} cannot be read as torch.distributed.checkpoint metadata ({type(err).__name__}: "
                              f"{err}); the folder is damaged or was not written by torch.distributed.checkpoint.") from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path} holds a {type(metadata).__name__}, not torch.distributed.checkpoint metadata.")
    for info in (metadata.storage_data or {}).values():
        name = getattr(info, "relative_path", None)
        if not isinstance(name, str) or PurePosixPath(name).name != name or name in ("", ".", ".."):
            raise CheckpointError(f"{path} points at a shard {name!r} outside its folder; refusing to read it.")
    return metadata


class SafeMetadataReader(FileSystemReader):
    """torch's ``FileSystemReader`` with ``.metadata`` read by :func:`read_dcp_metadata`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        metadata = read_dcp_metadata(self.path)  # the folder's one .metadata (a per-rank file is never read)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


# torch's public ``dcp_to_torch_save`` takes no reader or planner; what it is built from (a planner
# that rebuilds the state dict from the metadata, and the loader that fills a dict without keys)
# is private. These two names are the only private access, pinned by tests/models/test_consolidate.py
# and the FSDP2 consolidate test (tests/strategies/test_strategy_model_parallel.py).
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner  # noqa: E402
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict  # noqa: E402


class SafeLoadPlanner(_EmptyStateDictLoadPlanner):
    """Rebuilds the whole state dict from the metadata; non-tensor values load with ``weights_only=True``
    (torch's own planner unpickles them with plain pickle)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as err:
            raise CheckpointError(
                f"The sharded checkpoint's value {read_item.dest_index.fqn!r} holds a pickled Python object, not "
                f"plain data ({str(err).splitlines()[0][:160]}); refusing to unpickle it."
            ) from None
        super().load_bytes(read_item, _saved(loaded))


def _saved(value: Any) -> io.BytesIO:
    """``value`` as ``torch.save`` bytes: the parent planner reads it back (plain data only now)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return buffer


def consolidate_dcp(folder: str | Path, output: str | Path) -> Path:
    """Gather every shard of ``folder`` into ``output`` (written atomically); returns ``output``."""
    folder, output = Path(folder), Path(output)
    if not (folder / ".metadata").is_file():
        raise CheckpointError(f"{folder} is not a sharded torch.distributed.checkpoint folder (no .metadata).")
    meta_path = folder / "meta.pt"
    meta = torch.load(meta_path, weights_only=True) if meta_path.is_file() else {}  # plain data: safe
    read_dcp_metadata(folder)  # refused here, before torch wraps the error in a CheckpointException
    shards: dict[str, Any] = {}
    try:
        _load_state_dict(shards, storage_reader=SafeMetadataReader(folder), planner=SafeLoadPlanner(), no_dist=True)
    except CheckpointException as err:
        for exc, _ in err.failures.values():
            if isinstance(exc, CheckpointError):
                raise exc from None
        raise
    state = shards.get("state_dict", shards.get("model", shards))
    with atomic_output(output) as tmp:
        torch.save({**meta, **{k: v for k, v in shards.items() if k not in ("state_dict", "model")},
                    "state_dict": state}, tmp)
    return output
