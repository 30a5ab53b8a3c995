"""Request schemas of the inputs the HTTP tests do not serve: token classifiers, tabular rows, small vocabularies."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from nl_lightning.export.signature import ModelSignature
from nl_lightning.serve.config import ServeLimits
from nl_lightning.serve.schemas import REQUEST_ID, request_schema, response_schema


def errors(schema, body) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as err:
        schema.model_validate(body)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in err.value.errors()]


def test_token_classifier_takes_ids_below_the_vocabulary():
    schema = request_schema(ModelSignature("classification", 16, None, 8, 3), ServeLimits())
    assert schema.model_validate({"tokens": [0, 15, 3]}).tokens == [0, 15, 3]
    assert errors(schema, {"tokens": [1, 16]}) == [("tokens.1", "Input should be less than 16")]
    assert errors(schema, {"tokens": [1] * 9}) == [("tokens", "List should have at most 8 items after validation, not 9")]
    assert errors(schema, {"tokens": ["1"]}) == [("tokens.0", "Input should be a valid integer")]
    # the other input's field name is refused by name, and the model's own is asked for
    assert errors(schema, {"features": [[1.0]]}) == [
        ("tokens", "Field required"), ("features", "Extra inputs are not permitted")]


def test_tabular_models_take_one_flat_row():
    schema = request_schema(ModelSignature("regression", None, 1, 6, 2), ServeLimits())
    assert schema.model_validate({"features": [0.5, 1, 2]}).features == [0.5, 1.0, 2.0]
    assert errors(schema, {"features": [[0.5]]}) == [("features.0", "Input should be a valid number")]
    assert errors(schema, {"tokens": [1, 2]}) == [
        ("features", "Field required"), ("tokens", "Extra inputs are not permitted")]


def test_a_longer_limit_than_the_model_is_the_servers_choice():
    schema = request_schema(ModelSignature("classification", None, 2, None, 3), ServeLimits(max_seq_len=3))
    assert errors(schema, {"features": [[0.0, 0.0]] * 4}) == [
        ("features", "List should have at most 3 items after validation, not 4")]
    with pytest.raises(ValueError, match="set limits.max_seq_len in the serve config"):
        request_schema(ModelSignature("classification", None, 2, None, 3), ServeLimits())


def test_an_lm_without_a_byte_vocabulary_takes_ids_only():
    schema = request_schema(ModelSignature("lm", 32, None, 16, 32), ServeLimits())
    assert errors(schema, {"prompt": "hello"}) == [
        ("prompt", "prompt text needs a tokenizer or a byte vocabulary (256 tokens); this model has vocab_size=32 and "
                   "neither: send token ids in `tokens`")]
    request = schema.model_validate({"tokens": [1, 2]})
    assert request.top_k == 32  # the default top_k (40) is capped at the vocabulary


def validated_with_id(body: dict, request_id: str):
    """``body`` validated by a 2-feature classifier's schema while the middleware's id is ``request_id``."""
    schema = request_schema(ModelSignature("classification", None, 2, 4, 3), ServeLimits())
    token = REQUEST_ID.set(request_id)
    try:
        return schema.model_validate(body)
    finally:
        REQUEST_ID.reset(token)


def test_a_request_carries_the_id_the_middleware_gave_it():
    assert validated_with_id({"features": [[1.0, 2.0]]}, "req-1")._request_id == "req-1"


def test_a_request_prints_without_its_inputs():
    """LitServe formats every request into a debug log line: the repr names the request, not its data."""
    request = validated_with_id({"features": [[1.25, 2.5]]}, "req-7")
    assert str(request) == repr(request) == "FeaturesRequest(request_id='req-7')"


def test_each_task_answers_in_its_own_response_schema():
    classes = ModelSignature("classification", None, 2, 4, 3)
    answer = {"probabilities": [0.25, 0.5, 0.25], "label": 1, "version": "2"}
    assert response_schema(classes).model_validate(answer).model_dump() == answer
    named = response_schema(classes, ("a", "b", "c"))
    assert named.model_validate({**answer, "label_name": "b"}).label_name == "b"
    with pytest.raises(ValidationError, match="label_name"):
        named.model_validate(answer)
    assert set(response_schema(ModelSignature("regression", None, 2, 4, 2)).model_fields) == {"values", "version"}
    assert set(response_schema(ModelSignature("lm", 256, None, 16, 256)).model_fields) == {
        "text", "tokens", "finish_reason", "prompt_tokens", "completion_tokens", "version"}


def test_an_lm_prompt_is_counted_and_encoded_by_the_models_tokenizer(trained_tokenizer):
    from nl_lightning.data.tokenizer import load_codec

    codec = load_codec(trained_tokenizer)
    text = "The object of this statement is a value"
    limit = len(codec.encode(text))
    assert limit < len(text.encode())  # tokens, not bytes: a byte count would refuse this prompt
    schema = request_schema(ModelSignature("lm", 512, None, 64, 512), ServeLimits(max_prompt_tokens=limit), codec)
    assert schema.model_validate({"prompt": text}).generation()["tokens"] == codec.encode(text)
    assert errors(schema, {"prompt": text + " again"}) == [
        ("prompt", f"prompt is {len(codec.encode(text + ' again'))} tokens; the server takes 1 to {limit} "
                   "(limits.max_prompt_tokens)")]


def test_a_batch_request_validates_each_row_as_predict_does():
    from nl_lightning.serve.schemas import batch_request_schema

    row = request_schema(ModelSignature("classification", None, 2, 4, 3), ServeLimits())
    schema = batch_request_schema(row, ServeLimits(max_batch_rows=2))
    assert len(schema.model_validate({"rows": [{"features": [[1.0, 2.0]]}] * 2}).rows) == 2
    assert errors(schema, {"rows": [{"features": [[1.0, 2.0]]}, {"features": [[1.0]]}]}) == [
        ("rows.1.features", "features[0] has 1 values; the model takes input_dim=2 features per step")]
    assert errors(schema, {"rows": [{"features": [[1.0, 2.0]]}] * 3})[0][0] == "rows"


FEATURE_BODIES = [
    {"features": [[1.0, 2.0]]}, {"features": [[1.0, 2.0]] * 4}, {"features": [[1, -2]]},  # valid
    {"features": [[1.0, 2.0]] * 5}, {"features": []}, {"features": [1.0, 2.0]},  # too long, empty, flat
    {"features": [[1.0]]}, {"features": [[1.0, 2.0, 3.0]]}, {"features": [[1.0, 2.0], [1.0]]},  # widths
    {"features": [[1.0, "2.0"]]}, {"features": [[True, 2.0]]}, {"features": [[1e39, 2.0]]},  # strict, float32
    {"features": [[1.0, None]]}, {"features": [[1.0, 2.0]], "extra": 1}, {}, {"features": "1, 2"},
]


@pytest.mark.parametrize("body", FEATURE_BODIES)
def test_the_fast_twin_accepts_exactly_what_the_schema_accepts(body):
    """``parse_body`` answers from the twin when it accepts: it must never accept what the schema refuses,
    nor refuse (and so pay a second validation) what it accepts, row by row in a batch as well."""
    from nl_lightning.serve.schemas import batch_request_schema

    row = request_schema(ModelSignature("classification", None, 2, 4, 3), ServeLimits())
    batch = batch_request_schema(row, ServeLimits(max_batch_rows=2))
    for schema, value in ((row, body), (batch, {"rows": [{"features": [[0.5, 0.5]]}, body]})):
        assert schema.fast_twin is not None
        raw = json.dumps(value).encode()
        assert accepts(schema.fast_twin, raw) == accepts(schema, raw), (schema.__name__, value)


def test_parse_body_answers_from_the_twin_and_words_errors_with_the_schema(parse_json):
    from fastapi.exceptions import RequestValidationError

    schema = request_schema(ModelSignature("classification", None, 2, 4, 3), ServeLimits())
    assert type(parse_json(schema, {"features": [[1.0, 2.0]]})) is schema.fast_twin
    with pytest.raises(RequestValidationError) as err:
        parse_json(schema, {"features": [[1.0]]})
    assert err.value.errors()[0]["msg"] == "features[0] has 1 values; the model takes input_dim=2 features per step"


def accepts(schema, raw: bytes) -> bool:
    try:
        schema.model_validate_json(raw)
    except ValidationError:
        return False
    return True
