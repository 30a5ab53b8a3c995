"""Shared pieces of the tracking-monitor tests: tiny models, a quiet Trainer, TensorBoard read-back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerClassifier, TransformerConfig


def tiny_classifier(seed: int = 0) -> TransformerClassifier:
    torch.manual_seed(seed)
    config = TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, max_seq_len=8, mlp_hidden=32)
    return TransformerClassifier(config, num_classes=3, optimizer=OptimizerConfig(lr=0.01),
                                 scheduler=SchedulerConfig(name="none"))


def tiny_data(num_samples: int = 256, batch_size: int = 16) -> SyntheticSequenceDataModule:
    return SyntheticSequenceDataModule(kind="features", num_samples=num_samples, seq_len=8, num_features=4,
                                       num_classes=3, batch_size=batch_size, val_fraction=0.25)


def trainer(tmp_path: Path, logger: Any = "tb", **kwargs: Any) -> L.Trainer:
    """A quiet single-process CPU Trainer logging to ``tmp_path/runs/test/version_N``."""
    if logger == "tb":
        logger = TensorBoardLogger(tmp_path / "runs", name="test")
    elif logger == "csv":
        logger = CSVLogger(tmp_path / "runs", name="test")
    defaults: dict[str, Any] = dict(
        accelerator="cpu", devices=1, max_steps=12, log_every_n_steps=4, limit_val_batches=2,
        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path, logger=logger,
    )
    return L.Trainer(**{**defaults, **kwargs})


def tb_events(log_dir: str | Path) -> Any:
    """An ``EventAccumulator`` of ``log_dir`` with everything loaded (scalars, histograms, images)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def tb_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    acc = tb_events(log_dir)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


_MLFLOW_TEMPLATE: Path | None = None


def mlflow_uri(folder: Path) -> str:
    """A fresh SQLite MLflow store in ``folder``: a copy of one migrated empty store per process
    (creating the tables runs MLflow's migrations, seconds each time)."""
    import shutil
    import tempfile

    global _MLFLOW_TEMPLATE
    if _MLFLOW_TEMPLATE is None:
        from mlflow import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="mlflow_template_")) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _MLFLOW_TEMPLATE = template
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(_MLFLOW_TEMPLATE, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"
