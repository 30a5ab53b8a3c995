"""Models shared across the export tests: tiny untrained ones with their ONNX exports (exporting is
the slow part), and one trained classifier (built once per session) for the INT8 checks, whose
predictions have real margins, so "INT8 agrees with fp32" means something."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.export.onnx import export_onnx
from nl_lightning.models import CausalLM, SequenceClassifier, TransformerConfig

TRAIN_STEPS = 200


def make_lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(TransformerConfig(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)).eval()


def make_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none",
                               causal=False)
    return SequenceClassifier(config, num_outputs=3).eval()


@dataclass
class Trained:
    model: SequenceClassifier
    val: list[tuple[torch.Tensor, torch.Tensor]]
    """Validation batches (x, y), never trained on."""
    onnx: Path
    accuracy: float


def train_classifier(steps: int = TRAIN_STEPS) -> tuple[SequenceClassifier, SyntheticSequenceDataModule]:
    """The benchmark's classifier (2 layers, d_model 64), trained with a plain loop (seeded)."""
    torch.manual_seed(0)
    config = TransformerConfig(input_dim=8, n_layers=2, d_model=64, n_heads=4, max_seq_len=16, position="none",
                               causal=False)
    model = SequenceClassifier(config, num_outputs=3)
    data = SyntheticSequenceDataModule(num_samples=4096, batch_size=32, seed=0)
    data.setup("fit")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = iter(())
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(data.train_dataloader())
            x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False), data


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    model, data = train_classifier()
    val = list(data.val_dataloader())
    with torch.inference_mode():
        correct = sum(int((model(x).argmax(-1) == y).sum()) for x, y in val)
    accuracy = 100.0 * correct / sum(len(y) for _, y in val)
    return Trained(model, val, export_onnx(model, tmp_path_factory.mktemp("trained") / "model.onnx"), accuracy)
