"""CurvesCallback: curves.png in the run folder, drawn from the scalars the loggers wrote."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor

from nl_lightning.callbacks import CurvesCallback
from nl_lightning.track.curves import panels, read_scalars
from tracking_utils import tiny_classifier, tiny_data, trainer


def test_curves_png_in_the_run_folder(tmp_path):
    callback = CurvesCallback()
    run = trainer(tmp_path, max_steps=8, val_check_interval=4,
                  callbacks=[callback, LearningRateMonitor(logging_interval="step")])
    run.fit(tiny_classifier(), tiny_data())
    run_dir = Path(run.logger.log_dir)
    assert callback.path == run_dir / "curves.png"
    assert callback.path.read_bytes()[:4] == b"\x89PNG"
    titles = [title for title, _ in panels(read_scalars(run_dir))]
    assert titles == ["training loss", "val/acc", "val/balanced_acc", "val/loss", "val/macro_f1", "learning rate"]
