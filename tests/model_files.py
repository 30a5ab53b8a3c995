"""Tiny nl_lightning models written to disk as checkpoints, folders of versions and ONNX exports."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from nl_lightning.models import CausalLM, TransformerClassifier, TransformerConfig, TransformerLM

FEATURES = 4
STEPS = 8


def raw_features(n: int, seed: int = 0, steps: int = STEPS) -> np.ndarray:
    """Features far from zero mean / unit scale, so normalizing them changes the model's answer."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, steps, FEATURES)) * np.array([3.0, 0.5, 8.0, 1.0]) + np.array([5.0, -2.0, 20.0, 0.0])
    return x.astype(np.float32)


def classifier(seed: int = 0, task: str = "classification", num_classes: int = 3, **config) -> TransformerClassifier:
    torch.manual_seed(seed)
    values = dict(input_dim=FEATURES, n_layers=1, d_model=16, n_heads=2, mlp_hidden=32, max_seq_len=STEPS,
                  position="none", causal=False)
    return TransformerClassifier(TransformerConfig(**{**values, **config}), num_classes=num_classes, task=task)


def save(model: L.LightningModule, path: Path) -> Path:
    """A checkpoint of ``model`` as it is (no training), written by Lightning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def fit_normalized(path: Path, seed: int = 2) -> tuple[Path, L.Trainer, object]:
    """A classifier trained a few steps on raw features with ``ArrayDataModule(normalize=True)``."""
    from nl_lightning.data import ArrayDataModule

    model = classifier(seed)
    x = raw_features(64, seed)
    y = (x[:, :, 0].mean(1) > 5.0).astype(np.int64) + (x[:, :, 2].mean(1) > 20.0).astype(np.int64)
    datamodule = ArrayDataModule(x_train=x, y_train=y, x_predict=raw_features(12, 99), batch_size=16, normalize=True)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=path.parent)
    trainer.fit(model, datamodule)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path, trainer, datamodule


def lm(seed: int = 0, vocab_size: int = 256, max_seq_len: int = 32) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(TransformerConfig(vocab_size=vocab_size, n_layers=1, d_model=32, n_heads=2, mlp_hidden=64,
                                           max_seq_len=max_seq_len))


def export(model: L.LightningModule, out_dir: Path, formats: list[str]) -> Path:
    """An export folder (ONNX artifacts + manifest) of ``model``, as ``nl-lightning export`` writes it."""
    from nl_lightning.export import ExportConfig, export_formats

    export_formats(model, out_dir, ExportConfig(formats=formats, parity_batch_sizes=[1, 2], parity_seq_lens=[4, 8]))
    return out_dir


def outlier_lm(seed: int = 0, every: int = 37, factor: float = 200.0) -> CausalLM:
    """A tiny SwiGLU LM (hidden width 192) whose down-projection inputs have one channel in ``every``
    ``factor`` times larger than the rest, made without changing the function (``up``'s rows times
    ``factor``, ``down``'s columns divided by it), the way training makes them: per-tensor INT8
    activations then round the other channels coarsely, which SmoothQuant undoes."""
    from nl_lightning.export.smooth import glu_mlps

    torch.manual_seed(seed)
    config = TransformerConfig(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, mlp="swiglu", norm="rmsnorm",
                               position="rope", bias=False, max_seq_len=32)
    model = CausalLM(config).eval()
    with torch.no_grad():
        for mlp in glu_mlps(model):
            channels = torch.arange(0, mlp.up.out_features, every)
            mlp.up.weight[channels] *= factor
            mlp.down.weight[:, channels] /= factor
    return model
