"""Shared fixtures: a seeded RNG and a tiny model config."""

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
