"""The one error policy: every problem with the user's input is an ``NLUserError``.

``nl-lightning`` prints such an error as one line (the message says what is wrong and the fix);
anything else is a bug and keeps its traceback. Subclasses also derive from the built-in error
a Python caller would expect (``ValueError`` for a bad value, ``FileNotFoundError`` for a missing
file...), so ``except ValueError`` keeps working in user code.
"""

from __future__ import annotations

__all__ = ["ConfigError", "NLUserError"]


class NLUserError(Exception):
    """Base of the errors caused by input (configs, arguments, files, checkpoints, environment)."""


class ConfigError(NLUserError, ValueError):
    """A configuration value or argument that cannot be used; the message names it and the fix."""
