"""Input normalization lives in the model: Trainer, checkpoint, ONNX and INT8 agree on raw features."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from nl_lightning.data import ArrayDataModule
from nl_lightning.data.stats import feature_moments
from nl_lightning.models import TransformerClassifier, TransformerConfig, load_checkpoint
from nl_lightning.nn import FeatureNorm

MEAN = np.array([100.0, -50.0, 0.0, 10.0], dtype=np.float32)
STD = np.array([50.0, 0.1, 1.0, 1000.0], dtype=np.float32)


def _raw_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features far from unit scale; labels from the normalized features (learnable only once normalized)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 8, 4)).astype(np.float32)
    y = z.mean(1)[:, :3].argmax(-1).astype(np.int64)
    return z * STD + MEAN, y


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("norm")
    torch.manual_seed(0)
    x, y = _raw_data(768, seed=0)
    dm = ArrayDataModule(x_train=x, y_train=y, val_fraction=0.25, normalize=True, batch_size=64, seed=0)
    model = TransformerClassifier(
        TransformerConfig(input_dim=4, n_layers=1, d_model=32, n_heads=2, max_seq_len=8, position="none"),
        num_classes=3, optimizer={"lr": 3e-3},
    )
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    trainer = _trainer(tmp_path, max_epochs=4)
    trainer.fit(model, dm)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    x_test, y_test = _raw_data(256, seed=1)
    predict_dm = ArrayDataModule(x_predict=x_test, batch_size=64)
    probs = torch.cat(_trainer(tmp_path).predict(model, predict_dm))
    return {"model": model, "dm": dm, "x": x, "seen": seen, "ckpt": ckpt, "x_test": x_test, "y_test": y_test,
            "probs": probs, "tmp": tmp_path}


def test_statistics_are_the_training_splits_and_live_in_the_model(trained):
    dm, norm = trained["dm"], trained["model"].model.input_norm
    mean, std = feature_moments([trained["x"][dm.datasets["train"].rows]])
    assert_close(norm.mean, torch.tensor(mean, dtype=torch.float32))
    assert_close(norm.std, torch.tensor(std, dtype=torch.float32))
    state = trained["model"].state_dict()
    assert {"model.input_norm.mean", "model.input_norm.std"} <= set(state)


def test_the_model_is_fed_raw_features(trained):
    """The DataModule hands normalization over: training batches reach the model unnormalized."""
    first = trained["seen"][0]
    assert trained["dm"].model_normalizes
    assert first.abs().max() > 100  # raw scale (the 4th feature has std 1000)


def test_model_learned_the_normalized_rule(trained):
    accuracy = (trained["probs"].argmax(-1).numpy() == trained["y_test"]).mean()
    assert accuracy > 0.6  # chance is 1/3; without normalization the 0.1-std feature is invisible


def test_checkpoint_computes_the_same_function_on_raw_features(trained):
    reloaded = load_checkpoint(trained["ckpt"])
    with torch.no_grad():
        probs = reloaded(torch.from_numpy(trained["x_test"])).softmax(-1)
    assert_close(probs, trained["probs"], atol=1e-6, rtol=1e-5)


def test_onnx_and_int8_on_raw_features_match_trainer_predictions(trained):
    pytest.importorskip("onnxruntime")
    from nl_lightning.export.onnx import export_onnx
    from nl_lightning.export.ort import ort_runner, ort_session, quantize_onnx_dynamic

    model, raw = load_checkpoint(trained["ckpt"]), torch.from_numpy(trained["x_test"])
    fp32 = export_onnx(model.model, trained["tmp"] / "model.onnx")
    probs = ort_runner(ort_session(fp32, threads=1))(raw).softmax(-1)
    assert_close(probs, trained["probs"], atol=1e-4, rtol=1e-3)
    int8 = quantize_onnx_dynamic(fp32, trained["tmp"] / "model.int8.onnx")
    agree = (ort_runner(ort_session(int8, threads=1))(raw).argmax(-1) == trained["probs"].argmax(-1)).float().mean()
    assert agree >= 0.95


def test_checkpoint_statistics_are_not_replaced_by_other_data(trained, tmp_path):
    model = load_checkpoint(trained["ckpt"])
    before = model.model.input_norm.mean.clone()
    x, y = _raw_data(128, seed=5)
    other = ArrayDataModule(x_train=x * 3 + 7, y_train=y, x_val=x, y_val=y, normalize=True, batch_size=64)
    _trainer(tmp_path).validate(model, other, verbose=False)
    assert torch.equal(model.model.input_norm.mean, before)


def test_checkpoint_from_before_input_norm_loads_as_identity(trained, tmp_path):
    checkpoint = torch.load(trained["ckpt"], weights_only=True)
    for key in ("model.input_norm.mean", "model.input_norm.std"):
        del checkpoint["state_dict"][key]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model = load_checkpoint(old)
    assert not model.model.input_norm.fitted
    x = torch.randn(2, 8, 4)
    assert torch.equal(model.model.input_norm(x), x)


def test_other_models_still_get_normalized_batches():
    x, y = _raw_data(64, seed=2)
    dm = ArrayDataModule(x_train=x, y_train=y, normalize=True, batch_size=64, shuffle=False)
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert abs(float(batch["x"].mean())) < 0.2 and abs(float(batch["x"].std()) - 1) < 0.2


def test_statistics_skip_non_finite_rows():
    """on_bad='warn' keeps a NaN row; it must not make every statistic (and so every row) NaN."""
    x, y = _raw_data(64, seed=3)
    x[5, 2, 1] = np.nan
    dm = ArrayDataModule(x_train=x, y_train=y, normalize=True, on_bad="warn", batch_size=16)
    with pytest.warns(UserWarning):
        dm.setup("fit")
    mean, std = dm.feature_statistics()
    assert torch.isfinite(mean).all() and torch.isfinite(std).all()
    finite = x.reshape(-1, 4)[np.isfinite(x.reshape(-1, 4)).all(1)]
    assert_close(mean, torch.tensor(finite.mean(0), dtype=torch.float64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "mean, std, match",
    [([0.0, 1.0], [1.0], r"equal, non-zero length; got \(2,\) and \(1,\)"),
     ([float("nan")], [1.0], r"NaN or Inf: compute them from finite rows only")],
)
def test_feature_norm_rejects_bad_statistics(mean, std, match):
    with pytest.raises(ValueError, match=match):
        FeatureNorm().set_stats(mean, std)


def test_feature_norm_names_a_wrong_feature_count():
    norm = FeatureNorm()
    norm.set_stats([0.0] * 4, [1.0] * 4)
    with pytest.raises(ValueError, match=r"normalizes 4 features .* last dimension is 3"):
        norm(torch.zeros(2, 5, 3))


def test_a_kept_nan_row_is_named_with_its_file_and_row(tmp_path):
    """on_bad='warn' keeps the row; when it reaches the model, the error names the file and the row."""
    import h5py

    from nl_lightning.data import FileDataModule

    x, y = _raw_data(64, seed=4)
    x[37, 3, 2] = np.inf
    with h5py.File(tmp_path / "train.h5", "w") as f:
        f["x"], f["y"] = x, y
    dm = FileDataModule(train_path=str(tmp_path / "train.h5"), features="/x", targets="/y", on_bad="warn",
                        normalize=True, batch_size=64, shuffle=False)
    model = TransformerClassifier(TransformerConfig(input_dim=4, n_layers=1, d_model=16, n_heads=2, max_seq_len=8,
                                                    position="none"), num_classes=3)
    with pytest.warns(UserWarning, match="1 bad row"), \
            pytest.raises(ValueError, match=r"NaN or Inf at '.*train\.h5' dataset '/x' row 37; clean the data"):
        _trainer(tmp_path, max_steps=1).fit(model, dm)
