"""Every monitor under DDP with two CPU processes (gloo): no hang, one set of logs (rank 0), and the
confusion matrix counts the validation samples of both ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracking_utils import tb_events

SCRIPT = Path(__file__).resolve().parent / "ddp_monitors.py"


@pytest.mark.slow
def test_monitors_under_ddp_log_once_and_sync(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("LOCAL_RANK", None)  # a leftover rank would make Lightning think it is a launched child
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert sorted(p.name for p in (tmp_path / "runs" / "ddp").iterdir()) == ["version_0"]  # none from rank 1
    run_dir = tmp_path / "runs" / "ddp" / "version_0"
    acc = tb_events(run_dir)
    scalars = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    steps = -(-240 // 2 // 16)  # 240 training samples over 2 ranks, batch 16: 8 batches per rank
    assert scalars["grad/norm"] == scalars["train/loss"] == list(range(1, steps, 2))  # logged once per step
    assert [e.step for e in acc.Histograms("grads/model.head.weight")] == [3, 7]
    assert "train/device/items_per_sec" in scalars
    assert acc.Tags()["images"] == ["val/confusion_matrix"] and len(acc.Images("val/confusion_matrix")) == 1
    matrix = json.loads((run_dir / "confusion_matrix.json").read_text())["matrix"]
    assert sum(map(sum, matrix)) == 80  # all 80 validation samples: 40 per rank, gathered by torchmetrics
    assert scalars["val/recall/0"] == [steps - 1]
    assert json.loads((run_dir / "run_metadata.json").read_text())["device"] == "cpu x 2"
    assert (run_dir / "curves.png").is_file()
