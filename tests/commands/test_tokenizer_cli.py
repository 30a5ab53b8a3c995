"""``nl-lightning tokenizer train``, then the end-to-end path a user takes: fit an LM on their text
with that tokenizer through the CLI, and ``nl-lightning generate`` answers in text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nl_lightning.cli import main
from nl_lightning.data.tokenizer import load_codec
from nl_lightning.models import TransformerLM
from nl_lightning.models.runs import find_checkpoint


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["nl-lightning"])


@pytest.fixture
def corpus(tmp_path: Path) -> str:
    from nl_lightning.data.text import pydoc_corpus

    text = pydoc_corpus()
    for i in range(4):
        (tmp_path / f"part{i}.txt").write_text(text[i * 20_000:(i + 1) * 20_000])
    return str(tmp_path / "part*.txt")


def test_train_writes_a_tokenizer_that_round_trips(corpus, tmp_path, capsys):
    assert main(["tokenizer", "train", "--files", corpus, "--vocab_size", "400", "--output", str(tmp_path / "tok")]) == 0
    path = tmp_path / "tok" / "tokenizer.json"
    assert f"tokenizer: {path} (400 tokens)" in capsys.readouterr().out
    codec = load_codec(path)
    text = "class Foo:\n    def __init__(self):  # naïve ✓\n"
    assert codec.decode(codec.encode(text)) == text and codec.eos_id == 0


def test_train_errors_are_one_line(tmp_path, capsys):
    assert main(["tokenizer", "train", "--files", str(tmp_path / "*.txt"), "--output", str(tmp_path / "t.json")]) == 1
    assert "nl-lightning: error: No file matches" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_fit_with_a_trained_tokenizer_then_generate_text(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tokenizer = str(tmp_path / "tokenizer.json")
    assert main(["tokenizer", "train", "--files", corpus, "--vocab_size", "384", "--output", tokenizer]) == 0
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_steps": 3, "limit_val_batches": 1, "enable_progress_bar": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": "runs", "name": "tok_lm"}}},
        "model": {"class_path": "nl_lightning.models.TransformerLM", "init_args": {
            "tokenizer": tokenizer,
            "config": {"vocab_size": 384, "n_layers": 1, "d_model": 32, "n_heads": 2, "max_seq_len": 32}}},
        "data": {"class_path": "nl_lightning.data.TokenizedTextDataModule", "init_args": {
            "paths": corpus, "tokenizer": tokenizer, "seq_len": 32, "batch_size": 4}},
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", "fit.yaml"]) == 0
    Path(tokenizer).unlink()  # generate reads the tokenizer from the checkpoint
    capsys.readouterr()
    assert main(["generate", "--ckpt_path", "runs/tok_lm", "--prompt", "The ", "--max_new_tokens", "20"]) == 0
    printed = capsys.readouterr().out
    model = TransformerLM.load(find_checkpoint("runs/tok_lm"))
    text = model.generate("The ", max_new_tokens=20, temperature=0.8, top_k=40, seed=0)  # the command's defaults
    assert printed == f"--- sample 0 ---\n{text}\n" and text.startswith("The ")
    assert len(model.codec.encode(text)) >= 15  # about 20 tokens of the trained vocabulary, not 20 bytes
