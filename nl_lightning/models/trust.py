"""The allow-list of classes a file may name: checkpoints and manifests are untrusted input.

A checkpoint records class paths (``_class_path``, ``nl_lightning.class_path``, a distillation
``student``, a DataModule's ``_class_path``). Importing a module or calling an object because a
file says so runs code the file chose, so a class path read from a file is checked against this
allow-list *before* anything is imported, checked again after (it must be a class deriving from
the expected base), and its arguments are bound to the class's own signature before the call.

Our task modules and DataModules are allowed by name; a user's own class is allowed by
:func:`allow_class`, implicitly when the caller passes it (``MyModel.load(path)``), or from the
command line by the ``trust:`` setting of ``serve`` / ``predict`` / ``export`` (``--trust
[mypkg.MyModel]``): a list of class paths the user vouches for, passed to the loader as ``trust``
(never a switch that trusts everything). A class defined in a script is recorded as
``__main__.MyModel``, which no other process can import; it is resolved only to a listed class
of the same name (the user moved it into a module), and otherwise refused with how to do that.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from typing import Any, Mapping, Sequence

from nl_lightning.errors import ConfigError, NLUserError, WrongTypeError

#: Classes of nl_lightning a file may name, by the path Lightning / LightningCLI records (jsonargparse
#: < 4.42 records the shortest public import path: ``nl_lightning.TransformerClassifier``).
TRUSTED_MODULES: frozenset[str] = frozenset({
    "nl_lightning.models.TransformerLM", "nl_lightning.models.lm.TransformerLM", "nl_lightning.TransformerLM",
    "nl_lightning.models.TransformerClassifier", "nl_lightning.models.classifier.TransformerClassifier",
    "nl_lightning.TransformerClassifier",
    "nl_lightning.models.distill.DistillationModule",
})
TRUSTED_DATAMODULES: frozenset[str] = frozenset({
    "nl_lightning.data.CharTextDataModule", "nl_lightning.data.text.CharTextDataModule",
    "nl_lightning.data.SyntheticSequenceDataModule", "nl_lightning.data.synthetic.SyntheticSequenceDataModule",
    "nl_lightning.data.FileDataModule", "nl_lightning.data.file_datamodule.FileDataModule",
    "nl_lightning.data.TokenizedTextDataModule", "nl_lightning.data.tokenized.TokenizedTextDataModule",
})
_ALLOWED: dict[str, type] = {}


class UntrustedClassError(NLUserError, ValueError):
    """A file named a class (or any other object) outside the allow-list."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def allow_class(cls: type) -> type:
    """Trust ``cls`` (your own LightningModule / DataModule) when a checkpoint names it; usable as a
    decorator. Only classes you import yourself can be allowed: nothing is imported on a file's word."""
    if not inspect.isclass(cls):
        raise WrongTypeError(f"allow_class takes a class, got {type(cls).__name__}.")
    _ALLOWED[class_path(cls)] = cls
    return cls


def check_trust(trust: Sequence[str] | None, setting: str = "trust") -> tuple[str, ...]:
    """The class paths of a ``trust:`` setting, checked for form (nothing is imported yet)."""
    paths = tuple(trust or ())
    for path in paths:
        if not isinstance(path, str) or "." not in path or any(not part.isidentifier() for part in path.split(".")):
            raise ConfigError(f"{setting}: {path!r} is not a dotted class path; write e.g. {setting}: [mypkg.models.MyModel].")
        if path.startswith("__main__."):
            raise ConfigError(f"{setting}: {path!r} is a class of a script, {_MOVE_TO_MODULE.format(name=path[9:])}")
    return paths


_MOVE_TO_MODULE = (
    "which no other process can import (a server worker, a batch job, another command). Move the class {name} "
    "into a module (e.g. mypkg/models.py, installed or on PYTHONPATH), import it from there in your script, and "
    "list it: trust: [mypkg.models.{name}] (or --trust [mypkg.models.{name}])."
)


def resolve_class(path: Any, base: type, what: str, source: Any, expected: type | None = None,
                  trust: Sequence[str] = ()) -> type:
    """The class a file names, if allowed: on the allow-list for ``base`` (or registered, or
    ``expected`` itself, or an already imported subclass of ``expected``, or listed in ``trust``),
    and a subclass of ``base``."""
    if not isinstance(path, str) or not path or any(not part.isidentifier() for part in path.split(".")):
        raise UntrustedClassError(f"{source}: the {what} class path {path!r} is not a dotted class name.")
    cls = _lookup(path, base, expected) or _trusted(path, tuple(trust), source)
    if cls is None:
        name = path.rpartition(".")[2]
        if path.startswith("__main__."):
            raise UntrustedClassError(f"{source} names the {what} class {path!r}, defined in the script that saved "
                                      f"it, {_MOVE_TO_MODULE.format(name=name)}")
        call = f"`{name}.load(path)` or " if name[:1].isupper() else ""
        raise UntrustedClassError(
            f"{source} names the {what} class {path!r}, which is not on nl_lightning's allow-list, so it is "
            f"neither imported nor called. If it is your own class, list it in the trust setting of serve / "
            f"predict / export (trust: [{path}], or --trust [{path}]); in Python, import it and load explicitly "
            f"({call}load_checkpoint(path, expected=YourClass)), or trust it with "
            "nl_lightning.models.trust.allow_class(YourClass)."
        )
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise UntrustedClassError(f"{source}: {path!r} is not a {base.__name__} subclass; refusing to call it.")
    return cls


def _trusted(path: str, trust: tuple[str, ...], source: Any) -> Any:
    """The class ``path`` if the user listed it in ``trust`` (imported on their word, not the file's);
    for ``__main__.Name``, the one listed class called ``Name``."""
    check_trust(trust)
    if path in trust:
        return _import_trusted(path)
    if path.startswith("__main__."):
        name = path.rpartition(".")[2]
        same = [t for t in trust if t.rpartition(".")[2] == name]
        if len(same) == 1:
            warnings.warn(f"{source} records its class as {path} (it was defined in a script); loading it as "
                          f"{same[0]}, listed in trust.", stacklevel=3)
            return _import_trusted(same[0])
    return None


def _import_trusted(path: str) -> Any:
    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"trust: cannot import {path!r} ({type(err).__name__}: {err}). Install the package that defines it, or "
            "add its folder to PYTHONPATH."
        ) from None
    if not hasattr(module, name):
        raise ConfigError(f"trust: module {module_name!r} has no class {name!r}; check the spelling of {path!r}.")
    return getattr(module, name)


def bind_arguments(cls: type, arguments: Mapping[str, Any], source: Any) -> dict[str, Any]:
    """``arguments`` checked against ``cls.__init__``'s own signature (unknown or missing names refused)."""
    arguments = dict(arguments)
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as err:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise UntrustedClassError(
            f"{source}: the stored arguments do not fit {class_path(cls)} ({err}); it accepts {accepted}. "
            "The file was written by another version of the class, or edited."
        ) from None
    return arguments


def _lookup(path: str, base: type, expected: type | None) -> type | None:
    if path in _ALLOWED:
        return _ALLOWED[path]
    if expected is not None:
        if path == class_path(expected) or _same_public_name(path, expected):
            return expected
        existing = _already_imported(path)
        if inspect.isclass(existing) and issubclass(existing, expected):
            return existing  # a subclass of what the caller asked for, imported by the caller's code
    if path in _trusted_names(base):
        module_name, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module_name), name, None)
    return None


def _trusted_names(base: type) -> frozenset[str]:
    import lightning as L

    if issubclass(base, L.LightningDataModule):
        return TRUSTED_DATAMODULES
    return TRUSTED_MODULES


def _same_public_name(path: str, cls: type) -> bool:
    """``nl_lightning.models.TransformerLM`` (as LightningCLI records it) is ``...models.lm.TransformerLM``."""
    module_name, _, name = path.rpartition(".")
    return name == cls.__qualname__ and getattr(sys.modules.get(module_name), name, None) is cls


def _already_imported(path: str) -> Any:
    """The object at ``path`` if its module is imported already (nothing is imported here)."""
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)
    return getattr(module, name, None) if module is not None else None
