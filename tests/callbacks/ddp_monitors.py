"""Script for test_monitors_ddp.py: every monitor on a tiny classifier, DDP over 2 CPU processes.

Run as ``python ddp_monitors.py OUT_DIR``; Lightning's launcher starts rank 1 by re-running it.
"""

import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import DeviceStatsMonitor
from lightning.pytorch.loggers import TensorBoardLogger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracking_utils import tiny_classifier, tiny_data  # noqa: E402

from nl_lightning.callbacks import (  # noqa: E402
    ConfusionMatrixMonitor, CurvesCallback, GradientMonitor, HistogramMonitor, RunMetadata, TaskThroughputMonitor,
)

if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    callbacks = [GradientMonitor(), HistogramMonitor(every_n_steps=4), DeviceStatsMonitor(cpu_stats=True),
                 TaskThroughputMonitor(window_size=3), RunMetadata(), CurvesCallback(), ConfusionMatrixMonitor()]
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, log_every_n_steps=2,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
                        logger=TensorBoardLogger(out / "runs", name="ddp"), callbacks=callbacks)
    trainer.fit(tiny_classifier(), tiny_data(num_samples=320, batch_size=16))
