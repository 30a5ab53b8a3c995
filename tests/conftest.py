"""Shared fixtures: a seeded RNG, a tiny model config, and model files on disk (checkpoints and ONNX
exports from ``model_files``) that serving and batch inference both read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from nl_lightning.models import TransformerConfig

# The suite runs tiny models on a shared 2-core machine: intra-op threads only add contention
# there (a one-token attention step measured ~20x slower with 2 threads under load than with 1).
torch.set_num_threads(1)


@pytest.fixture
def seed() -> int:
    """Seed torch's global RNG so random inputs and initial weights are the same every run."""
    torch.manual_seed(0)
    return 0


@pytest.fixture
def tiny_config() -> Callable[..., TransformerConfig]:
    """A factory for a one-layer, 16-wide config; keyword arguments override any field."""

    def make(**overrides: Any) -> TransformerConfig:
        values = dict(vocab_size=32, n_layers=1, d_model=16, n_heads=4, max_seq_len=32, mlp_hidden=32)
        return TransformerConfig(**{**values, **overrides})

    return make


@pytest.fixture(scope="session")
def regressor_version(tmp_path_factory):
    """Version folder ``1``: a regressor's checkpoint and its ONNX export (``export/``), as a run has them."""
    from model_files import classifier, export, save

    model = classifier(3, task="regression", num_classes=2).eval()
    folder = tmp_path_factory.mktemp("regressor") / "1"
    save(model, folder / "model.ckpt")
    export(model, folder / "export", ["onnx", "onnx_optimized"])
    return model, folder


@pytest.fixture(scope="session")
def lm_export(tmp_path_factory):
    from model_files import export, lm

    model = lm(0).eval()
    return model, export(model, tmp_path_factory.mktemp("lm_export"), ["onnx"])

@pytest.fixture(scope="session")
def trained_tokenizer(tmp_path_factory) -> str:
    """A byte-level BPE ``tokenizer.json`` (512 tokens, ``<|endoftext|>`` = 0) trained on local text:
    Python's own pydoc topics, nothing downloaded."""
    from nl_lightning.data.bpe import save_tokenizer, train_bpe
    from nl_lightning.data.text import pydoc_corpus

    corpus = pydoc_corpus()[:200_000]
    folder = tmp_path_factory.mktemp("tokenizer")
    return str(save_tokenizer(train_bpe([corpus[i:i + 5000] for i in range(0, len(corpus), 5000)], 512), folder))


@pytest.fixture
def pretrained_folder(tmp_path_factory) -> Callable[..., Path]:
    """``pretrained_folder("lm" | "classifier", num_classes=2)``: a tiny random Hugging Face model
    folder (a Llama-style LM with a byte vocabulary, or a BERT classifier), written by our own
    ``save_pretrained`` -- what configs with ``pretrained:`` point at in tests."""
    from nl_lightning.models import TransformerClassifier, TransformerLM

    def make(kind: str = "lm", num_classes: int = 2) -> Path:
        folder = tmp_path_factory.mktemp("pretrained") / kind
        torch.manual_seed(0)
        if kind == "lm":
            config = TransformerConfig.from_preset("llama", n_layers=1, d_model=32, n_heads=4, n_kv_heads=2,
                                                   vocab_size=256, max_seq_len=256)
            TransformerLM(config).save_pretrained(folder)
        else:
            config = TransformerConfig.from_preset("bert", n_layers=1, d_model=32, n_heads=4, vocab_size=64,
                                                   max_seq_len=128, type_vocab_size=2, embed_norm=True)
            TransformerClassifier(config, num_classes=num_classes, pooling="pooler").save_pretrained(folder)
        return folder

    return make
