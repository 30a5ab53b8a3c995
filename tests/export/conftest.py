"""Models shared across the export tests: tiny untrained ones with their ONNX exports (exporting is
the slow part), and one trained classifier with its export (built once per session) for the INT8
checks: its predictions have real margins, so "INT8 agrees with fp32" means something."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.export.bundle import ExportConfig, export_formats
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
    export_dir: Path
    """``export_formats`` of the model with ``EXPORT_CONFIG`` (read-only: tests share it)."""
    manifest: dict
    accuracy: float

    @property
    def onnx(self) -> Path:
        return self.export_dir / "model.onnx"


EXPORT_CONFIG = dict(formats=["onnx_optimized", "onnx_int8_dynamic", "pt2", "torchscript"], parity_batch_sizes=[1, 3],
                     parity_seq_lens=[5, 16], check_batches=4)


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
    out = tmp_path_factory.mktemp("trained") / "export"
    with pytest.warns(DeprecationWarning, match="deprecated"):  # torch.jit.trace: TorchScript is legacy
        manifest = export_formats(model, out, ExportConfig(**EXPORT_CONFIG), source="test", source_sha256="ab" * 32,
                                  validation=val)
    return Trained(model, val, out, manifest, accuracy)
