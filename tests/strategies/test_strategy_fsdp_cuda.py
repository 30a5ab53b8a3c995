"""CUDA-only: Lightning's ``FSDPStrategy`` (FSDP1; it refuses CPU) trains a TransformerLM in bf16-mixed
and its checkpoint loads back into the same weights. Skipped without CUDA (``benchmarks/gpu.sh``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import FSDPStrategy

from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM
from nl_lightning.models.checkpoint import load_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDPStrategy needs CUDA")]


def test_fsdp_trains_in_bf16_mixed_and_its_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=256, n_layers=2, d_model=64, n_heads=4, max_seq_len=64)
    model = TransformerLM(config, OptimizerConfig(lr=3e-3), SchedulerConfig(name="none"))
    trainer = L.Trainer(accelerator="gpu", devices=1, strategy=FSDPStrategy(), precision="bf16-mixed", max_steps=40,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    data = CharTextDataModule(seq_len=64, batch_size=32)
    trainer.fit(model, data)
    assert trainer.global_step == 40 and torch.isfinite(trainer.logged_metrics["train/loss"])
    assert float(trainer.logged_metrics["train/loss"]) < 3.5  # from ~5.5 (uniform over 256 bytes)
    path = tmp_path / "fsdp.ckpt"
    trainer.save_checkpoint(path)
    trained = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    loaded = load_checkpoint(path)
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value.cpu(), trained[name], msg=name)
