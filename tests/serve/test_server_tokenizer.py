"""A real LM server for a model trained with a tokenizer (not bytes), from its ONNX export and from its
checkpoint: prompts are encoded, and answers decoded, by the model's own tokenizer on both backends,
and chats go through the chat template of the model folder it was built from."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from model_files import export, lm, save
from servers import ServerProcess

from nl_lightning.data.chat import render_chat
from nl_lightning.models import TransformerConfig, TransformerLM

pytestmark = pytest.mark.slow
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}<|assistant|>"
PROMPT = "The object of this statement"


@pytest.fixture(scope="module")
def model(trained_tokenizer, tmp_path_factory):
    """An LM built from a Hugging Face-like folder (tokenizer.json + tokenizer_config.json with a chat
    template), saved as version 1 (checkpoint) and exported as version 2 (ONNX only); version 3 is a
    byte-vocabulary model of the same size: same signature, another tokenizer."""
    folder = tmp_path_factory.mktemp("hf")
    shutil.copy(trained_tokenizer, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    torch.manual_seed(0)
    config = dict(vocab_size=512, n_layers=1, d_model=32, n_heads=2, mlp_hidden=64, max_seq_len=64)
    net = TransformerLM(TransformerConfig(**config), tokenizer=str(folder)).eval()
    root = tmp_path_factory.mktemp("models")
    save(net, root / "1" / "model.ckpt")
    export(net, root / "2", ["onnx"])
    shutil.rmtree(folder)  # neither the checkpoint nor the export may need the folder any more
    save(lm(1, vocab_size=512, max_seq_len=64), root / "3" / "model.ckpt")
    return root, net


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("server"), model_dir=str(model[0]), version="2",
                            model_name="tok", limits={"default_temperature": 0.0, "default_top_k": None})
    try:
        yield process.start()
    finally:
        process.kill()


def greedy(net: TransformerLM, ids: list[int], n: int) -> list[int]:
    out = net.generate(torch.tensor([ids]), n, temperature=0.0, top_k=None)[0, len(ids):].tolist()
    eos = net.codec.eos_id
    return out[: out.index(eos)] if eos in out else out


@pytest.mark.parametrize("version, backend", [("2", "onnx"), ("1", "torch")])
def test_text_goes_through_the_models_tokenizer_on_both_backends(server, model, version, backend):
    client = server.client()
    assert client.admin("/admin/reload", {"version": version}).status == 200
    assert client.get("/info").json()["backend"] == backend
    net = model[1]
    ids = net.codec.encode(PROMPT)
    body = client.post("/predict", {"prompt": PROMPT, "max_new_tokens": 12}).json()
    assert body["prompt_tokens"] == len(ids) < len(PROMPT.encode())  # tokens, not bytes
    assert body["tokens"] == greedy(net, ids, 12) and body["text"] == net.codec.decode(body["tokens"])
    assert body["version"] == version


def test_chat_uses_the_template_from_the_model_folder(server, model):
    from openai import OpenAI

    net = model[1]
    client = OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "What is an object?"}]
    prompt = net.codec.encode(render_chat(net.codec, messages))
    assert render_chat(net.codec, messages).startswith("<|user|>What is an object?<|endoftext|>")
    answer = client.chat.completions.create(model="tok", messages=messages, max_tokens=10, temperature=0)
    assert answer.usage.prompt_tokens == len(prompt)
    assert answer.choices[0].message.content == net.codec.decode(greedy(net, prompt, 10))


def test_a_version_with_another_tokenizer_is_refused(server):
    client = server.client()
    reply = client.admin("/admin/reload", {"version": "3"})
    assert reply.status == 409 and "has another tokenizer or chat template" in reply.json()["detail"], reply
    assert client.get("/info").json()["version"] in ("1", "2")
