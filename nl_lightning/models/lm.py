"""``TransformerLM``: a causal language model as a LightningModule (loss, perplexity, sampling)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.text import Perplexity

from nl_lightning.models.base import TaskModule
from nl_lightning.models.config import TransformerConfig, as_config
from nl_lightning.models.generate import generate
from nl_lightning.models.optim import OptimizerConfig, SchedulerConfig
from nl_lightning.models.transformer import CausalLM


class TransformerLM(TaskModule):
    """Next-token prediction with cross-entropy; batches are ``(idx, targets)``, both (B, T) long."""

    def __init__(
        self,
        config: TransformerConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        scheduler: SchedulerConfig | None = None,
        compile: bool = False,
        pretrained: str | None = None,
    ) -> None:
        """
        Args:
            config: architecture (default: the 'tiny' preset, byte vocabulary).
            optimizer: optimizer settings (default AdamW, lr 3e-4).
            scheduler: LR schedule, stepped every optimizer step (default cosine).
            compile: ``torch.compile`` the model in place before training.
            pretrained: a Hugging Face or LitGPT model folder to start from, architecture and weights
                (docs/pretrained.md); ``config`` then stays unset, or differs only in training fields.
        """
        super().__init__(optimizer, scheduler, compile)
        self.save_hyperparameters()
        self._plain_hparams()
        self.pretrained_source = None
        if pretrained is not None:  # the checkpoint keeps the weights and records the folder (+ hash)
            from nl_lightning.pretrained.task import load_lm

            self.config, self.model, self.pretrained_source = load_lm(pretrained, config)
            self.hparams["pretrained"] = None
        else:
            self.config = as_config(config, causal=True)
            self.model = CausalLM(self.config)
        self.hparams["config"] = self.config.to_dict()  # resolved: the checkpoint says what was built
        self.val_ppl, self.test_ppl = Perplexity(), Perplexity()

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx)

    def _step(self, batch: Any, stage: str) -> Tensor:
        idx, targets = _unpack(batch)
        logits = self(idx)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=stage != "train")
        if stage == "train":  # per-batch value: exp(loss), no second softmax over (B, T, V)
            self.log("train/perplexity", loss.detach().exp())
        else:  # accumulated over the whole epoch by torchmetrics
            metric = getattr(self, f"{stage}_ppl")
            metric.update(logits.float(), targets)
            self.log(f"{stage}/perplexity", metric, prog_bar=True)
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Next-token log-probabilities at the last position: (B, V)."""
        idx = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(idx)[:, -1].float().log_softmax(-1)

    def generate(self, idx: Tensor, max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = 40, seed: int | None = None) -> Tensor:
        """Sample a continuation of ``idx`` (B, T) with the KV cache; returns (B, T + new)."""
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            return generate(self.model, idx.to(self.device), max_new_tokens, temperature, top_k, generator)
        finally:
            self.train(was_training)


def _unpack(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        batch = (batch.get("idx", batch.get("x")), batch.get("targets", batch.get("y")))
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("TransformerLM expects batches (idx, targets) of token ids, each (batch, seq).")
    idx, targets = batch
    if idx.shape != targets.shape or idx.dim() != 2 or idx.is_floating_point():
        raise ValueError(
            f"TransformerLM expects idx and targets as integer tensors of the same (batch, seq) shape, "
            f"got {tuple(idx.shape)} {idx.dtype} and {tuple(targets.shape)} {targets.dtype}."
        )
    return idx, targets
