"""TokenizedTextDataModule: documents packed with EOS into next-token blocks, split the same way on
every run, every token accounted for, and a resume on other data refused."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from nl_lightning.data import TokenizedTextDataModule
from nl_lightning.data.documents import DocumentError
from nl_lightning.data.tokenized import pack_documents
from nl_lightning.data.tokenizer import TokenizerError, load_codec
from nl_lightning.models import TransformerConfig, TransformerLM


@pytest.fixture
def corpus(tmp_path: Path) -> str:
    """Twelve documents of different lengths, each naming itself."""
    from nl_lightning.data.text import pydoc_corpus

    text = pydoc_corpus()
    for i in range(12):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"[doc {i}] " + text[i * 3000: i * 3000 + 1000 + 300 * i])
    return str(tmp_path / "doc*.txt")


def _stream(dataset) -> torch.Tensor:
    """The tokens a split's blocks cover, in order (block i holds tokens i*T .. (i+1)*T inclusive)."""
    return torch.cat([dataset[i][0] for i in range(len(dataset))] + [dataset[len(dataset) - 1][1][-1:]])


def test_pack_documents_puts_one_eos_after_each():
    assert pack_documents([[5, 6], [7], [8, 0]], eos_id=0).tolist() == [5, 6, 0, 7, 0, 8, 0]
    assert pack_documents([[5]], eos_id=0).dtype == torch.int32


def test_blocks_are_shifted_next_token_pairs_of_the_packed_documents(corpus, trained_tokenizer):
    dm = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, batch_size=4, seed=3)
    dm.setup("fit")
    codec = load_codec(trained_tokenizer)
    idx, targets = dm.train_set[5]
    assert idx.dtype == targets.dtype == torch.long and idx.shape == targets.shape == (32,)
    assert torch.equal(idx[1:], targets[:-1])
    stream = torch.cat([_stream(dm.train_set), _stream(dm.val_set), _stream(dm.test_set)])
    documents = codec.decode(stream.tolist())  # special tokens are left out of decoded text
    for i in range(12):  # every document starts once in the splits (only tokens past a split's last block are left out)
        assert documents.count(f"[doc {i}] ") == 1
    assert int((stream == codec.eos_id).sum()) in (11, 12)  # one EOS after each document
    assert dm.vocab_size == codec.vocab_size == 512


def test_split_is_deterministic_and_the_seed_orders_documents(corpus, trained_tokenizer):
    def streams(seed):
        dm = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, seed=seed)
        dm.setup()
        return [_stream(getattr(dm, f"{s}_set")) for s in ("train", "val", "test")], dm.tokens_sha256

    first, again, other = streams(0), streams(0), streams(1)
    assert all(torch.equal(a, b) for a, b in zip(first[0], again[0])) and first[1] == again[1]
    assert not torch.equal(first[0][1], other[0][1]) and first[1] != other[1]
    sizes = [len(s) for s in first[0]]
    assert sizes[1] / sum(sizes) == pytest.approx(0.1, abs=0.02) and sizes[2] / sum(sizes) == pytest.approx(0.05, abs=0.02)


def test_loaders_train_shuffled_and_resumable_evaluate_in_order(corpus, trained_tokenizer):
    from nl_lightning.data.resumable import ResumableDataLoader

    dm = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, batch_size=4, seed=0)
    assert isinstance(dm.train_dataloader(), ResumableDataLoader)  # set up on first use
    first = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(first[0], dm.val_set[0][0])
    with pytest.raises(ValueError, match="no test split \\(test_fraction=0\\)"):
        TokenizedTextDataModule(corpus, trained_tokenizer, test_fraction=0).test_dataloader()


def test_resuming_on_other_data_is_refused(corpus, trained_tokenizer, tmp_path):
    dm = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, seed=0)
    dm.setup("fit")
    state = dm.state_dict()
    same = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, seed=0)
    same.setup("fit")
    same.load_state_dict(state)  # the same stream: accepted
    Path(corpus.replace("*", "05")).write_text("[doc 5] rewritten since the checkpoint was taken")
    changed = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=32, seed=0)
    changed.load_state_dict(state)  # restored before setup: checked when the stream exists
    with pytest.raises(DocumentError, match=r"The checkpoint was trained on other data: its token stream has SHA-256 "
                                            r"\w{12}…, .* gives \w{12}…\. Resume with the same files"):
        changed.setup("fit")


def test_model_and_data_with_different_tokenizers_are_refused(corpus, trained_tokenizer, tmp_path):
    dm = TokenizedTextDataModule(corpus, trained_tokenizer, seq_len=16, batch_size=2)
    model = TransformerLM(TransformerConfig(vocab_size=512, n_layers=1, d_model=16, n_heads=2, max_seq_len=16))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(TokenizerError, match=r"The data is tokenized with .*tokenizer\.json but the model's tokenizer "
                                             r"is the byte vocabulary; give both the same tokenizer\.json"):
        trainer.fit(model, dm)


@pytest.mark.parametrize(("text", "match"), [
    ("short", r"gives \d+ tokens; seq_len=64 with val_fraction=0\.1, test_fraction=0\.05 needs about \d+\. Add text"),
    ("", r"is empty \(0 bytes\)"),
])
def test_too_little_or_no_text_is_refused(text, match, trained_tokenizer, tmp_path):
    (tmp_path / "one.txt").write_text(text)
    with pytest.raises(DocumentError, match=match):
        TokenizedTextDataModule(str(tmp_path / "one.txt"), trained_tokenizer, seq_len=64).setup()


def test_a_tokenizer_without_eos_is_refused_up_front(corpus, tmp_path):
    from nl_lightning.data.bpe import save_tokenizer, train_bpe

    path = save_tokenizer(train_bpe(["plain text"] * 3, 300, special_tokens=[]), tmp_path / "noeos")
    with pytest.raises(TokenizerError, match=r"has no end-of-text token to put between documents; pass eos_token="):
        TokenizedTextDataModule(corpus, str(path))


def test_parquet_rows_are_documents(trained_tokenizer, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nl_lightning.data.text import pydoc_corpus

    text = pydoc_corpus()
    rows = [f"<row {i}> " + text[i * 700:(i + 1) * 700] for i in range(40)] + [""]  # an empty row adds nothing
    pq.write_table(pa.table({"body": rows}), tmp_path / "docs.parquet", row_group_size=16)
    dm = TokenizedTextDataModule(str(tmp_path / "docs.parquet"), trained_tokenizer, text_column="body", seq_len=32)
    stream = dm.load_tokens()
    assert int((stream == dm.codec.eos_id).sum()) == 40
    decoded = dm.codec.decode(stream.tolist())
    assert all(decoded.count(f"<row {i}> ") == 1 for i in range(40))
