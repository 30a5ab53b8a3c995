"""Mixed precision: ``bf16-mixed`` on CPU; ``16-mixed`` (fp16 autocast + GradScaler) on CUDA."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import pytest
import torch

from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM

TINY = TransformerConfig(vocab_size=256, n_layers=1, d_model=32, n_heads=2, max_seq_len=32)


class DtypeAndLoss(L.Callback):
    """Training losses, and the dtype of the logits the model returns inside the training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.logit_dtypes: set[torch.dtype] = set()
        self.param_dtypes: set[torch.dtype] = set()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.model.register_forward_hook(lambda mod, args, out: self.logit_dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))
        self.param_dtypes |= {p.dtype for p in pl_module.parameters()}


def fit_tiny(precision: str, accelerator: str, steps: int = 30) -> tuple[L.Trainer, DtypeAndLoss]:
    torch.manual_seed(0)
    model = TransformerLM(TINY, OptimizerConfig(lr=3e-3), SchedulerConfig(name="none"))
    probe = DtypeAndLoss()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=precision, max_steps=steps, callbacks=[probe],
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, CharTextDataModule(seq_len=32, batch_size=32))
    return trainer, probe


def assert_learns(losses: list[float]) -> None:
    assert all(math.isfinite(x) for x in losses), losses
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, f"loss did not fall: first 5 mean {first:.3f}, last 5 mean {last:.3f}"


def test_bf16_mixed_on_cpu_autocasts_and_learns():
    trainer, probe = fit_tiny("bf16-mixed", "cpu")
    assert trainer.global_step == 30
    assert probe.logit_dtypes == {torch.bfloat16}  # matmuls ran under CPU autocast
    assert probe.param_dtypes == {torch.float32}  # master weights stay fp32
    assert_learns(probe.losses)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed AMP needs CUDA")
def test_16_mixed_on_cuda_uses_grad_scaler_and_learns():
    trainer, probe = fit_tiny("16-mixed", "gpu")
    assert isinstance(trainer.precision_plugin.scaler, torch.amp.GradScaler)
    assert trainer.precision_plugin.scaler.get_scale() > 0
    assert probe.logit_dtypes == {torch.float16}
    assert probe.param_dtypes == {torch.float32}
    assert_learns(probe.losses)
