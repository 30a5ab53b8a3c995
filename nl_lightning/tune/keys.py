"""Dotted keys into a LightningCLI config: ``model.init_args.optimizer.lr`` -> that value.

A key names a path through the fit YAML's nested mappings (and lists, by index:
``trainer.callbacks.0.init_args.patience``). As on LightningCLI's command line, ``init_args`` may
be left out below a ``class_path`` node (``model.optimizer.lr``): :func:`set_key` puts the value
under ``init_args`` there. Pure Python: no lightning import.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from nl_lightning.errors import ConfigError


def split_key(key: str) -> list[str]:
    """``"a.b.0.c"`` -> ``["a", "b", "0", "c"]``; an empty part is an error naming the key."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"A config key must be a non-empty dotted string like 'model.init_args.optimizer.lr', got {key!r}.")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"Config key {key!r} has an empty part; write it like 'model.init_args.optimizer.lr'.")
    return parts


def canonical_key(config: Mapping[str, Any], key: str) -> str:
    """The key with ``init_args`` put back wherever the path enters a ``class_path`` node."""
    node: Any = config
    out: list[str] = []
    for part in split_key(key):
        if isinstance(node, Mapping) and "class_path" in node and part not in ("class_path", "init_args"):
            out.append("init_args")
            node = node.get("init_args") or {}
        out.append(part)
        node = _child(node, part)
    return ".".join(out)


def get_key(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at ``key`` (canonicalized), or ``default`` when the path does not exist."""
    node: Any = config
    for part in split_key(canonical_key(config, key)):
        node = _child(node, part, _MISSING)
        if node is _MISSING:
            return default
    return node


def set_key(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` to ``value`` in place, creating the mappings on the way."""
    parts = split_key(canonical_key(config, key))
    node: Any = config
    for i, part in enumerate(parts[:-1]):
        child = _child(node, part, _MISSING)
        if child is _MISSING or child is None:
            if isinstance(node, list):
                raise ConfigError(f"Config key {key!r}: index {part} is out of range for a list of {len(node)}.")
            child = node[part] = {}
        elif not isinstance(child, (dict, list)):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"Config key {key!r} goes through {where!r}, which holds the value {child!r}, not a mapping; "
                "check the key's spelling."
            )
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    else:
        node[last] = value


def with_keys(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with every ``key: value`` of ``values`` applied, in order."""
    out = copy.deepcopy(dict(config))
    for key, value in values.items():
        set_key(out, key, copy.deepcopy(value))
    return out


_MISSING = object()


def _child(node: Any, part: str, default: Any = None) -> Any:
    if isinstance(node, Mapping):
        return node.get(part, default)
    if isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
        return node[int(part)]
    return default


def _index(node: list, part: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"Config key {key!r}: {part!r} is not an index of a list of {len(node)}.")
    return int(part)
