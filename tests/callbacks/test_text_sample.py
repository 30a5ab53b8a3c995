"""TextSampleCallback: samples after validation and at fit end, logged as text, starting with the prompt."""

from __future__ import annotations

import logging

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import Logger

from nl_lightning.callbacks import TextSampleCallback
from nl_lightning.data import CharTextDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerConfig, TransformerLM


class _TextExperiment:
    def __init__(self) -> None:
        self.texts: list[tuple[str, str, int]] = []

    def add_text(self, tag: str, text: str, step: int) -> None:  # TensorBoard's SummaryWriter API
        self.texts.append((tag, text, step))


class _RecordingLogger(Logger):
    """A logger whose experiment records add_text calls, as a TensorBoard writer would receive them."""

    def __init__(self) -> None:
        super().__init__()
        self._experiment = _TextExperiment()

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    @property
    def experiment(self) -> _TextExperiment:
        return self._experiment

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def _fit(tmp_path, callback: TextSampleCallback, epochs: int = 1) -> _RecordingLogger:
    path = tmp_path / "corpus.txt"
    path.write_text("Hello there. " * 40)
    logger = _RecordingLogger()
    model = TransformerLM(
        TransformerConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, max_seq_len=64, mlp_hidden=32),
        OptimizerConfig(lr=1e-3), SchedulerConfig("constant"),
    )
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
        logger=logger, callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    trainer.fit(model, CharTextDataModule(str(path), seq_len=16, batch_size=4))
    return logger


def test_logs_a_sample_that_starts_with_the_prompt(tmp_path, caplog):
    callback = TextSampleCallback(prompt="Hello", max_new_tokens=12, temperature=1.0, top_k=None)
    with caplog.at_level(logging.INFO):
        logger = _fit(tmp_path, callback)
    texts = logger.experiment.texts
    assert [tag for tag, _, _ in texts] == ["samples", "samples"]  # after validation, and at fit end
    assert texts[-1][1] == callback.last_sample
    assert callback.last_sample.startswith("Hello")
    assert len(callback.last_sample.encode("utf-8", errors="replace")) >= len("Hello") + 4
    assert f"[final sample step 2] {callback.last_sample!r}" in caplog.text


def test_every_n_epochs(tmp_path):
    callback = TextSampleCallback(prompt="Hi", max_new_tokens=4, every_n_epochs=2)
    texts = _fit(tmp_path, callback, epochs=3).experiment.texts
    assert [step for _, _, step in texts] == [4, 6]  # epoch 2's validation (step 4), then the fit end


def test_seeded_samples_repeat():
    callback = TextSampleCallback(prompt="Hello", max_new_tokens=12, temperature=1.0, seed=5)
    model = TransformerLM(TransformerConfig(vocab_size=256, n_layers=1, d_model=16, n_heads=2, max_seq_len=64))
    assert callback.sample(model) == callback.sample(model)


def test_needs_a_model_with_generate(tmp_path):
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0,
        logger=False, callbacks=[TextSampleCallback()], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    with pytest.raises(TypeError, match=r"TextSampleCallback needs a model with generate\(\); BoringModel has none"):
        trainer.fit(BoringModel())


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(prompt=""), r"TextSampleCallback\(prompt=\.\.\.\) must not be empty"),
     (dict(every_n_epochs=0), r"every_n_epochs=0 must be >= 1")],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TextSampleCallback(**kwargs)


def test_samples_through_the_models_tokenizer(trained_tokenizer):
    """A model with a tokenizer is prompted and read through it, not through bytes."""
    import torch

    from nl_lightning.data.tokenizer import BYTES

    model = TransformerLM(TransformerConfig(vocab_size=512, n_layers=1, d_model=16, n_heads=2, max_seq_len=64),
                          tokenizer=trained_tokenizer)
    callback = TextSampleCallback(prompt="The object", max_new_tokens=12, temperature=1.0, top_k=None, seed=5)
    sample = callback.sample(model)
    assert sample.startswith("The object")
    assert sample == model.generate("The object", 12, temperature=1.0, top_k=None, seed=5)
    as_bytes = model.generate(torch.tensor([BYTES.encode("The object")]), 12, temperature=1.0, top_k=None, seed=5)
    assert sample != BYTES.decode(as_bytes[0].tolist())  # what a byte-only callback would have shown
