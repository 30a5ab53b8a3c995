"""Request and response schemas (pydantic) of ``/predict``, built per model from its signature and limits.

FastAPI validates every ``/predict`` body against the request schema in the HTTP process, so
malformed input is a 4xx there and never reaches an inference worker. The limits are part of the
schema (``maxItems``, ``maximum``...), so ``/info`` and ``/docs`` show exactly what the server
accepts. A validated request crosses to the worker as a plain dict carrying its request id. The
response schema documents each task's answer and lets FastAPI write it to JSON in pydantic's
serializer rather than walking it with ``jsonable_encoder``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nl_lightning.errors import ConfigError
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.config import ServeLimits

#: Set by ``RequestContextMiddleware`` for the request being handled (HTTP process).
REQUEST_ID: ContextVar[str | None] = ContextVar("nl_serve_request_id", default=None)
FLOAT32_MAX = float(3.4028234663852886e38)
Finite32 = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class ServeRequest(BaseModel):
    """Base of every request: unknown fields are errors, and the request id travels with it."""

    model_config = ConfigDict(extra="forbid")
    _request_id: str | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self._request_id = REQUEST_ID.get()

    def __repr__(self) -> str:
        # LitServe logs every request with an f-string (evaluated even when debug logging is off): a
        # short repr keeps inputs out of logs and costs ~1 us instead of ~70 us for 128 floats.
        return f"{type(self).__name__}(request_id={self._request_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled into LitServe's request queue as a plain dict: the worker needs no schema class
        # (these are built per server and would not be importable there) and never re-validates.
        return dict, ({**self.__dict__, "request_id": self._request_id},)


class ServeResponse(BaseModel):
    """Base of every ``/predict`` answer: which model version computed it."""

    version: str = Field(description="The model version that answered this request")


def response_schema(signature: ModelSignature, labels: tuple[str, ...] | None = None) -> type[ServeResponse]:
    """The ``/predict`` answer of this model (``label_name`` only when the server names its classes)."""
    if signature.task == "lm":
        class GenerateResponse(ServeResponse):
            text: str | None = Field(description="The new tokens as UTF-8 text (byte vocabularies; else null)")
            tokens: list[int] = Field(description="The new token ids, prompt excluded")

        return GenerateResponse
    if signature.task == "regression":
        class RegressionResponse(ServeResponse):
            values: list[float] = Field(description=f"The model's {signature.num_outputs} predicted values")

        return RegressionResponse

    class ClassificationResponse(ServeResponse):
        probabilities: list[float] = Field(description=f"Softmax over the {signature.num_outputs} classes")
        label: int = Field(description="The most probable class id")

    if not labels:
        return ClassificationResponse

    class NamedClassificationResponse(ClassificationResponse):
        label_name: str = Field(description="The name of `label` (the server's `labels`)")

    return NamedClassificationResponse


def request_schema(signature: ModelSignature, limits: ServeLimits) -> type[ServeRequest]:
    """The ``/predict`` body of this model: generation for an LM, an input sequence otherwise."""
    if signature.task == "lm":
        return _generate_request(signature, limits)
    max_len = limits.max_seq_len or signature.max_seq_len
    if max_len is None:
        raise ConfigError(
            "This export records no max_seq_len (an export of an older nl_lightning): set limits.max_seq_len in "
            "the serve config to bound request length, or re-export the model."
        )
    if signature.inputs == "tokens":
        return _tokens_request(signature.vocab_size, max_len)
    return _features_request(signature.input_dim, max_len)


def _token_list(vocab_size: int, max_len: int, what: str) -> Any:
    token = Annotated[int, Field(strict=True, ge=0, lt=vocab_size)]
    return Annotated[list[token], Field(min_length=1, max_length=max_len, description=what)]


def _tokens_request(vocab_size: int, max_len: int) -> type[ServeRequest]:
    class TokensRequest(ServeRequest):
        tokens: _token_list(vocab_size, max_len, f"1 to {max_len} token ids in [0, {vocab_size})")  # type: ignore[valid-type]

    return TokensRequest


def _features_request(input_dim: int, max_len: int) -> type[ServeRequest]:
    if input_dim == 1:  # tabular rows: (F,) features, one token each
        what = f"one row of 1 to {max_len} finite float32 features"
        features_type: Any = Annotated[list[Finite32], Field(min_length=1, max_length=max_len, description=what)]
    else:
        what = f"1 to {max_len} steps of {input_dim} finite float32 features: [[f1, ..., f{input_dim}], ...]"
        features_type = Annotated[list[list[Finite32]], Field(min_length=1, max_length=max_len, description=what)]

    class FeaturesRequest(ServeRequest):
        features: features_type

        @field_validator("features")
        @classmethod
        def _width(cls, rows: list) -> list:
            for i, row in enumerate(rows):
                if isinstance(row, list) and len(row) != input_dim:
                    raise PydanticCustomError(
                        "feature_width", "features[{index}] has {got} values; the model takes input_dim={want} "
                        "features per step", {"index": i, "got": len(row), "want": input_dim},
                    )
            return rows

    return FeaturesRequest


def _generate_request(signature: ModelSignature, limits: ServeLimits) -> type[ServeRequest]:
    vocab = signature.vocab_size
    max_prompt = limits.max_prompt_tokens or signature.max_seq_len or 1024
    bytes_vocab = vocab >= 256
    top_k_default = None if limits.default_top_k is None else min(limits.default_top_k, vocab)

    class GenerateRequest(ServeRequest):
        prompt: str | None = Field(
            None, description=f"Text to continue; its UTF-8 bytes (1 to {max_prompt}) are the tokens."
            if bytes_vocab else "Not available: this model's vocabulary is not bytes; send tokens.")
        tokens: _token_list(vocab, max_prompt, f"Prompt token ids instead of text: 1 to {max_prompt} in [0, {vocab})") | None = None  # type: ignore[valid-type]
        max_new_tokens: int = Field(limits.default_new_tokens, strict=True, ge=1, le=limits.max_new_tokens)
        temperature: float = Field(limits.default_temperature, ge=0.0, le=limits.max_temperature,
                                   allow_inf_nan=False, description="0 = greedy")
        top_k: int | None = Field(top_k_default, strict=True, ge=1, le=vocab)
        seed: int | None = Field(None, strict=True, ge=0, lt=2**63, description="Fixes the samples")

        @field_validator("prompt")
        @classmethod
        def _prompt(cls, prompt: str | None) -> str | None:
            if prompt is None:
                return prompt
            if not bytes_vocab:
                raise PydanticCustomError(
                    "prompt_unsupported", "prompt text needs a byte vocabulary (256 tokens); this model has "
                    "vocab_size={vocab}: send token ids in `tokens`", {"vocab": vocab})
            size = len(prompt.encode("utf-8"))
            if not 1 <= size <= max_prompt:
                raise PydanticCustomError(
                    "prompt_length", "prompt is {size} bytes (tokens); the server takes 1 to {limit} "
                    "(limits.max_prompt_tokens)", {"size": size, "limit": max_prompt})
            return prompt

        @model_validator(mode="after")
        def _one_prompt(self) -> "GenerateRequest":
            if (self.prompt is None) == (self.tokens is None):
                raise PydanticCustomError(
                    "prompt_choice", "give exactly one of `prompt` (text) or `tokens` (ids), got "
                    + ("both" if self.prompt is not None else "neither"))
            return self

    return GenerateRequest
