"""Chat messages -> one prompt string, through the model's chat template (or a plain default).

A template comes from the model folder (``tokenizer_config.json`` / ``chat_template.jinja``, kept by
the codec, see ``nl_lightning.data.tokenizer``), so it is untrusted input: it is compiled in
Jinja's ``ImmutableSandboxedEnvironment`` (no access to Python internals, no mutation of the
messages) with the names Hugging Face templates expect: ``messages``, ``add_generation_prompt``,
``bos_token``, ``eos_token``, ``raise_exception`` and ``strftime_now``.

Models without a template use :data:`DEFAULT_CHAT_TEMPLATE`, one line per message and an open
``assistant:`` line to continue::

    system: You are terse.
    user: Hi!
    assistant:
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from nl_lightning.data.tokenizer import TextCodec
from nl_lightning.errors import NLUserError

__all__ = ["DEFAULT_CHAT_TEMPLATE", "ChatTemplateError", "render_chat"]

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
"""The template of models that bring none: ``role: content`` lines, then ``assistant:``."""


class ChatTemplateError(NLUserError, ValueError):
    """A conversation the template refuses (its ``raise_exception``) or a template that cannot render."""


def render_chat(codec: TextCodec, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """The prompt text of ``messages`` (``[{"role": ..., "content": ...}, ...]``) under ``codec``'s template."""
    from jinja2 import TemplateError

    template = _compile(codec.chat_template or DEFAULT_CHAT_TEMPLATE)
    try:
        return template.render(messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
                               bos_token=codec.bos_token or "", eos_token=codec.eos_token or "")
    except ChatTemplateError:
        raise
    except TemplateError as err:  # SecurityError, UndefinedError...: the template, not the caller
        raise ChatTemplateError(f"The model's chat template failed to render these messages: {err}") from None


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: time.strftime(fmt))
    try:
        return env.from_string(source)
    except TemplateError as err:
        raise ChatTemplateError(f"The model's chat template is not valid Jinja ({err}); fix chat_template in the "
                                "model folder's tokenizer_config.json or chat_template.jinja.") from None


def _raise(message: str) -> None:
    raise ChatTemplateError(f"The model's chat template refuses this conversation: {message}")
