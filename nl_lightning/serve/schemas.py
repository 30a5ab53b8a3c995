"""Request and response schemas (pydantic) of ``/predict`` and ``/batch_predict``, built per model from
its signature and limits (the OpenAI routes' are in ``serve.openai``).

Every body is validated against the request schema in the HTTP process (``parse_body``), so
malformed input is a 4xx there and never reaches an inference worker. The limits are part of the
schema (``maxItems``, ``maximum``...), so ``/info`` and ``/docs`` show exactly what the server
accepts. A validated request crosses to the worker as arrays (an input) or token ids (a prompt)
with its request id. The response schemas document each task's answer for ``/docs`` and ``/info``;
the worker writes the JSON itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from nl_lightning.data.tokenizer import BYTES, TextCodec
from nl_lightning.errors import ConfigError
from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.config import ServeLimits
from nl_lightning.serve.heap import gc_paused

#: Set by ``RequestContextMiddleware`` for the request being handled (HTTP process).
REQUEST_ID: ContextVar[str | None] = ContextVar("nl_serve_request_id", default=None)
T = TypeVar("T", bound=BaseModel)
FLOAT32_MAX = float(3.4028234663852886e38)
Finite32 = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class ServeRequest(BaseModel):
    """Base of every request: unknown fields are errors, and the request id travels with it."""

    model_config = ConfigDict(extra="forbid")
    _request_id: str | None = PrivateAttr(default=None)
    fast_twin: ClassVar[type[ServeRequest] | None] = None
    """A schema that accepts exactly the same bodies with every check inside pydantic-core (no Python
    validator per row), which ``parse_body`` tries first; the schema itself words the errors."""

    def model_post_init(self, context: Any) -> None:
        self._request_id = REQUEST_ID.get()

    def __repr__(self) -> str:
        # LitServe logs every request with an f-string (evaluated even when debug logging is off): a
        # short repr keeps inputs out of logs and costs ~1 us instead of ~70 us for 128 floats.
        return f"{type(self).__name__}(request_id={self._request_id!r})"

    __str__ = __repr__


async def parse_body(request: Request, schema: type[T]) -> T:
    """The JSON body of ``request`` validated by ``schema`` in one pass of pydantic's parser (twice as
    fast as ``json.loads`` then validation, which FastAPI does); errors are FastAPI's
    ``RequestValidationError`` (locations under ``body``), so the same handlers word them."""
    content_type = request.headers.get("content-type")
    body = await request.body()
    if (content_type is not None and "json" not in content_type) or (content_type is None and body):
        raise RequestValidationError([{"type": "content_type", "loc": ("body",), "msg": "not JSON", "input": None}])
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    fast = getattr(schema, "fast_twin", None)
    if fast is not None:  # a /batch_predict of 256 rows validates in ~2/3 of the time
        try:
            with gc_paused():
                return fast.model_validate_json(body)  # type: ignore[return-value]
        except ValidationError:
            pass  # validated again below, by the schema whose messages name the fix
    try:
        with gc_paused():
            return schema.model_validate_json(body)
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]) from None


class ServeResponse(BaseModel):
    """Base of every ``/predict`` answer: which model version computed it."""

    version: str = Field(description="The model version that answered this request")


def response_schema(signature: ModelSignature, labels: tuple[str, ...] | None = None) -> type[ServeResponse]:
    """The ``/predict`` answer of this model (``label_name`` only when the server names its classes)."""
    if signature.task == "lm":
        class GenerateResponse(ServeResponse):
            text: str | None = Field(description="The new tokens as text, through the model's tokenizer or its "
                                                 "byte vocabulary (null for other vocabularies)")
            tokens: list[int] = Field(description="The new token ids, prompt and stop token excluded")
            finish_reason: Literal["stop", "length"] = Field(
                description="stop: an end-of-text token or a stop string; length: max_new_tokens reached")
            prompt_tokens: int
            completion_tokens: int

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


def batch_request_schema(row: type[ServeRequest], limits: ServeLimits) -> type[ServeRequest]:
    """The ``/batch_predict`` body: up to ``limits.max_batch_rows`` ``/predict`` bodies, each validated as one."""
    n = limits.max_batch_rows

    class BatchRequest(ServeRequest):
        rows: list[row] = Field(min_length=1, max_length=n,  # type: ignore[valid-type]
                                description=f"1 to {n} /predict bodies, answered in order")

    if row.fast_twin is not None:  # its rows without a request id each: no Python runs per row
        from pydantic import create_model

        fields = {name: (info.annotation, info) for name, info in row.fast_twin.model_fields.items()}
        fast_row = create_model("FastRow", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]

        class FastBatchRequest(ServeRequest):
            rows: list[fast_row] = Field(min_length=1, max_length=n)  # type: ignore[valid-type]

        BatchRequest.fast_twin = FastBatchRequest
    return BatchRequest


def batch_response_schema(answer: type[ServeResponse]) -> type[BaseModel]:
    """The ``/batch_predict`` answer: one ``/predict`` answer per row (without its version), and the version."""
    fields = {name: (info.annotation, info) for name, info in answer.model_fields.items() if name != "version"}
    from pydantic import create_model

    row = create_model(f"{answer.__name__}Row", **fields)  # type: ignore[call-overload]

    class BatchResponse(ServeResponse):
        predictions: list[row] = Field(description="One answer per row, in the order of `rows`")  # type: ignore[valid-type]

    return BatchResponse


def request_schema(signature: ModelSignature, limits: ServeLimits, codec: TextCodec | None = None) -> type[ServeRequest]:
    """The ``/predict`` body of this model: generation for an LM (``codec``: its text codec, default
    bytes), an input sequence otherwise."""
    if signature.task == "lm":
        return _generate_request(signature, limits, codec or BYTES)
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

    shape = f"[[f1, ..., f{input_dim}], ...]: 1 to {max_len} steps of input_dim={input_dim} features"

    class FastFeaturesRequest(ServeRequest):  # the two validators below as list lengths
        features: Annotated[list[Annotated[list[Finite32], Field(min_length=input_dim, max_length=input_dim)]],
                            Field(min_length=1, max_length=max_len)]

    class FeaturesRequest(ServeRequest):
        features: features_type
        fast_twin = FastFeaturesRequest if input_dim > 1 else None

        @field_validator("features", mode="before")
        @classmethod
        def _not_flat(cls, rows: Any) -> Any:
            if input_dim > 1 and isinstance(rows, list) and rows and all(_is_number(r) for r in rows):
                raise PydanticCustomError(
                    "flat_features", "got a flat list of {n} numbers; this model takes {shape} (input_schema in "
                    "GET /info)", {"n": len(rows), "shape": shape})
            return rows

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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def text_codec(signature: ModelSignature, codec: TextCodec) -> TextCodec | None:
    """The codec that turns this LM's text into ids, or None when text is not possible (a vocabulary
    of the user's own ids, neither a tokenizer nor bytes)."""
    return codec if codec is not BYTES or signature.vocab_size >= 256 else None


def _generate_request(signature: ModelSignature, limits: ServeLimits, codec: TextCodec) -> type[ServeRequest]:
    vocab = signature.vocab_size
    max_prompt = limits.max_prompt_tokens or signature.max_seq_len or 1024
    text = text_codec(signature, codec)
    unit = "bytes (tokens)" if codec is BYTES else "tokens"
    top_k_default = None if limits.default_top_k is None else min(limits.default_top_k, vocab)

    class GenerateRequest(ServeRequest):
        prompt: str | None = Field(
            None, description=f"Text to continue: 1 to {max_prompt} {unit} through the model's "
            f"{'byte vocabulary' if codec is BYTES else 'tokenizer'}" if text else
            "Not available: this model's vocabulary is neither a tokenizer nor bytes; send tokens.")
        tokens: _token_list(vocab, max_prompt, f"Prompt token ids instead of text: 1 to {max_prompt} in [0, {vocab})") | None = None  # type: ignore[valid-type]
        max_new_tokens: int = Field(limits.default_new_tokens, strict=True, ge=1, le=limits.max_new_tokens)
        temperature: float = Field(limits.default_temperature, ge=0.0, le=limits.max_temperature,
                                   allow_inf_nan=False, description="0 = greedy")
        top_k: int | None = Field(top_k_default, strict=True, ge=1, le=vocab)
        top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling: the smallest set of tokens "
                                                                      "whose probability reaches top_p")
        seed: int | None = Field(None, strict=True, ge=0, lt=2**63, description="Fixes the samples")
        stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
            None, max_length=limits.max_stop, description="Strings that end the answer (not included in it)")
        stream: bool = Field(False, description="Stream newline-delimited JSON events as tokens are generated")

        @field_validator("prompt")
        @classmethod
        def _prompt(cls, prompt: str | None) -> str | None:
            if prompt is None:
                return prompt
            if text is None:
                raise PydanticCustomError(
                    "prompt_unsupported", "prompt text needs a tokenizer or a byte vocabulary (256 tokens); this model "
                    "has vocab_size={vocab} and neither: send token ids in `tokens`", {"vocab": vocab})
            return EncodedText(prompt, encode_prompt(text, prompt, max_prompt, unit))

        @model_validator(mode="after")
        def _one_prompt(self) -> "GenerateRequest":
            if (self.prompt is None) == (self.tokens is None):
                raise PydanticCustomError(
                    "prompt_choice", "give exactly one of `prompt` (text) or `tokens` (ids), got "
                    + ("both" if self.prompt is not None else "neither"))
            return self

        def generation(self) -> dict[str, Any]:
            """What the worker needs: the prompt ids and the settings."""
            ids = self.tokens if self.tokens is not None else self.prompt.ids  # type: ignore[union-attr]
            return {"tokens": ids, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                    "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed, "stop": self.stop or [],
                    "request_id": self._request_id}

    return GenerateRequest


class EncodedText(str):
    """A validated prompt that keeps the token ids it was encoded to (encoded once, in validation)."""

    ids: list[int]

    def __new__(cls, text: str, ids: list[int]) -> "EncodedText":
        value = super().__new__(cls, text)
        value.ids = ids
        return value


def encode_prompt(codec: TextCodec, prompt: str, limit: int, unit: str = "tokens", field: str = "prompt") -> list[int]:
    """``prompt``'s ids, refused when there are none or more than ``limit``."""
    ids = codec.encode(prompt)
    if not 1 <= len(ids) <= limit:
        raise PydanticCustomError(
            "prompt_length", "{field} is {size} {unit}; the server takes 1 to {limit} (limits.max_prompt_tokens)",
            {"field": field, "size": len(ids), "unit": unit, "limit": limit})
    return ids
