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
                               position="learned", causal=False)
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
    return model.eval(), trainer, path, data


def test_fit_beats_chance_clearly(fitted):
    _, trainer, _, _ = fitted
    metrics = trainer.callback_metrics
    assert metrics["val/acc"].item() > 0.6  # chance is 1/3
    assert metrics["val/macro_f1"].item() > 0.5
    assert metrics["val/loss"].item() < math.log(NUM_CLASSES) - 0.2
    assert {"train/acc", "train/balanced_acc", "train/macro_f1"} <= set(metrics)  # logged every step


def test_acc_is_plain_accuracy_and_balanced_acc_the_mean_recall(fitted):
    """The logged names mean what they say, on the validation split the Trainer ran."""
    model, trainer, _, data = fitted
    x, y = data.val_set.tensors
    with torch.no_grad():
        pred = model(x).argmax(-1)
    recalls = torch.stack([(pred[y == c] == c).float().mean() for c in range(NUM_CLASSES)])
    logged = trainer.validate(model, data, verbose=False)[0]
    assert logged["val/acc"] == pytest.approx((pred == y).float().mean().item(), abs=1e-6)
    assert logged["val/balanced_acc"] == pytest.approx(recalls.mean().item(), abs=1e-6)
    assert abs(logged["val/acc"] - logged["val/balanced_acc"]) > 1e-4  # the split is imbalanced: they differ


def test_checkpoint_round_trip(fitted):
    model, _, path, _ = fitted
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


def test_metrics_argument_chooses_what_is_logged(tmp_path):
    model = _classifier(metrics=["acc", {"name": "Accuracy", "top_k": 2}, "mcc"])
    x, y = torch.randn(64, 8, 4), torch.randint(0, NUM_CLASSES, (64,))
    logged = _trainer(tmp_path).validate(model, DataLoader(TensorDataset(x, y), batch_size=32), verbose=False)[0]
    assert set(logged) == {"val/loss", "val/acc", "val/top2_acc", "val/mcc"}


def test_label_smoothing_and_class_weights_reach_the_loss():
    weights = [1.0, 3.0, 0.5]
    model = _classifier(label_smoothing=0.1, class_weights=weights)
    out, y = torch.randn(6, NUM_CLASSES), torch.tensor([0, 1, 2, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(out, y, weight=torch.tensor(weights), label_smoothing=0.1)
    torch.testing.assert_close(model.loss(out, y), expected)
    assert not torch.allclose(_classifier().loss(out, y), expected)
    assert "class_weights" not in model.state_dict()  # rebuilt from hparams: old checkpoints keep loading


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(class_weights=[1.0, 2.0]), r"class_weights=\[1\.0, 2\.0\] must hold num_classes=3 weights >= 0"),
        (dict(class_weights=[1.0, -1.0, 1.0]), r"must hold num_classes=3 weights >= 0"),
        (dict(label_smoothing=1.0), r"label_smoothing=1\.0 must be in \[0, 1\)"),
        (dict(task="regression", num_classes=1, label_smoothing=0.1), r"apply to task='classification' only"),
        (dict(metrics=["accuracy"]), r"metric 'accuracy' is not a classification metric"),
    ],
)
def test_loss_and_metric_argument_errors(kwargs, match):
    from nl_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        _classifier(**kwargs)


def test_new_arguments_round_trip_and_old_checkpoints_load(fitted, tmp_path):
    _, _, path, _ = fitted
    checkpoint = torch.load(path, weights_only=True)
    for key in ("metrics", "label_smoothing", "class_weights"):
        checkpoint["hyper_parameters"].pop(key)  # a checkpoint from before these arguments existed
    torch.save(checkpoint, tmp_path / "old.ckpt")
    old = load_checkpoint(tmp_path / "old.ckpt")
    assert old.label_smoothing == 0.0 and set(old.val_metrics) == {"val/acc", "val/balanced_acc", "val/macro_f1"}

    from nl_lightning.models.metrics import MetricSpec

    model = _classifier(metrics=[MetricSpec("F1Score", average="weighted"), "acc"], label_smoothing=0.2,
                        class_weights=[1.0, 2.0, 3.0])
    trainer = _trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    new = load_checkpoint(tmp_path / "new.ckpt")
    assert set(new.val_metrics) == {"val/weighted_f1", "val/acc"}
    assert new.label_smoothing == 0.2 and new.class_weights.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("position, causal, warns", [("none", False, True), ("learned", False, False),
                                                     ("rope", False, False), ("none", True, False)])
def test_warns_when_the_encoder_cannot_see_order(position, causal, warns, recwarn):
    import warnings

    warnings.simplefilter("always")
    model = _classifier(config=TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, position=position,
                                                 causal=causal))
    assert not [w for w in recwarn if "tell its tokens apart" in str(w.message)]  # not on load: on fit
    model.setup("fit")
    found = [w for w in recwarn if "cannot tell its tokens apart by position" in str(w.message)]
    assert len(found) == int(warns)


def test_wrong_num_classes_is_refused_before_training(tmp_path):
    """The data's labels are checked against num_classes in setup: before the model summary or a step."""
    from nl_lightning.data import ArrayDataModule
    from nl_lightning.errors import ConfigError

    x, y = torch.randn(64, 8, 4), torch.arange(64) % 5
    data = ArrayDataModule(x_train=x, y_train=y, val_fraction=0.25, batch_size=16)
    model = _classifier()
    steps = []

    class Count(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            steps.append("fit_start")

    with pytest.raises(ConfigError, match=r"labels \(.*\) range over 0\.\.4, but the model has num_classes=3 "
                                          r"\(class ids 0\.\.2\)\. Set --model\.init_args\.num_classes=5\."):
        _trainer(tmp_path, max_epochs=1, callbacks=[Count()]).fit(model, data)
    assert steps == []  # nothing ran: no summary, no sanity check
    data = ArrayDataModule(x_train=x, y_train=y % 3, val_fraction=0.25, batch_size=16)
    _trainer(tmp_path, max_steps=1).fit(model, data)  # labels 0..2 fit
