"""A prediction job for the writer's tests, run in-process or as a script (SIGKILL, DDP).

    python prediction_job.py OUTPUT_DIR [--devices 2] [--delay 0.05] [--format npz] [--stall_after 3]

Row ``i`` of the data has ``x[i, 0, 0] == i``, so every output says which input it came from.
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import torch

from nl_lightning.data import ArrayDataModule
from nl_lightning.predict import PredictionWriter
from nl_lightning.predict.writer import batch_written

ROWS, BATCH = 90, 8


def inputs(rows: int = ROWS) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((rows, 3, 2)).astype(np.float32)
    x[:, 0, 0] = np.arange(rows)
    return x


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    """What :class:`Echo` writes for ``x``, computed without Lightning."""
    return {"row_id": x[:, 0, 0].astype(np.int64), "total": x.sum(axis=(1, 2)), "first": x[:, 0, :],
            "label": (x[:, 0, 0] % 3).astype(np.int64)}


class Echo(L.LightningModule):
    """Outputs that identify their input; records which batches reached it, sleeps to be killable, and
    raises at batch ``crash_at`` (a job that dies mid-run)."""

    def __init__(self, delay: float = 0.0, crash_at: int | None = None, stall_after: int | None = None) -> None:
        super().__init__()
        self.delay, self.crash_at, self.stall_after, self.calls = delay, crash_at, stall_after, []

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        if batch_idx == self.crash_at:
            raise RuntimeError("power cut")
        if batch_written(self.trainer, batch_idx, dataloader_idx):
            return None
        self.calls.append(batch_idx)
        time.sleep(600 if self.stall_after is not None and batch_idx >= self.stall_after else self.delay)
        x = batch["x"]
        return {"total": x.sum(dim=(1, 2)), "first": x[:, 0, :], "label": (x[:, 0, 0] % 3).long()}


def run(output_dir: str, devices: int = 1, delay: float = 0.0, fmt: str = "npz", rows_per_shard: int = 20,
        batch_size: int = BATCH, model: L.LightningModule | None = None, x: np.ndarray | None = None,
        **writer: object) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[PredictionWriter(output_dir, format=fmt, rows_per_shard=rows_per_shard, **writer)],
    )
    datamodule = ArrayDataModule(x_predict=inputs() if x is None else x, batch_size=batch_size)
    trainer.predict(model or Echo(delay), datamodule=datamodule)
    return trainer


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--format", default="npz")
    parser.add_argument("--stall_after", type=int, default=None, help="batches from this one on take 10 minutes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(args.output_dir, args.devices, args.delay, args.format, model=Echo(args.delay, stall_after=args.stall_after))
