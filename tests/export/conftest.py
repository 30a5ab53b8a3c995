"""Tiny models and their ONNX exports, shared across the export tests (exporting is the slow part)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nl_lightning.export.onnx import export_onnx
from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig


def make_lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)).eval()


def make_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none",
                               causal=False)
    return SequenceClassifier(config, num_outputs=3).eval()



@pytest.fixture
def fresh_lm() -> CausalLM:
    return make_lm()


@pytest.fixture(scope="session")
def models() -> dict[str, torch.nn.Module]:
    return {"lm": make_lm(), "classifier": make_classifier()}


@pytest.fixture(scope="session")
def onnx_paths(models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx")
    return {name: export_onnx(model, root / f"{name}.onnx") for name, model in models.items()}
