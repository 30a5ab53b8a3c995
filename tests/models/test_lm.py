"""TransformerLM under a real Trainer: learning, determinism, safe checkpoints, batch errors, bf16."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from nl_lightning.data import CharTextDataModule, TokenizedTextDataModule
from nl_lightning.models import (
    CheckpointError,
    OptimizerConfig,
    SchedulerConfig,
    TransformerClassifier,
    TransformerConfig,
    TransformerLM,
    load_checkpoint,
)

TEXT = "the quick brown fox jumps over the lazy dog. " * 60
CONFIG = dict(vocab_size=256, n_layers=1, d_model=32, n_heads=4, max_seq_len=32, mlp_hidden=64)
TRAIN_STEPS = 15


class _Payload:
    """An arbitrary pickled class: a safe loader must refuse it without ever rebuilding it."""

    rebuilt = False

    def __setstate__(self, state):
        type(self).rebuilt = True


class _LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


def _lm(**optimizer) -> TransformerLM:
    return TransformerLM(
        TransformerConfig(**CONFIG), OptimizerConfig(lr=3e-3, **optimizer), SchedulerConfig("cosine", warmup_steps=2),
    )


def _data(root: Path) -> CharTextDataModule:
    path = root / "corpus.txt"
    path.write_text(TEXT)
    return CharTextDataModule(str(path), seq_len=16, batch_size=8)


def _trainer(root: Path, **overrides) -> L.Trainer:
    kwargs = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(root), num_sanity_val_steps=0, max_epochs=1,
        limit_train_batches=TRAIN_STEPS, limit_val_batches=2, deterministic=True,
    )
    return L.Trainer(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One short fit shared by the tests below: (model, trainer, checkpoint, val loss before, after)."""
    root = tmp_path_factory.mktemp("lm")
    L.seed_everything(0, verbose=False)
    model, data, trainer = _lm(), _data(root), _trainer(root)
    before = trainer.validate(model, data, verbose=False)[0]["val/loss"]
    trainer.fit(model, data)
    after = trainer.callback_metrics["val/loss"].item()  # validated at the end of the epoch
    path = root / "lm.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), trainer, path, before, after


def test_fit_lowers_the_loss(fitted):
    _, trainer, _, before, after = fitted
    assert before == pytest.approx(math.log(256), abs=0.3)  # an untrained byte model is near uniform
    assert after < before - 1.0
    assert trainer.global_step == TRAIN_STEPS
    assert math.isfinite(trainer.callback_metrics["val/perplexity"].item())
    assert math.isfinite(trainer.callback_metrics["train/perplexity"].item())


def test_scheduler_steps_every_optimizer_step(fitted):
    _, trainer, _, _, _ = fitted
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and config.scheduler.last_epoch == TRAIN_STEPS


def test_same_seed_gives_identical_losses(tmp_path):
    runs = []
    for _ in range(2):
        L.seed_everything(123, verbose=False)
        recorder = _LossRecorder()
        model = _lm()
        _trainer(tmp_path, limit_train_batches=6, limit_val_batches=0, callbacks=[recorder]).fit(model, _data(tmp_path))
        runs.append((recorder.losses, model.state_dict()))
    (losses_a, state_a), (losses_b, state_b) = runs
    assert len(losses_a) == 6 and len(set(losses_a)) > 1
    assert losses_a == losses_b
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def test_checkpoint_round_trip_gives_identical_logits(fitted):
    model, _, path, _, _ = fitted
    idx = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        expected = model(idx)
        for loaded in (TransformerLM.load(path), load_checkpoint(path)):
            assert type(loaded) is TransformerLM and not loaded.training
            assert loaded.config == model.config
            assert torch.equal(loaded(idx), expected)


def test_checkpoint_is_plain_data(fitted):
    _, _, path, _, _ = fitted
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["nl_lightning"]["class_path"] == "nl_lightning.models.lm.TransformerLM"
    assert checkpoint["hyper_parameters"]["config"]["d_model"] == CONFIG["d_model"]
    assert checkpoint["lr_schedulers"] and checkpoint["optimizer_states"]


def test_corrupt_checkpoint(fitted, tmp_path):
    _, _, path, _, _ = fitted
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt is truncated or corrupt and cannot be read"):
        TransformerLM.load(truncated)


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not a Lightning checkpoint \(no 'state_dict'\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("wrap", [lambda obj: obj, lambda obj: {"state_dict": {}, "extra": obj}], ids=["bare", "nested"])
def test_pickled_class_is_refused_without_running_it(tmp_path, wrap):
    path = tmp_path / "untrusted.ckpt"
    torch.save(wrap(_Payload()), path)
    _Payload.rebuilt = False
    with pytest.raises(CheckpointError, match=r"Refusing to load .*untrusted\.ckpt: it holds a pickled Python object \((tests\.models\.)?test_lm\._Payload\), not only tensors"):
        TransformerLM.load(path)
    assert not _Payload.rebuilt


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"Checkpoint not found: .*nothing\.ckpt\. Pass the \.ckpt written by"):
        load_checkpoint(tmp_path / "nothing.ckpt")


def test_record_naming_a_foreign_class_is_not_imported(fitted, tmp_path):
    _, _, path, _, _ = fitted
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["nl_lightning"]["class_path"] = "os.system"
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    with pytest.raises(CheckpointError, match=r"names the model class 'os\.system', which is not on nl_lightning's allow-list"):
        load_checkpoint(forged)


def test_wrong_class_and_wrong_shapes(fitted, tmp_path):
    _, _, path, _, _ = fitted
    with pytest.raises(CheckpointError, match=r"holds a nl_lightning\.models\.lm\.TransformerLM, not a TransformerClassifier"):
        TransformerClassifier.load(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["config"]["d_model"] = 64
    resized = tmp_path / "resized.ckpt"
    torch.save(checkpoint, resized)
    with pytest.raises(CheckpointError, match=r"resized\.ckpt does not match TransformerLM: .*size mismatch"):
        TransformerLM.load(resized)


@pytest.mark.parametrize(
    "batch, match",
    [
        ((torch.zeros(2, 4, dtype=torch.long),), r"TransformerLM expects batches \(idx, targets\)"),
        (torch.zeros(2, 4, dtype=torch.long), r"TransformerLM expects batches \(idx, targets\)"),
        ((torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.long)), r"got \(2, 4\) torch\.float32 and \(2, 4\) torch\.int64"),
        ((torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long)),
         r"same \(batch, seq\) shape, got \(2, 4\) torch\.int64 and \(2, 5\)"),
        ((torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long)), r"got \(8,\) torch\.int64"),
    ],
)
def test_batch_errors(batch, match):
    with pytest.raises(ValueError, match=match):
        _lm().training_step(batch, 0)


def test_token_shape_error_from_the_model():
    with pytest.raises(ValueError, match=r"takes token ids of shape \(batch, seq\) and integer dtype, got \(2, 4, 3\)"):
        _lm()(torch.zeros(2, 4, 3))


def test_predict_step_gives_next_token_log_probs(fitted):
    model = fitted[0]
    idx = torch.randint(0, 256, (3, 5))
    with torch.no_grad():
        out = model.predict_step((idx,), 0)
        assert out.shape == (3, 256)
        torch.testing.assert_close(out, model(idx)[:, -1].log_softmax(-1))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3))


def test_lm_generate_is_seeded_and_restores_train_mode(fitted):
    model = fitted[0].train()
    prompt = torch.randint(0, 256, (1, 4))
    a = model.generate(prompt, max_new_tokens=10, temperature=1.0, top_k=None, seed=3)
    b = model.generate(prompt, max_new_tokens=10, temperature=1.0, top_k=None, seed=3)
    assert model.training
    model.eval()
    assert a.shape == (1, 14) and torch.equal(a, b)


def test_bf16_mixed_fit_on_cpu(tmp_path):
    L.seed_everything(0, verbose=False)
    model = _lm()
    trainer = _trainer(tmp_path, precision="bf16-mixed", limit_train_batches=4, limit_val_batches=1)
    trainer.fit(model, _data(tmp_path))
    assert trainer.global_step == 4
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())
    assert math.isfinite(trainer.callback_metrics["val/loss"].item())
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---- a real tokenizer -----------------------------------------------------------------------------
def test_tokenizer_larger_than_the_embedding_is_refused(trained_tokenizer):
    from nl_lightning.data.tokenizer import TokenizerError

    with pytest.raises(TokenizerError, match=r"vocab_size=256 embedding rows but the tokenizer .* has 512 tokens"):
        TransformerLM(TransformerConfig(**CONFIG), tokenizer=trained_tokenizer)


def test_checkpoint_holds_the_tokenizer_and_generates_text_without_its_file(trained_tokenizer, tmp_path):
    import shutil

    tokenizer = shutil.copy(trained_tokenizer, tmp_path / "tokenizer.json")
    model = TransformerLM(TransformerConfig(**{**CONFIG, "vocab_size": 512}), tokenizer=str(tokenizer))
    (tmp_path / "doc.txt").write_text(TEXT)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(model, TokenizedTextDataModule(str(tmp_path / "doc.txt"), str(tokenizer), seq_len=16, batch_size=4))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    stored = torch.load(tmp_path / "m.ckpt", weights_only=True)  # plain strings and tensors only
    assert stored["hyper_parameters"]["tokenizer"] == str(tokenizer)  # the config keeps the path it was given
    assert stored["nl_lightning"]["arguments"]["tokenizer"] == Path(tokenizer).read_text()
    Path(tokenizer).unlink()  # the checkpoint must not need the file any more
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    text = loaded.generate("The object ", max_new_tokens=8, seed=0)
    assert isinstance(text, str) and text.startswith("The object ")
    assert loaded.codec.to_json() == model.codec.to_json()
    ids = loaded.generate(torch.tensor([loaded.codec.encode("The object ")]), max_new_tokens=8, seed=0)
    assert ids.shape[1] == len(loaded.codec.encode("The object ")) + 8 and loaded.codec.decode(ids[0].tolist()) == text


def test_checkpoint_keeps_the_model_folders_chat_template(trained_tokenizer, tmp_path):
    """A model folder's tokenizer_config.json (the chat template) travels in the checkpoint with the tokenizer."""
    import json
    import shutil

    from nl_lightning.data.chat import render_chat

    folder = tmp_path / "hf"
    folder.mkdir()
    shutil.copy(trained_tokenizer, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "[{{ messages[0]['content'] }}]"}))
    model = TransformerLM(TransformerConfig(**{**CONFIG, "vocab_size": 512}), tokenizer=str(folder))
    save_path = tmp_path / "m.ckpt"
    trainer = _trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(save_path)
    shutil.rmtree(folder)
    loaded = load_checkpoint(save_path)
    assert render_chat(loaded.codec, [{"role": "user", "content": "hi"}]) == "[hi]"
    assert loaded.codec.to_json() == model.codec.to_json()


def test_byte_model_checkpoints_store_no_tokenizer(fitted, tmp_path):
    model, trainer = fitted[0], fitted[1]
    trainer.save_checkpoint(tmp_path / "bytes.ckpt")
    stored = torch.load(tmp_path / "bytes.ckpt", weights_only=True)
    assert "arguments" not in stored["nl_lightning"] and stored["hyper_parameters"]["tokenizer"] is None
    assert model.generate("ab", max_new_tokens=3, seed=0).startswith("ab")


def test_example_input_array_is_one_sample_at_the_model_length_unless_set():
    model = TransformerLM(TransformerConfig(vocab_size=16, n_layers=1, d_model=16, n_heads=2, max_seq_len=12))
    default = model.example_input_array
    assert default.shape == (1, 12) and default.dtype == torch.long  # Lightning's summary and TensorBoard's graph
    given = torch.zeros(2, 5, dtype=torch.long)
    model.example_input_array = given
    assert model.example_input_array is given
    model.example_input_array = None
    assert model.example_input_array.shape == (1, 12)
    model.to("meta")  # built on the module's device: `module(module.example_input_array)` runs where the weights are
    assert model.example_input_array.device.type == "meta"
