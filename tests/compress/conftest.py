"""Tiny nl_lightning networks for the compression cores (random weights; no training)."""

from __future__ import annotations

import pytest
import torch

from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, 2 OpenMP threads can run 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
