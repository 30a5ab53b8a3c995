"""RunLock: a second live run cannot write into a run folder; a killed run's lock is taken over."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.callbacks.run_lock import LOCK_NAME, RunDirInUseError, RunLock, acquire, release
from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import TransformerClassifier, TransformerConfig


def _fit(ckpt_dir, tmp_path) -> L.Trainer:
    model = TransformerClassifier(TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, max_seq_len=8,
                                                    position="none"), num_classes=2)
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ModelCheckpoint(dirpath=ckpt_dir), RunLock()])
    trainer.fit(model, SyntheticSequenceDataModule(kind="features", num_samples=64, seq_len=8, num_features=4,
                                                   num_classes=2, batch_size=16))
    return trainer


@pytest.fixture
def holder(tmp_path):
    """Another live process holding the lock of tmp_path/ckpts."""
    (tmp_path / "ckpts").mkdir()
    lock = str(tmp_path / "ckpts" / LOCK_NAME)
    code = ("import json, os, socket, sys, time\n"  # the record RunLock writes, by a process that stays alive
            "open(sys.argv[1], 'w').write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}))\n"
            "print('locked', flush=True)\ntime.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, lock], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_second_live_run_in_the_same_folder_is_refused(tmp_path, holder):
    with pytest.raises(RunDirInUseError, match=rf"ckpts is being written by another run \(pid {holder.pid} .*Give this run its own folder"):
        _fit(tmp_path / "ckpts", tmp_path)
    assert not list((tmp_path / "ckpts").glob("*.ckpt"))  # refused before the first checkpoint


def test_lock_of_a_killed_run_is_taken_over(tmp_path, holder):
    holder.kill()
    holder.wait()
    with pytest.warns(UserWarning, match=rf"taking over a stale lock of pid {holder.pid}"):
        _fit(tmp_path / "ckpts", tmp_path)
    assert list((tmp_path / "ckpts").glob("*.ckpt"))
    assert not (tmp_path / "ckpts" / LOCK_NAME).exists()  # released at the end of fit


def test_lock_is_released_and_reacquired(tmp_path):
    path = acquire(tmp_path)
    assert json.loads(path.read_text())["pid"] > 0
    assert acquire(tmp_path) == path  # the same process may fit twice into its own folder
    release(path)
    assert not path.exists()
