"""Build one of our networks from a model folder, every tensor checked before any is used.

The network is first built on the meta device (no memory): exporting its meta state dict through
the family's rules says which tensors, of which shapes, the folder must hold. When the folder
provides every weight, that meta network is kept and the (memory-mapped) tensors are assigned to
it, so loading costs about the weights' own bytes, never a random copy on top. Parts the folder
does not hold (a new classification head) mean a normal build first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import chain

import torch
from torch import nn

from nl_lightning.models.config import TransformerConfig
from nl_lightning.nn.rope import RotaryEmbedding
from nl_lightning.pretrained.errors import PretrainedError
from nl_lightning.pretrained.family import Parts
from nl_lightning.pretrained.folder import ModelFolder
from nl_lightning.pretrained.rules import export_tensors, import_tensors
from nl_lightning.pretrained.weights import TensorFiles

__all__ = ["load_weights"]

SHOWN = 5  # tensor names listed in one message


def load_weights(
    folder: ModelFolder, build: Callable[[], nn.Module], config: TransformerConfig, parts: Parts = Parts(),
) -> nn.Module:
    """``build()`` (a network for ``config``) with its weights from ``folder``, in the default dtype."""
    rules = folder.family.rules(config, parts)
    with torch.device("meta"):
        skeleton = build()
    state = skeleton.state_dict()
    expected = {name: tuple(tensor.shape) for name, tensor in export_tensors(rules, state).items()}
    dtype = torch.get_default_dtype()
    with folder.tensors() as files:
        check_tensors(folder, files, expected, config, parts)
        loaded = import_tensors(rules, lambda name: files.get(name).to(dtype))
    tied = {"lm_head.weight"} if config.tie_embeddings and "lm_head.weight" in state else set()
    fresh = [name for name in state if name not in loaded and name not in tied]
    model = build() if fresh else skeleton  # parts the folder lacks get their usual initialization
    model.load_state_dict(loaded, strict=False, assign=True)
    if tied:
        model.tie_weights()
    for module in model.modules():
        if isinstance(module, RotaryEmbedding) and module.cos.is_meta:
            module.reset_tables("cpu")  # derived tables are in no state dict
    left = [name for name, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    assert not left, f"tensors left on the meta device after loading: {left}"
    return model


def check_tensors(
    folder: ModelFolder, files: TensorFiles, expected: dict[str, tuple[int, ...]], config: TransformerConfig,
    parts: Parts,
) -> None:
    """Every expected tensor present with its shape, nothing unexplained besides; else one error
    naming the tensors (and both shapes). Tensors of parts this task does not use are warned about."""
    arch = (folder.fields.get("architectures") or [folder.family.name])[0]
    found = set(files.names())
    missing = [name for name in expected if name not in found]
    if missing:
        raise PretrainedError(
            f"{folder.path}: missing tensor(s) {_some(missing)} that {arch} as {folder.fields.where} describes it "
            "needs. The weights are incomplete (a shard or part of a download is missing) or belong to another model."
        )
    unused: dict[str, list[str]] = {}
    unexpected = []
    for name in sorted(found - set(expected)):
        reason = folder.family.unused(name, config, parts)
        if reason is None:
            unexpected.append(name)
        elif reason:
            unused.setdefault(reason, []).append(name)
    if unexpected:
        raise PretrainedError(
            f"{files.file_of(unexpected[0])}: unexpected tensor(s) {_some(unexpected)}: {arch} as "
            f"{folder.fields.where} describes it has no place for them. The config does not match the weights, or "
            "the model has parts nl_lightning does not compute."
        )
    for name, shape in expected.items():
        if files.shape(name) != shape:
            raise PretrainedError(
                f"{files.file_of(name)}: tensor {name!r} has shape {files.shape(name)} but {folder.fields.where} "
                f"implies {shape}. The config does not match the weights (check its sizes: hidden size, heads, "
                "vocabulary, layers)."
            )
    for reason, names in unused.items():
        warnings.warn(f"{folder.path}: not loading {_some(names)}: {reason}.", stacklevel=3)


def _some(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{names[:SHOWN]}{more}"
