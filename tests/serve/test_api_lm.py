"""A real causal-LM server: prompt text or token ids in, generated text and ids out, within limits;
streamed and not, through ``/predict`` and the official ``openai`` client; concurrent generations
decoded together; a client that goes away frees its slot.

The last test stops it with SIGINT (Ctrl+C) and checks nothing is left behind.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from model_files import lm, save
from servers import ServerProcess, port_is_free

from nl_lightning.data.text import decode, encode

pytestmark = pytest.mark.slow
LIMITS = {"max_new_tokens": 4000, "default_new_tokens": 8, "max_temperature": 1.5, "default_temperature": 0.0,
          "default_top_k": None, "max_prompt_tokens": 40}
MODEL = "tiny-lm"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = save(lm(0), tmp_path_factory.mktemp("lm") / "7" / "model.ckpt")
    return path, lm(0).eval()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    path, _ = model
    process = ServerProcess(tmp_path_factory.mktemp("server"), model_dir=str(path.parents[1]), model_name=MODEL,
                            max_batch_size=4, limits=LIMITS)
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture(scope="module")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)


def greedy(model, ids: list[int], n: int) -> list[int]:
    return model.generate(torch.tensor([ids]), n, temperature=0.0, top_k=None)[0, len(ids):].tolist()


def stream_lines(port: int, body: dict) -> tuple[int, list[dict]]:
    """POST /predict with ``stream: true``; the status and every newline-delimited JSON event."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/predict", json.dumps({**body, "stream": True}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    lines = [json.loads(line) for line in response.read().decode().splitlines() if line]
    return response.status, lines


def test_prompt_text_is_continued_greedily_as_the_model_does(client, model):
    reply = client.post("/predict", {"prompt": "def f(x):", "max_new_tokens": 12})
    assert reply.status == 200, reply
    body = reply.json()
    expected = greedy(model[1], encode("def f(x):").tolist(), 12)
    assert body["tokens"] == expected and body["text"] == decode(expected) and body["version"] == "7"
    assert (body["finish_reason"], body["prompt_tokens"], body["completion_tokens"]) == ("length", 9, 12)


def test_token_ids_and_defaults(client, model):
    body = client.post("/predict", {"tokens": [100, 101, 102]}).json()  # server defaults: 8 tokens, greedy
    assert body["tokens"] == greedy(model[1], [100, 101, 102], 8)


def test_streamed_events_add_up_to_the_whole_answer(server, client):
    request = {"prompt": "import os", "max_new_tokens": 20}  # 20 tokens: past the 32-token window (refill)
    whole = client.post("/predict", request).json()
    status, events = stream_lines(server.port, request)
    assert status == 200 and len(events) == 20
    assert "".join(e["text"] for e in events) == whole["text"]
    assert [t for e in events for t in e["tokens"]] == whole["tokens"]
    last = events[-1]
    assert {k: last[k] for k in ("finish_reason", "prompt_tokens", "completion_tokens", "version")} == {
        "finish_reason": "length", "prompt_tokens": 9, "completion_tokens": 20, "version": "7"}
    assert all("finish_reason" not in e for e in events[:-1])


def test_a_stop_string_ends_the_answer_before_it(client, model):
    free = client.post("/predict", {"prompt": "abc", "max_new_tokens": 16}).json()
    text = free["text"]
    stop = next(text[i:i + 2] for i in range(3, len(text) - 1) if "\ufffd" not in text[i:i + 2])  # valid UTF-8
    cut = client.post("/predict", {"prompt": "abc", "max_new_tokens": 16, "stop": [stop]}).json()
    assert cut["text"] == free["text"][: free["text"].index(stop)] and cut["finish_reason"] == "stop"


def test_seeded_sampling_is_reproducible(client):
    request = {"prompt": "abc", "temperature": 1.0, "top_k": 20, "top_p": 0.9, "seed": 1234, "max_new_tokens": 16}
    first, second = (client.post("/predict", request).json()["tokens"] for _ in range(2))
    assert first == second and len(first) == 16
    assert client.post("/predict", {**request, "seed": 99}).json()["tokens"] != first


def test_concurrent_generations_are_decoded_together_and_each_is_its_own(server, model):
    """8 clients at once (4 decoded together per worker, 4 waiting for a row): every answer is what
    the model gives that prompt alone, and the decoder ran batches of more than one."""
    prompts = [bytes([65 + i]) * (1 + 3 * i) for i in range(8)]
    lengths = [5, 30, 12, 7, 40, 3, 18, 25]

    def one(i: int) -> dict:
        body = {"prompt": prompts[i].decode(), "max_new_tokens": lengths[i]}
        return server.client().post("/predict", body).json()

    before = server.client().get("/metrics").body.decode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    for i, answer in enumerate(answers):
        assert answer["tokens"] == greedy(model[1], list(prompts[i]), lengths[i]), i
    after = server.client().get("/metrics").body.decode()
    steps = _metric(after, "nl_serve_batch_size_count") - _metric(before, "nl_serve_batch_size_count")
    tokens = _metric(after, "nl_serve_batch_size_sum") - _metric(before, "nl_serve_batch_size_sum")
    assert tokens == sum(lengths) and steps < sum(lengths)  # fewer forwards than tokens: rows shared them


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_slot(server, client, stream):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {"prompt": "x", "max_new_tokens": 4000, "stream": stream}
    conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
    if stream:
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.readline())["tokens"]
    else:
        wait_for_decoding(client)
    conn.sock.close()  # the client goes away mid-generation
    conn.close()
    time.sleep(1.0)  # the server notices at its next write, the worker at its next step
    first = _metric(client.get("/metrics").body.decode(), "nl_serve_batch_size_sum")
    time.sleep(1.0)
    assert _metric(client.get("/metrics").body.decode(), "nl_serve_batch_size_sum") == first  # no decoding left
    started = time.monotonic()
    assert client.post("/predict", {"prompt": "y", "max_new_tokens": 3}).status == 200
    assert time.monotonic() - started < 5.0  # 4000 tokens would keep a row busy far longer


def test_openai_completions_streamed_and_not(openai_client, model):
    whole = openai_client.completions.create(model=MODEL, prompt="def main():", max_tokens=12, temperature=0)
    expected = greedy(model[1], encode("def main():").tolist(), 12)
    assert whole.choices[0].text == decode(expected) and whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (11, 12, 23)
    chunks = list(openai_client.completions.create(model=MODEL, prompt="def main():", max_tokens=12, temperature=0,
                                                   stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12
    ids = openai_client.completions.create(model=MODEL, prompt=[100, 101], max_tokens=4, temperature=0)
    assert ids.choices[0].text == decode(greedy(model[1], [100, 101], 4))


def test_openai_chat_streamed_and_not_through_the_default_template(openai_client, model):
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    prompt = encode("system: Be terse.\nuser: Hi\nassistant:").tolist()
    whole = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0)
    assert whole.choices[0].message.content == decode(greedy(model[1], prompt, 10))
    assert whole.choices[0].message.role == "assistant" and whole.usage.prompt_tokens == len(prompt)
    stream = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0,
                                                   stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"
    assert [m.id for m in openai_client.models.list()] == [MODEL]


def test_openai_errors_are_the_clients_own(openai_client):
    import openai

    with pytest.raises(openai.NotFoundError, match="The model 'gpt-4' does not exist; this server serves 'tiny-lm'"):
        openai_client.completions.create(model="gpt-4", prompt="hi")
    with pytest.raises(openai.UnprocessableEntityError, match="n=2: this server returns one choice per request"):
        openai_client.completions.create(model=MODEL, prompt="hi", n=2)
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens: Input should be less than or equal to 4000"):
        openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=4001)
    with pytest.raises(openai.UnprocessableEntityError, match=r"messages: the conversation \(chat template applied\) "
                                                              r"is 42 bytes \(tokens\); the server takes 1 to 40"):
        openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 25}])


@pytest.mark.parametrize("body, message", [
    ({"prompt": "hi", "max_new_tokens": 4001}, "max_new_tokens: Input should be less than or equal to 4000"),
    ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens: Input should be greater than or equal to 1"),
    ({"prompt": "hi", "temperature": 1.6}, "temperature: Input should be less than or equal to 1.5"),
    ({"prompt": "hi", "top_k": 257}, "top_k: Input should be less than or equal to 256"),
    ({"prompt": "hi", "top_p": 0}, "top_p: Input should be greater than 0"),
    ({"prompt": "x" * 41}, "prompt: prompt is 41 bytes (tokens); the server takes 1 to 40 (limits.max_prompt_tokens)"),
    ({"prompt": ""}, "prompt: prompt is 0 bytes (tokens); the server takes 1 to 40"),
    ({"tokens": [1] * 41}, "tokens: List should have at most 40 items"),
    ({"tokens": [1, 256]}, "tokens[1]: Input should be less than 256"),
    ({"tokens": [1, 2.5]}, "tokens[1]: Input should be a valid integer"),
    ({"prompt": "hi", "tokens": [1]}, "body: give exactly one of `prompt` (text) or `tokens` (ids), got both"),
    ({"max_new_tokens": 4}, "body: give exactly one of `prompt` (text) or `tokens` (ids), got neither"),
    ({"prompt": "hi", "seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"prompt": "hi", "stop": ["a"] * 5}, "stop: List should have at most 4 items"),
    ({"prompt": "hi", "n": 2}, "n: unknown field; this endpoint takes ['prompt', 'tokens', 'max_new_tokens', "
                               "'temperature', 'top_k', 'top_p', 'seed', 'stop', 'stream']"),
])
def test_bad_generation_request_names_the_field_and_limit(client, body, message):
    reply = client.post("/predict", body)
    assert reply.status == 422, reply
    assert message in reply.json()["detail"], reply.json()["detail"]


def test_info_describes_the_lm(client):
    info = client.get("/info").json()
    assert info["task"] == "lm" and info["signature"]["vocab_size"] == 256 and info["model_id"] == MODEL
    properties = info["input_schema"]["properties"]
    assert properties["max_new_tokens"]["maximum"] == 4000 and properties["temperature"]["maximum"] == 1.5
    assert set(info["output_schema"]["properties"]) == {"text", "tokens", "finish_reason", "prompt_tokens",
                                                        "completion_tokens", "version"}
    assert set(info["route_schemas"]) == {"/predict", "/v1/completions", "/v1/chat/completions"}


def test_sigint_stops_every_process_and_frees_the_port(server):
    assert server.stop(signal.SIGINT) == 0
    assert server.survivors() == []
    assert port_is_free(server.port)


def wait_for_decoding(client, timeout: float = 30.0) -> None:
    """Until the worker has decoded at least one more step."""
    start = _metric(client.get("/metrics").body.decode(), "nl_serve_batch_size_count")
    deadline = time.monotonic() + timeout
    while _metric(client.get("/metrics").body.decode(), "nl_serve_batch_size_count") == start:
        assert time.monotonic() < deadline, "no decoding started"
        time.sleep(0.05)


def _metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE))
