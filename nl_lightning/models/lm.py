"""``TransformerLM``: a causal language model as a LightningModule (loss, perplexity, sampling)."""

from __future__ import annotations

from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.text import Perplexity

from nl_lightning.errors import DataError
from nl_lightning.export.signature import task_prediction
from nl_lightning.data.tokenizer import TextCodec, TokenizerError, check_vocab, load_codec
from nl_lightning.models.base import TaskModule
from nl_lightning.models.config import TransformerConfig, as_config
from nl_lightning.models.generate import generate
from nl_lightning.models.lora import LoRAConfig
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
        tokenizer: str | None = None,
        lora: LoRAConfig | None = None,
        pretrained: str | None = None,
    ) -> None:
        """
        Args:
            config: architecture (default: the 'tiny' preset, byte vocabulary).
            optimizer: optimizer settings (default AdamW, lr 3e-4).
            scheduler: LR schedule, stepped every optimizer step (default cosine).
            compile: ``torch.compile`` the model in place before training.
            tokenizer: a ``tokenizer.json`` or a model folder holding one; None = bytes. Its JSON is
                stored in every checkpoint, so ``generate`` and servers need no other file.
            lora: train low-rank adapters on these projections only; the rest is frozen (see ``LoRAConfig``).
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
        self.codec = load_codec(tokenizer)
        if tokenizer is not None:  # without one, ids are bytes when there are 256 and the user's own otherwise
            check_vocab(self.codec, self.config.vocab_size)
        self._setup_lora(lora)
        self.val_ppl, self.test_ppl = Perplexity(), Perplexity()

    def setup(self, stage: str) -> None:
        """Refuse data tokenized with another tokenizer than the model's (ids would mean other text)."""
        codec = getattr(getattr(self._trainer, "datamodule", None), "codec", None)
        if isinstance(codec, TextCodec) and codec.to_json() != self.codec.to_json():
            raise TokenizerError(
                f"The data is tokenized with {codec.source} but the model's tokenizer is {self.codec.source}; give "
                "both the same tokenizer.json (model.init_args.tokenizer and data.init_args.tokenizer)."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The tokenizer (its JSON, with the folder's chat template and special tokens) goes into the
        checkpoint as a plain string, replacing its path on load."""
        super().on_save_checkpoint(checkpoint)
        stored = self.codec.to_checkpoint()
        if stored is not None:
            checkpoint["nl_lightning"].setdefault("arguments", {})["tokenizer"] = stored

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
        return task_prediction(self(idx), "lm")

    @overload
    def generate(self, idx: str, max_new_tokens: int = ..., temperature: float = ..., top_k: int | None = ...,
                 seed: int | None = ...) -> str: ...
    @overload
    def generate(self, idx: Tensor, max_new_tokens: int = ..., temperature: float = ..., top_k: int | None = ...,
                 seed: int | None = ...) -> Tensor: ...

    def generate(self, idx: Tensor | str, max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = 40, seed: int | None = None) -> Tensor | str:
        """Sample a continuation of ``idx`` (B, T) with the KV cache; returns (B, T + new). Given text,
        returns text (prompt included), through the model's tokenizer."""
        if isinstance(idx, str):
            prompt = torch.tensor([self.codec.encode(idx)], dtype=torch.long)
            return self.codec.decode(self.generate(prompt, max_new_tokens, temperature, top_k, seed)[0].tolist())
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
        raise DataError("TransformerLM expects batches (idx, targets) of token ids, each (batch, seq).")
    idx, targets = batch
    if idx.shape != targets.shape or idx.dim() != 2 or idx.is_floating_point():
        raise DataError(
            f"TransformerLM expects idx and targets as integer tensors of the same (batch, seq) shape, "
            f"got {tuple(idx.shape)} {idx.dtype} and {tuple(targets.shape)} {targets.dtype}."
        )
    return idx, targets
