"""Byte-level BPE training: the requested size, special tokens first, written atomically, bad sizes refused."""

from __future__ import annotations

import os

import pytest

from nl_lightning.data.bpe import save_tokenizer, train_bpe
from nl_lightning.data.tokenizer import TokenizerError, load_codec

TEXT = ["the cat sat on the mat; the dog sat on the log. " * 20, "naïve café 日本 🎉 " * 10]


def test_vocabulary_size_special_ids_and_unseen_text():
    from nl_lightning.data.text import pydoc_corpus

    tokenizer = train_bpe([pydoc_corpus()[:50_000], *TEXT], vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"])
    assert tokenizer.get_vocab_size() == 400
    assert [tokenizer.token_to_id(t) for t in ("<|endoftext|>", "<pad>")] == [0, 1]
    unseen = "Ωmega ∑ never seen ✓"  # bytes of unseen characters are in the base alphabet: no unknown token
    assert tokenizer.decode(tokenizer.encode(unseen).ids) == unseen
    assert len(tokenizer.encode("the cat sat on the mat").ids) < len("the cat sat on the mat")  # merges learned


def test_min_frequency_limits_merges():
    rare = train_bpe(TEXT, vocab_size=1000, min_frequency=1000).get_vocab_size()
    common = train_bpe(TEXT, vocab_size=1000, min_frequency=2).get_vocab_size()
    assert rare == 256 + 1 < common  # bytes + <|endoftext|>, no pair is seen 1000 times


def test_saved_to_a_file_or_into_a_folder_atomically(tmp_path):
    tokenizer = train_bpe(TEXT, vocab_size=300)
    file = save_tokenizer(tokenizer, tmp_path / "tok.json")
    folder = save_tokenizer(tokenizer, tmp_path / "model")
    assert file == tmp_path / "tok.json" and folder == tmp_path / "model" / "tokenizer.json"
    assert file.read_text() == folder.read_text() == tokenizer.to_str()
    assert load_codec(tmp_path / "model").encode(TEXT[0]) == tokenizer.encode(TEXT[0]).ids
    assert sorted(os.listdir(tmp_path)) == ["model", "tok.json"]  # no temporary file left behind


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vocab_size": 200}, r"vocab_size=200 is too small: the 256 byte tokens and 1 special token\(s\) need 257"),
    ({"special_tokens": ["<s>", ""]}, r"special_tokens=\['<s>', ''\] contains an empty string"),
    ({"min_frequency": 0}, r"min_frequency=0 must be >= 1"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(TokenizerError, match=match):
        train_bpe(TEXT, **{"vocab_size": 300, **kwargs})
