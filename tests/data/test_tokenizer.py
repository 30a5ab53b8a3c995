"""Text codecs: the byte vocabulary and a tokenizer.json (trained here, offline) round-trip text
exactly; the end-of-text token is found; a missing, corrupt or too-large tokenizer is refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl_lightning.data.tokenizer import BYTES, TokenizerCodec, TokenizerError, check_vocab, load_codec

SAMPLES = [
    "def f(x):\n\treturn x ** 2  # squares\r\n",
    "Grüße, naïve café — 日本語のテキスト, emoji 🎉🚀 and ZWJ 👩‍👩‍👧",
    "   leading and trailing spaces   ",
    "\n\n\nblank lines\n\n",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_trained_tokenizer_round_trips_text_exactly(trained_tokenizer, text):
    codec = load_codec(trained_tokenizer)
    ids = codec.encode(text)
    assert codec.decode(ids) == text
    assert all(0 <= i < codec.vocab_size for i in ids)


def test_trained_tokenizer_compresses_text_it_was_trained_on(trained_tokenizer):
    from nl_lightning.data.text import pydoc_corpus

    text = pydoc_corpus()[300_000:310_000]  # past the training slice
    assert len(load_codec(trained_tokenizer).encode(text)) < 0.5 * len(text.encode("utf-8"))


@pytest.mark.parametrize("text", SAMPLES)
def test_byte_codec_round_trips_and_is_the_default(text):
    assert load_codec(None) is BYTES
    assert BYTES.decode(BYTES.encode(text)) == text and BYTES.vocab_size == 256 and BYTES.eos_id is None
    assert BYTES.to_json() is None


def test_byte_codec_decodes_any_sample():
    assert BYTES.decode([0xE6, 0x97]) == "\ufffd"  # a cut multi-byte character: replacement, no error
    assert BYTES.decode([72, 300, 105]) == "Hi"  # ids past the byte range (a padded embedding) are dropped


def test_tokenizer_loads_from_a_file_a_folder_or_its_json(trained_tokenizer):
    from_file = TokenizerCodec.from_source(trained_tokenizer)
    from_folder = TokenizerCodec.from_source(Path(trained_tokenizer).parent)
    from_json = TokenizerCodec.from_source(from_file.to_json())
    text = SAMPLES[1]
    assert from_file.encode(text) == from_folder.encode(text) == from_json.encode(text)
    assert from_file.vocab_size == 512 and from_file.eos_id == 0  # <|endoftext|>, the first special token


def test_eos_from_the_argument_or_the_folders_tokenizer_config(trained_tokenizer, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    tokenizer = load_codec(trained_tokenizer).tokenizer
    tokenizer.add_special_tokens(["</s>"])  # id 512
    tokenizer.save(str(folder / "tokenizer.json"))
    assert TokenizerCodec.from_source(folder).eos_id == 0  # <|endoftext|> comes first among the known names
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "</s>"}}))
    assert TokenizerCodec.from_source(folder).eos_id == 512  # the folder's own choice wins
    assert TokenizerCodec.from_source(folder, eos_token="<|endoftext|>").eos_id == 0  # and an explicit one over it
    with pytest.raises(TokenizerError, match=r"eos_token='<eot>' is not in the vocabulary of .*tokenizer\.json; use "
                                             r"one of its special tokens \(</s>, <\|endoftext\|>\)"):
        TokenizerCodec.from_source(folder, eos_token="<eot>")


def test_a_tokenizer_without_special_tokens_has_no_eos(tmp_path):
    from nl_lightning.data.bpe import save_tokenizer, train_bpe

    path = save_tokenizer(train_bpe(["some text"] * 3, 300, special_tokens=[]), tmp_path)
    assert load_codec(path).eos_id is None


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: p / "nope.json", r"Tokenizer not found: .*nope\.json does not exist\. Pass a tokenizer\.json"),
    (lambda p: p, r"the folder .* has no tokenizer\.json\. .*nl-lightning tokenizer train"),
    (lambda p: _write(p / "tokenizer.json", '{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merg'),
     r"tokenizer\.json is not a readable tokenizer\.json \(.*\)\. It may be truncated"),
    (lambda p: _write(p / "tokenizer.json", "{}"), r"is not a readable tokenizer\.json"),
])
def test_missing_or_corrupt_tokenizers_are_refused(make, match, tmp_path):
    with pytest.raises(TokenizerError, match=match):
        load_codec(make(tmp_path))


def test_vocabulary_larger_than_the_embedding_is_refused_naming_both_sizes(trained_tokenizer):
    codec = load_codec(trained_tokenizer)
    check_vocab(codec, 512)
    check_vocab(codec, 576)  # a padded embedding (rows no token uses) is fine
    with pytest.raises(TokenizerError, match=r"vocab_size=256 embedding rows but the tokenizer \(.*tokenizer\.json\) has "
                                             r"512 tokens\. Set TransformerConfig\.vocab_size .* to 512 or more"):
        check_vocab(codec, 256)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _chat_folder(trained_tokenizer, tmp_path, config: dict, jinja: str | None = None) -> Path:
    folder = tmp_path / "hf-model"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_text(Path(trained_tokenizer).read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if jinja is not None:
        (folder / "chat_template.jinja").write_text(jinja)
    return folder


TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.mark.parametrize("config, jinja", [
    ({"chat_template": TEMPLATE, "bos_token": "<s>"}, None),
    ({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": TEMPLATE}],
      "bos_token": {"content": "<s>"}}, None),
    ({"chat_template": "ignored: the .jinja file wins", "bos_token": "<s>"}, TEMPLATE),
], ids=["string", "named-list", "jinja-file"])
def test_chat_template_comes_from_the_folder_and_survives_the_checkpoint(trained_tokenizer, tmp_path, config, jinja):
    from nl_lightning.data.chat import render_chat

    codec = load_codec(_chat_folder(trained_tokenizer, tmp_path, config, jinja))
    messages = [{"role": "user", "content": "hi"}]
    expected = "<s><|user|>hi<|endoftext|><|assistant|>"
    assert codec.chat_template == TEMPLATE and render_chat(codec, messages) == expected
    stored = load_codec(codec.to_checkpoint())  # what TransformerLM writes into the checkpoint
    assert render_chat(stored, messages) == expected and stored.eos_id == codec.eos_id
    assert stored.to_json() == codec.to_json()  # the vocabulary's identity is the tokenizer alone
    written = codec.save(tmp_path / "export")  # the layout an ONNX export carries beside its graph
    assert [p.name for p in written] == ["tokenizer.json", "tokenizer_config.json"]
    assert render_chat(load_codec(tmp_path / "export"), messages) == expected


def test_without_a_template_the_plain_default_renders(trained_tokenizer):
    from nl_lightning.data.chat import render_chat

    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi!"}]
    assert render_chat(BYTES, messages) == "system: Be terse.\nuser: Hi!\nassistant:"
    assert load_codec(trained_tokenizer).to_checkpoint() == load_codec(trained_tokenizer).to_json()  # unchanged


@pytest.mark.parametrize("template, match", [
    ("{{ messages.__class__.__mro__ }}", "failed to render"),  # sandboxed: no Python internals
    ("{% set _ = messages.append(1) %}", "failed to render"),  # immutable: no mutation
    ("{{ raise_exception('roles must alternate') }}", "refuses this conversation: roles must alternate"),
    ("{% for %}", "is not valid Jinja"),
])
def test_an_untrusted_template_runs_sandboxed(trained_tokenizer, tmp_path, template, match):
    from nl_lightning.data.chat import ChatTemplateError, render_chat

    codec = load_codec(_chat_folder(trained_tokenizer, tmp_path, {"chat_template": template}))
    with pytest.raises(ChatTemplateError, match=match):
        render_chat(codec, [{"role": "user", "content": "hi"}])


def test_a_template_that_is_not_a_string_is_refused(trained_tokenizer, tmp_path):
    with pytest.raises(TokenizerError, match=r"chat_template in .*tokenizer_config\.json is a int, not a Jinja"):
        load_codec(_chat_folder(trained_tokenizer, tmp_path, {"chat_template": 3}))
