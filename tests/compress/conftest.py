"""Tiny nl_lightning networks for the compression cores (random weights; no training)."""

from __future__ import annotations

import pytest
import torch

from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig



@pytest.fixture
def lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=32))


@pytest.fixture
def classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none",
                               causal=False)
    return SequenceClassifier(config, num_outputs=3)
