"""A real causal-LM server: prompt text or token ids in, generated text and ids out, within limits.

The last test stops it with SIGINT (Ctrl+C) and checks nothing is left behind.
"""

from __future__ import annotations

import signal

import pytest
import torch
from model_files import lm, save
from servers import ServerProcess, port_is_free

from nl_lightning.data.text import decode, encode

pytestmark = pytest.mark.slow
LIMITS = {"max_new_tokens": 16, "default_new_tokens": 8, "max_temperature": 1.5, "default_temperature": 0.0,
          "default_top_k": None, "max_prompt_tokens": 24}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = save(lm(0), tmp_path_factory.mktemp("lm") / "7" / "model.ckpt")
    return path, lm(0).eval()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    path, _ = model
    process = ServerProcess(tmp_path_factory.mktemp("server"), model_dir=str(path.parents[1]),
                            max_batch_size=4, batch_timeout=0.01, limits=LIMITS)
    try:
        yield process.start()
    finally:
        process.kill()


def greedy(model, ids: list[int], n: int) -> list[int]:
    return model.generate(torch.tensor([ids]), n, temperature=0.0, top_k=None)[0, len(ids):].tolist()


def test_prompt_text_is_continued_greedily_as_the_model_does(client, model):
    reply = client.post("/predict", {"prompt": "def f(x):", "max_new_tokens": 12})
    assert reply.status == 200, reply
    body = reply.json()
    expected = greedy(model[1], encode("def f(x):").tolist(), 12)
    assert body["tokens"] == expected and body["text"] == decode(expected) and body["version"] == "7"


def test_token_ids_and_defaults(client, model):
    body = client.post("/predict", {"tokens": [100, 101, 102]}).json()  # server defaults: 8 tokens, greedy
    assert body["tokens"] == greedy(model[1], [100, 101, 102], 8)


def test_seeded_sampling_is_reproducible(client):
    request = {"prompt": "abc", "temperature": 1.0, "top_k": 20, "seed": 1234, "max_new_tokens": 16}
    first, second = (client.post("/predict", request).json()["tokens"] for _ in range(2))
    assert first == second and len(first) == 16
    assert client.post("/predict", {**request, "seed": 99}).json()["tokens"] != first


@pytest.mark.parametrize("body, message", [
    ({"prompt": "hi", "max_new_tokens": 17}, "max_new_tokens: Input should be less than or equal to 16"),
    ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens: Input should be greater than or equal to 1"),
    ({"prompt": "hi", "temperature": 1.6}, "temperature: Input should be less than or equal to 1.5"),
    ({"prompt": "hi", "top_k": 257}, "top_k: Input should be less than or equal to 256"),
    ({"prompt": "x" * 25}, "prompt: prompt is 25 bytes (tokens); the server takes 1 to 24 (limits.max_prompt_tokens)"),
    ({"prompt": ""}, "prompt: prompt is 0 bytes (tokens); the server takes 1 to 24"),
    ({"tokens": [1] * 25}, "tokens: List should have at most 24 items"),
    ({"tokens": [1, 256]}, "tokens[1]: Input should be less than 256"),
    ({"tokens": [1, 2.5]}, "tokens[1]: Input should be a valid integer"),
    ({"prompt": "hi", "tokens": [1]}, "body: give exactly one of `prompt` (text) or `tokens` (ids), got both"),
    ({"max_new_tokens": 4}, "body: give exactly one of `prompt` (text) or `tokens` (ids), got neither"),
    ({"prompt": "hi", "seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"prompt": "hi", "stream": True}, "stream: unknown field; this endpoint takes ['prompt', 'tokens', "
                                       "'max_new_tokens', 'temperature', 'top_k', 'seed']"),
])
def test_bad_generation_request_names_the_field_and_limit(client, body, message):
    reply = client.post("/predict", body)
    assert reply.status == 422, reply
    assert message in reply.json()["detail"], reply.json()["detail"]


def test_info_describes_the_lm(client):
    info = client.get("/info").json()
    assert info["task"] == "lm" and info["signature"]["vocab_size"] == 256
    properties = info["input_schema"]["properties"]
    assert properties["max_new_tokens"]["maximum"] == 16 and properties["temperature"]["maximum"] == 1.5
    assert set(info["output_schema"]["properties"]) == {"text", "tokens", "version"}


def test_sigint_stops_every_process_and_frees_the_port(server):
    assert server.stop(signal.SIGINT) == 0
    assert server.survivors() == []
    assert port_is_free(server.port)
