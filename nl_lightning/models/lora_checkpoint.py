"""Adapter-only state of a LoRA model, bound to the base model it was trained on.

A LoRA fine-tune of a published model changes a few MB; storing the multi-GB base again in every
checkpoint is waste. The adapter state holds what trains (adapters, and modules kept trainable such
as a classifier's head) plus buffers, and a ``base`` record ``{path, sha256}`` of the folder the
frozen weights came from (``path_sha256``: names and bytes of every file). Loading checks that
record first: adapters on another base compute a different model, silently.

Plain tensors, strings and dicts only: ``torch.load(weights_only=True)`` reads it. No lightning import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nl_lightning._io import path_sha256
from nl_lightning.errors import NLUserError

__all__ = ["ADAPTER_FORMAT", "LoRAStateError", "adapter_keys", "base_record", "check_base", "complete_state",
           "load_lora_state_dict", "lora_state_dict"]

#: The ``format`` field of an adapter-only LoRA state; a file with another value is refused.
ADAPTER_FORMAT = "nl_lightning.lora/1"


class LoRAStateError(NLUserError, ValueError):
    """Adapters that do not belong to this model: another base, another LoRA layout, or not adapters."""


def base_record(path: str | Path) -> dict[str, str]:
    """``{"path", "sha256"}`` of the base model folder (or file) the frozen weights are read from."""
    return {"path": str(path), "sha256": path_sha256(path)}


def adapter_keys(model: nn.Module) -> set[str]:
    """State-dict keys the adapter state holds: trainable parameters and every saved buffer."""
    saved = set(model.state_dict())
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return trainable | (set(dict(model.named_buffers())) & saved)


def lora_state_dict(model: nn.Module, base: dict[str, str], lora: dict[str, Any] | None = None) -> dict[str, Any]:
    """The adapter state of ``model`` (see the module docstring); ``lora`` is recorded for reference."""
    keys = adapter_keys(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in keys}
    return {"format": ADAPTER_FORMAT, "base": dict(base), "lora": lora, "state_dict": state}


def check_base(stored: dict[str, str] | None, base: dict[str, str] | None) -> None:
    """Refuse adapters trained on another base than ``base`` (the record of the model's own)."""
    if not stored or "sha256" not in stored:
        raise LoRAStateError("These adapters record no base model (base.sha256 is missing); they cannot be checked. "
                             "Save them with lora_state_dict(model, base_record(folder)).")
    if base is None:
        raise LoRAStateError(
            f"These adapters were trained on the base {stored.get('path')} (SHA-256 {stored['sha256']}), but this model "
            "records no base to check it against. Build the model from that folder (pretrained=...) first."
        )
    if stored["sha256"] != base["sha256"]:
        raise LoRAStateError(
            f"These adapters were trained on the base {stored.get('path')} (SHA-256 {stored['sha256']}), but this "
            f"model's base {base.get('path')} has SHA-256 {base['sha256']}. Load them onto the base they were trained "
            "on (the same folder, unchanged), or train new adapters on this base."
        )


def load_lora_state_dict(model: nn.Module, adapter: dict[str, Any], base: dict[str, str] | None) -> None:
    """Load ``adapter`` (from :func:`lora_state_dict`) into ``model`` built on ``base``; the base record
    is checked first, then that the adapter holds exactly the model's adapter tensors, shape for shape."""
    if not isinstance(adapter, dict) or adapter.get("format") != ADAPTER_FORMAT:
        found = adapter.get("format") if isinstance(adapter, dict) else type(adapter).__name__
        raise LoRAStateError(f"Not an nl_lightning adapter state (format {found!r}, expected {ADAPTER_FORMAT!r}).")
    check_base(adapter.get("base"), base)
    model.load_state_dict(complete_state(model, adapter["state_dict"]), strict=True)


def complete_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model``'s full state dict with ``state`` (adapter tensors) in place of its own, after checking
    that ``state`` holds exactly the adapter keys, with the model's shapes."""
    full = model.state_dict()
    missing, unexpected = sorted(adapter_keys(model) - set(state)), sorted(set(state) - set(full))
    if missing or unexpected:
        raise LoRAStateError(
            f"The adapter state does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}. "
            "Build the model with the LoRA settings (targets, task head) the adapters were trained with."
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(full[key].shape):
            raise LoRAStateError(
                f"Adapter tensor {key} has shape {tuple(value.shape)} but the model's is {tuple(full[key].shape)}; "
                "build the model with the LoRA rank (r) and targets the adapters were trained with."
            )
    full.update(state)
    return full
