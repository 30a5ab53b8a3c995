"""Typed reads of a model folder's config file (``config.json``, LitGPT's ``model_config.yaml``).

Every read names the file and the field in its error. ``rope()`` reads RoPE settings as both
transformers 4.x (``rope_theta`` + ``rope_scaling``) and 5.x (``rope_parameters``) write them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nl_lightning.pretrained.errors import PretrainedError, refuse

__all__ = ["ConfigFields"]

_MISSING = object()


class ConfigFields:
    """A config file's values with checked getters; ``where`` is the file, for messages."""

    def __init__(self, values: dict[str, Any], where: str | Path) -> None:
        self.values, self.where = values, str(where)

    def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` when the key is missing or null."""
        value = self.values.get(key, default)
        return default if value is None else value

    def require(self, key: str) -> Any:
        """The value; a missing or null key is an error naming the file."""
        value = self.values.get(key, _MISSING)
        if value is _MISSING or value is None:
            raise PretrainedError(f"{self.where} has no {key!r}; it is incomplete or not a model config of this kind.")
        return value

    def integer(self, key: str, default: Any = _MISSING) -> int:
        """A positive integer (required unless ``default`` is given)."""
        value = self.require(key) if default is _MISSING else self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PretrainedError(f"{self.where}: {key}={value!r} must be a positive integer.")
        return value

    def number(self, key: str, default: float) -> float:
        """A number >= 0, as float."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PretrainedError(f"{self.where}: {key}={value!r} must be a number >= 0.")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean (JSON ``true`` / ``false`` only)."""
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise PretrainedError(f"{self.where}: {key}={value!r} must be true or false.")
        return value

    def expect(self, key: str, allowed: Iterable[Any], default: Any, what: str = "") -> Any:
        """The value of ``key`` if it is one of ``allowed``; else the error names what we support."""
        allowed = tuple(allowed)
        value = self.get(key, default)
        if value not in allowed:
            raise refuse(key, value, what or f"nl_lightning computes {list(allowed)}", self.where)
        return value

    def rope(self, max_seq_len: int) -> tuple[float, dict[str, Any] | None]:
        """(rope_theta, our ``rope_scaling`` dict or None), from 4.x or 5.x keys."""
        params = self.get("rope_parameters", {})
        if not isinstance(params, dict) or any(isinstance(v, dict) for v in params.values()):
            raise refuse("rope_parameters", params, "per-layer RoPE settings are not supported; one dict is", self.where)
        legacy = self.get("rope_scaling", {})
        theta = params.get("rope_theta", self.get("rope_theta", 10000.0))
        partial = params.get("partial_rotary_factor", self.get("partial_rotary_factor", 1.0))
        if partial != 1.0:
            raise refuse("partial_rotary_factor", partial, "RoPE over the whole head (1.0) is supported", self.where)
        scaling, field = (params, "rope_parameters") if _rope_type(params) != "default" else (legacy, "rope_scaling")
        return float(theta), _our_scaling(scaling, field, max_seq_len, self.where)


def _rope_type(values: Any) -> str:
    if not isinstance(values, dict):
        return "default"
    return values.get("rope_type") or values.get("type") or "default"


def _our_scaling(values: Any, field: str, max_seq_len: int, where: str) -> dict[str, Any] | None:
    kind = _rope_type(values)
    if kind == "default":
        return None
    if kind == "linear":
        return {"type": "linear", "factor": _number(values, "factor", field, where)}
    if kind == "llama3":
        return {
            "type": "llama3",
            "factor": _number(values, "factor", field, where),
            "low_freq_factor": _number(values, "low_freq_factor", field, where),
            "high_freq_factor": _number(values, "high_freq_factor", field, where),
            "original_max_seq_len": int(values.get("original_max_position_embeddings") or max_seq_len),
        }
    raise refuse(f"{field}.rope_type", kind, "supported RoPE types are 'default', 'linear' and 'llama3'", where)


def _number(values: dict[str, Any], key: str, field: str, where: str) -> float:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PretrainedError(f"{where}: {field}.{key}={value!r} must be a positive number.")
    return float(value)
