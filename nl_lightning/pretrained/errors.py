"""The error a pretrained model folder raises: it names the file, tensor or field, and the fix."""

from __future__ import annotations

from nl_lightning.errors import NLUserError

__all__ = ["PretrainedError", "refuse"]


class PretrainedError(NLUserError, ValueError):
    """A model folder (or a model to export) that nl_lightning cannot read or write faithfully:
    a missing or corrupt file, an architecture or config field we do not compute, a tensor that
    is missing, unexpected or of the wrong shape. Nothing is written when it is raised."""


def refuse(field: str, value: object, supported: str, where: str = "config.json") -> PretrainedError:
    """``<where>: <field>=<value> is not supported; <supported>.`` — for fields we cannot honour."""
    return PretrainedError(f"{where}: {field}={value!r} is not supported; {supported}.")
