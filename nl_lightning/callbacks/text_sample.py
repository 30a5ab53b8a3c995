"""``TextSampleCallback``: show what an LM writes as it trains (console and logger), through the
model's tokenizer (``pl_module.codec``) or the byte vocabulary."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from nl_lightning.data.tokenizer import BYTES
from nl_lightning.errors import ConfigError, WrongTypeError


class TextSampleCallback(L.Callback):
    """After validation (and at fit end), continue ``prompt`` and log the text."""

    def __init__(self, prompt: str = "The ", max_new_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = 40, every_n_epochs: int = 1, seed: int = 0) -> None:
        if not prompt:
            raise ConfigError("TextSampleCallback(prompt=...) must not be empty.")
        if every_n_epochs < 1:
            raise ConfigError(f"every_n_epochs={every_n_epochs} must be >= 1.")
        self.prompt, self.max_new_tokens, self.temperature = prompt, max_new_tokens, temperature
        self.top_k, self.every_n_epochs, self.seed = top_k, every_n_epochs, seed
        self.last_sample: str | None = None

    def sample(self, pl_module: L.LightningModule) -> str:
        codec = getattr(pl_module, "codec", BYTES)
        idx = torch.tensor([codec.encode(self.prompt)], dtype=torch.long)
        out = pl_module.generate(idx, self.max_new_tokens, self.temperature, self.top_k, seed=self.seed)
        return codec.decode(out[0].tolist())

    def _emit(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str) -> None:
        if not hasattr(pl_module, "generate"):
            raise WrongTypeError(f"TextSampleCallback needs a model with generate(); {type(pl_module).__name__} has none.")
        # Every rank samples (seeded, so identically): under FSDP a forward is a collective.
        self.last_sample = self.sample(pl_module)
        self._report(trainer, tag)

    @rank_zero_only
    def _report(self, trainer: L.Trainer, tag: str) -> None:
        rank_zero_info(f"[{tag} step {trainer.global_step}] {self.last_sample!r}")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_text"):  # TensorBoard
                experiment.add_text("samples", self.last_sample, trainer.global_step)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._emit(trainer, pl_module, "sample")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, pl_module, "final sample")
