"""TransformerClassifier under a real Trainer: learning, regression, checkpoints, batch errors."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import OptimizerConfig, SchedulerConfig, TransformerClassifier, TransformerConfig, load_checkpoint

NUM_CLASSES = 3


def _classifier(**kwargs) -> TransformerClassifier:
    config = TransformerConfig(input_dim=4, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, mlp_hidden=64,
                               position="none", causal=False)
    defaults = dict(config=config, num_classes=NUM_CLASSES, optimizer=OptimizerConfig(lr=5e-3),
                    scheduler=SchedulerConfig("constant"))
    return TransformerClassifier(**{**defaults, **kwargs})


def _trainer(root, **overrides) -> L.Trainer:
    kwargs = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(root), num_sanity_val_steps=0, deterministic=True,
    )
    return L.Trainer(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    L.seed_everything(0, verbose=False)
    data = SyntheticSequenceDataModule("features", num_samples=640, seq_len=8, num_features=4,
                                       num_classes=NUM_CLASSES, batch_size=32, seed=0)
    model, trainer = _classifier(), _trainer(root, max_epochs=3)
    trainer.fit(model, data)
    path = root / "classifier.ckpt"
    trainer.save_checkpoint(path)
    return model.eval(), trainer, path


def test_fit_beats_chance_clearly(fitted):
    _, trainer, _ = fitted
    metrics = trainer.callback_metrics
    assert metrics["val/acc"].item() > 0.6  # chance is 1/3
    assert metrics["val/f1"].item() > 0.5
    assert metrics["val/loss"].item() < math.log(NUM_CLASSES) - 0.2
    assert {"train/acc", "train/f1"} <= set(metrics)  # training metrics are logged every step


def test_checkpoint_round_trip(fitted):
    model, _, path = fitted
    x = torch.randn(5, 8, 4)
    loaded = load_checkpoint(path)
    assert type(loaded) is TransformerClassifier and loaded.task == "classification"
    assert torch.load(path, weights_only=True)["hyper_parameters"]["num_classes"] == NUM_CLASSES
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(TransformerClassifier.load(path)(x), model(x))


def test_predict_step_gives_probabilities(fitted):
    model = fitted[0]
    x = torch.randn(4, 8, 4)
    padding = torch.zeros(4, 8, dtype=torch.bool)
    padding[:, 6:] = True
    with torch.no_grad():
        probs = model.predict_step({"x": x, "key_padding_mask": padding}, 0)
        assert probs.shape == (4, NUM_CLASSES)
        torch.testing.assert_close(probs.sum(-1), torch.ones(4))
        torch.testing.assert_close(probs, model.predict_step({"x": x[:, :6]}, 0))  # padding is ignored
        torch.testing.assert_close(model.predict_step((x,), 0), model(x).softmax(-1))


def test_regression_logs_mse_and_mae(tmp_path):
    L.seed_everything(0, verbose=False)
    x = torch.randn(256, 6, 4)
    y = x[:, :, 0].mean(1, keepdim=True) * 3  # (N, 1) targets
    train = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64)
    model = _classifier(num_classes=1, task="regression")
    trainer = _trainer(tmp_path, max_epochs=4)
    before = trainer.validate(model, val, verbose=False)[0]  # validate-then-fit must work (metric states)
    trainer.fit(model, train, val)
    after = trainer.callback_metrics
    assert {"train/mse", "train/mae", "val/mse", "val/mae"} <= set(after), sorted(after)
    assert after["val/mse"].item() < 0.5 * before["val/mse"]
    assert after["val/mae"].item() < before["val/mae"]
    with torch.no_grad():
        pred = model.eval().predict_step((x[192:],), 0)
    assert pred.shape == (64, 1)
    torch.testing.assert_close(((pred - y[192:]) ** 2).mean(), after["val/mse"], atol=1e-4, rtol=1e-4)


def test_same_seed_gives_identical_weights(tmp_path):
    states = []
    for _ in range(2):
        L.seed_everything(5, verbose=False)
        data = SyntheticSequenceDataModule("tokens", num_samples=128, seq_len=8, vocab_size=8, num_classes=3, batch_size=16)
        config = TransformerConfig(vocab_size=8, n_layers=1, d_model=16, n_heads=2, max_seq_len=16, causal=False)
        model = TransformerClassifier(config, num_classes=3, pooling="cls", optimizer=OptimizerConfig(lr=3e-3))
        _trainer(tmp_path, max_steps=4, limit_val_batches=0).fit(model, data)
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_tabular_rows_are_one_token_per_feature():
    config = TransformerConfig(input_dim=1, n_layers=1, d_model=16, n_heads=2, position="none", causal=False)
    model = TransformerClassifier(config, num_classes=2).eval()
    rows = torch.randn(3, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(rows), model(rows.unsqueeze(-1)))


@pytest.mark.parametrize(
    "batch, match",
    [
        ((torch.randn(2, 8, 4), torch.tensor([0, 3])), r"Class ids must be in \[0, 3\); got min 0, max 3\. Check num_classes"),
        ((torch.randn(2, 8, 4), torch.tensor([-1, 0])), r"Class ids must be in \[0, 3\); got min -1, max 0"),
        ((torch.randn(2, 8, 4), torch.tensor([0.0, 1.0])),
         r"targets must be integer class ids of shape \(batch,\), got \(2,\) torch\.float32"),
        ((torch.randn(2, 8, 4), torch.tensor([[0], [1]])), r"class ids of shape \(batch,\), got \(2, 1\)"),
        ((torch.randn(2, 8, 4).index_fill(1, torch.tensor([3]), float("nan")), torch.tensor([0, 1])),
         r"Batch features contain NaN or Inf"),
        ((torch.full((2, 8, 4), float("inf")), torch.tensor([0, 1])), r"Batch features contain NaN or Inf"),
        ({"x": torch.randn(2, 8, 4)}, r"TransformerClassifier needs batch keys 'x' and 'y', got \['x'\]"),
        ((torch.randn(2, 8, 4),), r"TransformerClassifier expects batches \(x, y\) or \{'x': \.\.\., 'y': \.\.\.\}"),
    ],
)
def test_batch_errors(batch, match):
    with pytest.raises(ValueError, match=match):
        _classifier().training_step(batch, 0)


def test_feature_shape_errors():
    with pytest.raises(ValueError, match=r"takes float features of shape \(batch, seq, 4\), got \(2, 8, 5\) torch\.float32"):
        _classifier()(torch.randn(2, 8, 5))
    with pytest.raises(ValueError, match=r"got \(2, 8, 4\) torch\.int64"):
        _classifier()(torch.zeros(2, 8, 4, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(task="ranking"), r"task='ranking' is not supported; choose 'classification' or 'regression'"),
        (dict(num_classes=1), r"num_classes=1 is too small for classification; classification needs >= 2"),
        (dict(num_classes=0, task="regression"), r"num_classes=0 is too small for regression"),
        (dict(pooling="max"), r"Unknown pooling 'max'; choose one of"),
    ],
)
def test_construction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _classifier(**kwargs)


def test_default_config_is_a_bidirectional_tiny_preset():
    model = TransformerClassifier()
    assert model.config == TransformerConfig.from_preset("tiny", causal=False)


def _first_position_sees_the_last(model: TransformerClassifier) -> bool:
    x = torch.randn(1, 6, 4)
    changed = x.clone()
    changed[0, -1] += 5.0
    with torch.no_grad():
        h = model.model.transformer(model.model.transformer.embed_inputs(x), embedded=True)
        h2 = model.model.transformer(model.model.transformer.embed_inputs(changed), embedded=True)
    return not torch.allclose(h[0, 0], h2[0, 0])


@pytest.mark.parametrize("as_dict", [False, True], ids=["TransformerConfig", "dict"])
def test_classifier_is_bidirectional_unless_told_otherwise(as_dict, seed):
    """The task default (causal=False) applies whenever the user did not set `causal`, whatever
    form the config takes; an explicit causal=True is kept."""
    fields = dict(input_dim=4, n_layers=1, d_model=16, n_heads=2, position="none")
    unset = TransformerClassifier(config=fields if as_dict else TransformerConfig(**fields))
    assert unset.config.causal is False and unset.model.transformer.config.causal is False
    assert unset.hparams["config"]["causal"] is False  # the checkpoint records what was built
    assert _first_position_sees_the_last(unset)
    explicit = TransformerClassifier(config={**fields, "causal": True} if as_dict else TransformerConfig(**fields, causal=True))
    assert explicit.config.causal is True and not _first_position_sees_the_last(explicit)


def test_lm_is_causal_unless_told_otherwise():
    from nl_lightning.models import TransformerLM

    assert TransformerLM(config={"n_layers": 1, "d_model": 16, "n_heads": 2}).config.causal is True
    with pytest.raises(ValueError, match=r"CausalLM needs TransformerConfig.causal=True"):
        TransformerLM(config={"n_layers": 1, "d_model": 16, "n_heads": 2, "causal": False})
