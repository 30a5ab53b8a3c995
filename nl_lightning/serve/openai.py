"""The OpenAI wire format of ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``.

Requests are validated here, with the server's limits, like ``/predict`` (unknown or unsupported
parameters are 422s that say what is supported); a chat's messages are rendered through the
model's chat template (``nl_lightning.data.chat``) and encoded in validation, so a too-long
conversation is a 422 too. Chat answers and chunks are LitServe's own ``OpenAISpec`` models
(``litserve.specs.openai``); text completions, which LitServe lacks, follow OpenAI's reference.
"""

import time
from typing import Annotated, Any, Literal

from litserve.specs.openai import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionStreamingChoice,
    ChatMessage,
    ChoiceDelta,
    UsageInfo,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from nl_lightning.data.chat import ChatTemplateError, render_chat
from nl_lightning.data.tokenizer import BYTES, TextCodec
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.config import ServeLimits
from nl_lightning.serve.schemas import ServeRequest, encode_prompt

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextPart(BaseModel):
    """One text part of a message's content (``{"type": "text", "text": ...}``)."""

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """A chat message with text content (a string or text parts)."""

    model_config = ConfigDict(extra="ignore")  # name, tool_call_id...: accepted, unused
    role: Role
    content: str | list[TextPart]

    def text(self) -> str:
        """The content as one string."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""

    include_usage: bool = False


class Encoded(list):
    """Token ids that remember the text they came from (a prompt or a rendered chat)."""


def openai_schemas(model_id: str, signature: ModelSignature, limits: ServeLimits,
                   codec: TextCodec) -> tuple[type[ServeRequest], type[ServeRequest]]:
    """(completions request, chat request) of this server."""
    vocab, max_prompt = signature.vocab_size, limits.max_prompt_tokens or signature.max_seq_len or 1024
    unit = "bytes (tokens)" if codec is BYTES else "tokens"
    stop_item = Annotated[str, Field(min_length=1, max_length=64)]

    class Settings(ServeRequest):
        model: str = Field(description=f"The served model: {model_id!r} (GET /v1/models)")
        max_tokens: int = Field(limits.default_new_tokens, strict=True, ge=1, le=limits.max_new_tokens)
        temperature: float = Field(limits.default_temperature, ge=0.0, le=limits.max_temperature, allow_inf_nan=False)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        top_k: int | None = Field(None, strict=True, ge=1, le=vocab, description="Not in OpenAI's API: send it in "
                                                                                 "extra_body")
        n: int = Field(1, description="Choices per request: this server returns one")
        stop: stop_item | list[stop_item] | None = Field(None, description=f"Up to {limits.max_stop} strings")
        stream: bool = False
        stream_options: StreamOptions | None = None
        seed: int | None = Field(None, strict=True, ge=0, lt=2**63)
        user: str | None = None
        presence_penalty: float = Field(0.0, description="Only 0 (not supported)")
        frequency_penalty: float = Field(0.0, description="Only 0 (not supported)")

        @field_validator("n")
        @classmethod
        def _one(cls, n: int) -> int:
            if n != 1:
                raise PydanticCustomError("n_unsupported", "n={n}: this server returns one choice per request; send "
                                          "n=1 (and several requests for several samples)", {"n": n})
            return n

        @field_validator("presence_penalty", "frequency_penalty")
        @classmethod
        def _no_penalty(cls, value: float) -> float:
            if value != 0.0:
                raise PydanticCustomError("penalty_unsupported", "penalties are not supported; leave it at 0")
            return value

        @field_validator("stop")
        @classmethod
        def _stops(cls, stop: Any) -> list[str]:
            stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
            if len(stops) > limits.max_stop:
                raise PydanticCustomError("too_many_stops", "{n} stop strings; the server takes at most {limit} "
                                          "(limits.max_stop)", {"n": len(stops), "limit": limits.max_stop})
            return stops

        def generation(self, ids: list[int]) -> dict[str, Any]:
            return {"tokens": ids, "max_new_tokens": self.max_tokens, "temperature": self.temperature,
                    "top_k": self.top_k, "top_p": None if self.top_p == 1.0 else self.top_p, "seed": self.seed,
                    "stop": self.stop or [], "request_id": self._request_id}

        @property
        def include_usage(self) -> bool:
            return bool(self.stream_options and self.stream_options.include_usage)

    class CompletionRequest(Settings):
        prompt: str | list[Annotated[int, Field(strict=True, ge=0, lt=vocab)]] = Field(
            description=f"Text, or token ids: 1 to {max_prompt} tokens")

        @field_validator("prompt")
        @classmethod
        def _encode(cls, prompt: str | list[int]) -> list[int]:
            if isinstance(prompt, list):
                if not 1 <= len(prompt) <= max_prompt:
                    raise PydanticCustomError("prompt_length", "prompt has {n} token ids; the server takes 1 to "
                                              "{limit} (limits.max_prompt_tokens)", {"n": len(prompt), "limit": max_prompt})
                return prompt
            return Encoded(encode_prompt(codec, prompt, max_prompt, unit))

    class ChatRequest(Settings):
        messages: list[Message] = Field(min_length=1)
        max_completion_tokens: int | None = Field(None, strict=True, ge=1, le=limits.max_new_tokens,
                                                  description="Overrides max_tokens")

        @field_validator("messages")
        @classmethod
        def _render(cls, messages: list[Message]) -> list[Message]:
            try:
                prompt = render_chat(codec, [{"role": m.role, "content": m.text()} for m in messages])
            except ChatTemplateError as err:
                raise PydanticCustomError("chat_template", str(err)) from None
            messages = Encoded(messages)
            messages.ids = encode_prompt(codec, prompt, max_prompt, unit, "the conversation (chat template applied)")
            return messages

        def generation(self, ids: list[int]) -> dict[str, Any]:
            settings = super().generation(ids)
            if self.max_completion_tokens is not None:
                settings["max_new_tokens"] = self.max_completion_tokens
            return settings

    return CompletionRequest, ChatRequest


def prompt_ids(request: Any) -> list[int]:
    """The validated prompt's ids (completions: ``prompt``; chat: the rendered ``messages``)."""
    return request.messages.ids if hasattr(request, "messages") else list(request.prompt)


# ---- answers ----------------------------------------------------------------------------------
def usage(final: dict[str, Any]) -> dict[str, int]:
    """OpenAI's ``usage`` from a generation's last event."""
    prompt, completion = final["prompt_tokens"], final["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(uid: str, model: str, text: str, final: dict[str, Any]) -> dict[str, Any]:
    """A whole ``text_completion``."""
    return {"id": f"cmpl-{uid}", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": final["finish_reason"]}],
            "usage": usage(final)}


def completion_chunk(uid: str, model: str, text: str, finish: str | None, usage_: dict | None = None) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk (or, with ``usage_``, the usage chunk without choices)."""
    choices = [] if usage_ is not None else [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
    chunk = {"id": f"cmpl-{uid}", "object": "text_completion", "created": int(time.time()), "model": model,
             "choices": choices}
    return {**chunk, "usage": usage_} if usage_ is not None else chunk


def chat_completion(uid: str, model: str, text: str, final: dict[str, Any]) -> str:
    """A whole ``chat.completion`` (LitServe's model), as JSON."""
    choice = ChatCompletionResponseChoice(index=0, message=ChatMessage(role="assistant", content=text),
                                          finish_reason=final["finish_reason"])
    return ChatCompletionResponse(id=f"chatcmpl-{uid}", model=model, choices=[choice],
                                  usage=UsageInfo(**usage(final))).model_dump_json()


def chat_chunk(uid: str, model: str, delta: ChoiceDelta | None, finish: str | None,
               usage_: dict | None = None) -> str:
    """One ``chat.completion.chunk`` (LitServe's model), as JSON; ``delta=None``: the usage chunk."""
    choices = [] if delta is None else [ChatCompletionStreamingChoice(index=0, delta=delta, finish_reason=finish)]
    chunk = ChatCompletionChunk(id=f"chatcmpl-{uid}", model=model, choices=choices,
                                usage=UsageInfo(**usage_) if usage_ else None)
    return chunk.model_dump_json()


def models(model_id: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the one served model."""
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                        "owned_by": "nl_lightning"}]}
