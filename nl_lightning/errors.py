"""The one error policy: every problem with the user's input is an ``NLUserError``.

``nl-lightning`` prints such an error as one line (the message says what is wrong and the fix);
anything else is a bug and keeps its traceback. Subclasses also derive from the built-in error
a Python caller would expect (``ValueError`` for a bad value, ``FileNotFoundError`` for a missing
file...), so ``except ValueError`` keeps working in user code. Modules define their own subclass
(``CheckpointError``, ``ShardError``, ...) where a specific name helps a caller catch it.
"""

from __future__ import annotations

import re

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MissingFileError",
    "MissingPackageError",
    "NLUserError",
    "NotAFileError",
    "SetupError",
    "WrongTypeError",
    "parse_error_summary",
]


class NLUserError(Exception):
    """Base of the errors caused by input (configs, arguments, files, checkpoints, environment)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        global _last_created
        _last_created = self  # see ``wrapped_user_error``


_last_created: NLUserError | None = None


def wrapped_user_error(err: BaseException) -> NLUserError | None:
    """The user error that ``err`` reports without chaining it, if any.

    jsonargparse < 4.42 (the floor is 4.39: litgpt pins <= 4.41) tries each type of a ``Union``; when a
    class's ``__init__`` raised our error there, it raises a new ``ValueError`` whose message quotes
    that error's text but drops the error itself. The newest ``NLUserError`` made in this process is
    that error when its message appears in ``err``'s."""
    last, tb = _last_created, err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    raised_by_jsonargparse = tb is not None and "jsonargparse" in tb.tb_frame.f_code.co_filename
    if last is None or not raised_by_jsonargparse or not str(last) or str(last) not in str(err):
        return None
    return last


class ConfigError(NLUserError, ValueError):
    """A configuration value or argument that cannot be used; the message names it and the fix."""


class DataError(NLUserError, ValueError):
    """Data that the pipeline or model cannot use: a file's contents, a batch, a tensor's shape."""


class WrongTypeError(NLUserError, TypeError):
    """An argument or object of the wrong kind (a model without ``generate()``, a list for a dict)."""


class MissingFileError(NLUserError, FileNotFoundError):
    """A path the user named (a data file, a checkpoint, a run folder) that does not exist."""


class NotAFileError(NLUserError, IsADirectoryError):
    """A folder where a file belongs (a data file, a checkpoint)."""


class MissingPackageError(NLUserError, ModuleNotFoundError):
    """An optional package that this feature needs is not installed; the message names the extra."""


class CheckpointError(NLUserError, ValueError):
    """A checkpoint that is missing, unreadable, corrupt, untrusted or not an nl_lightning model
    (defined here, not in ``models.checkpoint``, so that every module reading one can raise it)."""


class SetupError(NLUserError, RuntimeError):
    """The environment or the run's set-up cannot do what was asked (an unset variable, no
    validation data for a step that needs it, a kernel this device lacks)."""


_NOISE = re.compile(r"^(Expected a <class 'NoneType'>|Does not validate against any of the Union subtypes|Subtypes:|"
                    r"Errors:|Given value)")


def parse_error_summary(message: str) -> str:
    """The errors that matter in a jsonargparse report, each with the key it belongs to:
    ``model.config: Option 'n_layerz' is not accepted`` instead of 15 lines of Union subtypes.

    The one cleaner of parse-error noise: ``nl-lightning`` prints it, and the tune config check
    quotes it when a searched key does not fit the fit config.
    """
    keys: list[tuple[int, str]] = []
    found: list[str] = []
    for raw in message.splitlines():
        indent = len(raw) - len(raw.lstrip(" -"))
        line = raw.strip().removeprefix("- ").strip()
        keys = [(i, k) for i, k in keys if i < indent]
        key = re.match(r'^Parser key "([^"]+)":\s*(.*)$', line)
        if key:
            keys.append((indent, key.group(1)))
            line = key.group(2)
        line = re.sub(r"^Problem with given class_path '[^']+':\s*", "", line)
        if line and not _NOISE.match(line) and not line.startswith("Parser key"):
            where = ".".join(k for _, k in keys)
            found.append(f"{where}: {line}" if where else line)
    return "; ".join(dict.fromkeys(found)) or " ".join(message.split())
