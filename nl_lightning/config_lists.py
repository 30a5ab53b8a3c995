"""List-valued settings across ``--config`` files: loggers and callbacks compose, and one item can
be changed from the command line by its index or its class name.

jsonargparse replaces a list when a later config file sets it, so ``--config configs/track/tensorboard.yaml
--config configs/track/mlflow.yaml`` kept only the second file's loggers. Before LightningCLI parses,
the subcommand's ``--config`` files are read in order and:

- ``trainer.logger`` and ``trainer.callbacks``: the lists the fragments (the files after the first)
  set are appended to each other in order and replace the first file's own (a fragment chooses the
  tracking backends); entries under ``logger+:`` / ``callbacks+:`` are appended to whatever is there,
  the first file's included. A logger class appears once (a later entry of the same class updates the
  earlier one's ``init_args``); an exact repeat of a callback is dropped.
- ``--trainer.callbacks.1.init_args.patience=10`` or ``--trainer.callbacks.EarlyStopping.patience=10``
  (``init_args`` may be left out) sets one argument of one item; the same for ``trainer.logger``.

The composed lists go to LightningCLI as one more ``--config`` (a YAML string) right after the last
file, so the other command-line arguments still apply on top (``--trainer.callbacks+=...``).
No lightning import.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from nl_lightning.errors import ConfigError

__all__ = ["compose_lists"]

LIST_KEYS = ("logger", "callbacks")
SUBCOMMANDS = ("fit", "validate", "test", "predict")
_ITEM = re.compile(r"^--trainer\.(logger|callbacks)\.(\d+|[A-Za-z_]\w*)\.(.+)$")


def compose_lists(argv: list[str]) -> list[str]:
    """``argv`` of a LightningCLI subcommand with its list settings composed (see the module doc)."""
    if not argv or not (argv[0] in SUBCOMMANDS or argv[0].startswith("--")):  # a subcommand, or run=False
        return argv
    argv, overrides = _take_item_overrides(argv)
    positions, files = _config_files(argv)
    fragments_set = any(_sets_list(f) for f in files[1:])
    if not overrides and not fragments_set:
        return argv
    lists = {key: _compose(key, files) for key in LIST_KEYS}
    for key, item, path, value, arg in overrides:
        _apply(lists, key, item, path, value, arg)
    trainer = {key: value for key, value in lists.items() if value is not None}
    insert_at = positions[-1] + 1 if positions else int(argv[0] in SUBCOMMANDS)
    return argv[:insert_at] + ["--config", yaml.safe_dump({"trainer": trainer}, sort_keys=False)] + argv[insert_at:]


def _take_item_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str, list[str], Any, str]]]:
    """Remove ``--trainer.<list>.<index|Class>.<path>[=]value`` from ``argv``; return them parsed."""
    kept, found = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        match = _ITEM.match(name)
        if match and match.group(2) not in ("init_args", "class_path", "dict_kwargs"):
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg} needs a value, e.g. {arg}=10.")
                value, i = argv[i + 1], i + 1
            path = [p for p in match.group(3).split(".") if p != "init_args"]
            found.append((match.group(1), match.group(2), path, yaml.safe_load(value), name))
        else:
            kept.append(arg)
        i += 1
    return kept, found


def _config_files(argv: list[str]) -> tuple[list[int], list[dict[str, Any]]]:
    """Positions in ``argv`` of the ``--config`` options that name files, and each file's trainer section."""
    positions, files = [], []
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else arg[9:] if arg.startswith("--config=") else None
        if value is None:
            continue
        path = Path(value)
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            files.append(data.get("trainer") or {} if isinstance(data, dict) else {})
            positions.append(i + 1 if arg == "--config" else i)
    return positions, files


def _sets_list(trainer: dict[str, Any]) -> bool:
    return any(k in trainer or f"{k}+" in trainer for k in LIST_KEYS)


def _entries(value: Any) -> list[dict[str, Any]]:
    if value is None or isinstance(value, bool):
        return []
    items = value if isinstance(value, list) else [value]
    return [copy.deepcopy(v) if isinstance(v, dict) else {"class_path": v} for v in items]


def _compose(key: str, files: list[dict[str, Any]]) -> list[dict[str, Any]] | Any:
    """The list ``key`` after every file: see the module doc."""
    if not files:
        return None
    base = files[0].get(key)
    own = _entries(base) + _entries(files[0].get(f"{key}+"))
    added: list[dict[str, Any]] = []
    replaced = False
    for fragment in files[1:]:
        if key in fragment and (fragment[key] is False or fragment[key] is None):
            return fragment[key]  # an explicit `logger: false` / `callbacks: null` wins
        replaced = replaced or key in fragment
        for entry in _entries(fragment.get(key)) + _entries(fragment.get(f"{key}+")):
            _add(key, added, entry)
    result: list[dict[str, Any]] = []
    for entry in ([] if replaced else own) + added:
        _add(key, result, entry)
    if not result and not replaced and not isinstance(base, (list, dict)):
        return base  # True / False / None as the first file said
    return result


def _add(key: str, entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    same = [e for e in entries if e.get("class_path") == entry.get("class_path")]
    if key == "logger" and same:
        same[0].setdefault("init_args", {}).update(entry.get("init_args") or {})
    elif entry not in entries:
        entries.append(entry)


def _apply(lists: dict[str, Any], key: str, item: str, path: list[str], value: Any, arg: str) -> None:
    entries = lists.get(key)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{arg}: trainer.{key} has no entries in the --config files to change; add the item "
                          f"with --trainer.{key}+=<class> instead.")
    names = [str(e.get("class_path", "")).rsplit(".", 1)[-1] for e in entries]
    listing = ", ".join(f"{i}: {n}" for i, n in enumerate(names))
    if item.isdigit():
        if int(item) >= len(entries):
            raise ConfigError(f"{arg}: trainer.{key} has {len(entries)} entries ({listing}); no index {item}.")
        index = int(item)
    else:
        matches = [i for i, n in enumerate(names) if n == item]
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)}"
            raise ConfigError(f"{arg}: trainer.{key} has {what} {item} entries ({listing}); "
                              "name one by its class or its index.")
        index = matches[0]
    node = entries[index].setdefault("init_args", {})
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
