"""``Family``: what nl_lightning knows about one kind of published checkpoint (Llama-like, GPT-2,
BERT, LitGPT): its config fields <-> ``TransformerConfig``, and its tensor names (``rules``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nl_lightning.models.config import TransformerConfig
from nl_lightning.pretrained.fields import ConfigFields
from nl_lightning.pretrained.rules import Rule

__all__ = ["Family", "Parts"]


@dataclass(frozen=True)
class Parts:
    """The optional parts a classifier takes from a folder: BERT's pooler and a classification head."""

    pooler: bool = False
    head: bool = False


@dataclass(frozen=True)
class Family:
    """One checkpoint format. ``read_config`` maps the folder's config to ``TransformerConfig``
    fields (refusing what we cannot compute); ``write_config`` is the reverse (None: import only);
    ``rules`` lists tensor correspondences; ``canonical`` maps legacy / prefix-less tensor names to
    the ones ``rules`` use; ``unused`` says why a tensor the rules do not take may still be in the
    file (a buffer, a tied copy, a head this task has no use for: ``""`` = silently), or None if it
    may not."""

    name: str
    task: Literal["lm", "classifier"]
    architectures: tuple[str, ...]
    read_config: Callable[[ConfigFields], dict[str, Any]]
    write_config: Callable[[TransformerConfig, dict[str, Any]], dict[str, Any]] | None
    rules: Callable[[TransformerConfig, Parts], list[Rule]]
    canonical: Callable[[str], str] = lambda name: name
    unused: Callable[[str, TransformerConfig, Parts], str | None] = lambda name, config, parts: None
