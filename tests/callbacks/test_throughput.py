"""TaskThroughputMonitor: tokens/s, samples/s, FLOP/s and MFU logged by Lightning's ThroughputMonitor."""

from __future__ import annotations

import pytest
import torch

from nl_lightning.callbacks import TaskThroughputMonitor
from nl_lightning.data import CharTextDataModule
from nl_lightning.models import TransformerConfig, TransformerLM
from nl_lightning.models.flops import batch_flops
from tracking_utils import tb_scalars, trainer


def test_tokens_samples_flops_and_mfu_are_logged(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, max_seq_len=16))
    data = CharTextDataModule(seq_len=16, batch_size=4)
    monitor = TaskThroughputMonitor(window_size=3, available_flops=1e9)
    run = trainer(tmp_path, max_steps=6, log_every_n_steps=1, limit_val_batches=0, callbacks=[monitor])
    run.fit(model, data)
    scalars = tb_scalars(run.logger.log_dir)
    assert [s for s, _ in scalars["train/samples"]] == [0, 1, 2, 3, 4, 5]
    assert scalars["train/samples"][-1][1] == 6 * 4
    assert scalars["train/lengths"][-1][1] == 6 * 4 * 16  # tokens
    assert model.flops_per_batch == batch_flops(model, (torch.zeros(4, 16, dtype=torch.long),) * 2)
    # once the window is full, rates are logged: tokens/s = 16 x samples/s, MFU = FLOP/s / peak
    for (_, items), (_, samples) in zip(scalars["train/device/items_per_sec"], scalars["train/device/samples_per_sec"]):
        assert items == pytest.approx(16 * samples, rel=1e-5)
    for (_, flops), (_, mfu) in zip(scalars["train/device/flops_per_sec"], scalars["train/device/mfu"]):
        assert mfu == pytest.approx(flops / 1e9, rel=1e-5)
    assert len(scalars["train/device/mfu"]) == 4  # steps 2..5


def test_auto_peak_is_measured_on_cpu(tmp_path):
    monitor = TaskThroughputMonitor()
    run = trainer(tmp_path, logger=False, max_steps=1, limit_val_batches=0, callbacks=[monitor])
    run.fit(TransformerLM(TransformerConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, max_seq_len=16)),
            CharTextDataModule(seq_len=16, batch_size=2))
    assert monitor.available_flops is not None and monitor.available_flops > 1e6  # Lightning's table has no CPU


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"window_size=1\) must be >= 2"):
        TaskThroughputMonitor(window_size=1)
    with pytest.raises(ValueError, match=r"available_flops='fast'\): give a number, 'auto' or None"):
        TaskThroughputMonitor(available_flops="fast")
