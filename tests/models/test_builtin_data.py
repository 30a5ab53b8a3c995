"""The built-in DataModules the models train on: byte text and generated sequences.

(tests/data/ belongs to the data pipeline; these cover nl_lightning/data/text.py and synthetic.py.)
"""

from __future__ import annotations

import pytest
import torch

from nl_lightning.data import CharTextDataModule, SyntheticSequenceDataModule
from nl_lightning.data.synthetic import make_sequences
from nl_lightning.data.text import TokenChunks, decode, encode, pydoc_corpus

TEXT = "Hello, wörld! ✓ naïve café — 1234567890\n" * 20


@pytest.mark.parametrize("text", ["", "abc", "wörld ✓ 日本語 🙂", TEXT])
def test_byte_round_trip(text):
    ids = encode(text)
    assert ids.dtype == torch.long and ids.numel() == len(text.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids.tolist())
    assert decode(ids) == text
    assert decode(ids.tolist()) == text


def test_decode_replaces_invalid_utf8():
    assert decode([0x61, 0xFF, 0x62]) == "a\ufffdb"


def test_chunks_are_inputs_and_next_token_targets():
    tokens = torch.arange(23)
    chunks = TokenChunks(tokens, seq_len=5)
    assert len(chunks) == 4  # (23 - 1) // 5
    for i in range(len(chunks)):
        x, y = chunks[i]
        assert torch.equal(x, tokens[i * 5 : i * 5 + 5])
        assert torch.equal(y, tokens[i * 5 + 1 : i * 5 + 6])


def test_chunks_need_seq_len_plus_one_tokens():
    with pytest.raises(ValueError, match=r"Only 5 tokens, fewer than seq_len \+ 1 = 6; use a shorter seq_len"):
        TokenChunks(torch.arange(5), seq_len=5)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_split_is_deterministic_and_disjoint(text_file):
    tokens = encode(TEXT)
    a, b = (CharTextDataModule(str(text_file), seq_len=8, val_fraction=0.25, test_fraction=0.1) for _ in range(2))
    a.setup("fit"), b.setup("fit")
    assert torch.equal(a.train_set.tokens, b.train_set.tokens) and torch.equal(a.val_set.tokens, b.val_set.tokens)
    val_start, test_start = int(tokens.numel() * 0.65), int(tokens.numel() * 0.9)
    # [train | val | test] in text order: together the whole text, no position twice.
    assert torch.equal(a.train_set.tokens, tokens[:val_start])
    assert torch.equal(a.val_set.tokens, tokens[val_start:test_start])
    assert torch.equal(a.test_set.tokens, tokens[test_start:])
    assert torch.equal(torch.stack([a.val_set[i][0] for i in range(len(a.val_set))]),
                       torch.stack([b.val_set[i][0] for i in range(len(b.val_set))]))


def test_loaders(text_file):
    data = CharTextDataModule(str(text_file), seq_len=8, batch_size=4)
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.long
    assert all(len(batch[0]) == 4 for batch in data.train_dataloader())  # drop_last for training
    val_x, val_y = next(iter(data.val_dataloader()))
    assert torch.equal(val_x[0], data.val_set[0][0]) and torch.equal(val_y[0, :-1], val_x[0, 1:])
    assert data.vocab_size == 256


def test_default_corpus_is_pydoc():
    assert CharTextDataModule().load_text() == pydoc_corpus()


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Text file not found: .*missing\.txt\. Pass an existing UTF-8 file"):
        CharTextDataModule(str(tmp_path / "missing.txt")).setup("fit")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"Text file .*empty\.txt is empty; give a file with at least 17 bytes"):
        CharTextDataModule(str(empty), seq_len=16).setup("fit")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(val_fraction=0.0), r"val_fraction=0\.0 must be in \(0, 1\)"),
        (dict(val_fraction=1.0), r"val_fraction=1\.0 must be in \(0, 1\)"),
        (dict(seq_len=0), r"seq_len=0 and batch_size=32 must be >= 1"),
        (dict(batch_size=0), r"seq_len=128 and batch_size=0 must be >= 1"),
    ],
)
def test_text_datamodule_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CharTextDataModule(**kwargs)


@pytest.mark.parametrize("kind", ["features", "tokens"])
def test_synthetic_labels_follow_the_rule(kind):
    x, y = make_sequences(kind, num_samples=64, seq_len=10, num_features=5, num_classes=3, vocab_size=7, seed=1)
    if kind == "features":
        assert x.shape == (64, 10, 5)
        expected = x[:, :, :3].mean(1).argmax(-1)
    else:
        assert x.shape == (64, 10) and int(x.max()) < 7
        expected = torch.stack([torch.bincount(row, minlength=7)[:3].argmax() for row in x])
    assert torch.equal(y, expected)
    assert set(y.tolist()) == {0, 1, 2}


def test_synthetic_split_is_seeded_and_disjoint():
    a, b, c = (SyntheticSequenceDataModule(num_samples=100, seed=s) for s in (3, 3, 4))
    for data in (a, b, c):
        data.setup("fit")
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])
    assert not torch.equal(a.train_set.tensors[0], c.train_set.tensors[0])
    assert len(a.val_set) == 20 and len(a.train_set) == 80
    x, _ = make_sequences("features", 100, 16, 8, 3, 16, seed=3)
    assert torch.equal(torch.cat([a.val_set.tensors[0], a.train_set.tensors[0]]), x)
    batch_x, batch_y = next(iter(a.val_dataloader()))
    assert batch_x.shape == (20, 16, 8) and batch_y.shape == (20,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="images"), r"kind='images' is not supported; choose 'features' or 'tokens'"),
        (dict(kind="features", num_classes=9, num_features=8), r"kind='features' needs num_classes \(9\) <= num_features \(8\)"),
        (dict(kind="tokens", num_classes=20, vocab_size=16), r"kind='tokens' needs num_classes \(20\) <= vocab_size \(16\)"),
        (dict(val_fraction=1.5), r"val_fraction=1\.5 must be in \(0, 1\)"),
    ],
)
def test_synthetic_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticSequenceDataModule(**kwargs)
