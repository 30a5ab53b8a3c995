from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from nl_lightning.callbacks import PruningCallback, QuantizationCallback
from nl_lightning.compress.quantize import QuantizationConfig
from nl_lightning.compress.sparsity import sparsity
from nl_lightning.data import SyntheticSequenceDataModule
from nl_lightning.models import TransformerClassifier

CONFIG = dict(input_dim=8, n_layers=1, d_model=32, n_heads=4, max_seq_len=16, position="none", causal=False)
ACCURACY_TOLERANCE = 3.0  # points; the 204-sample validation set moves in 0.5-point steps


@pytest.fixture(scope="module")
def prune_then_quantize(tmp_path_factory):
    """One fit: prune to 50% over epochs 0-1, fine-tune epochs 2-4, quantize at fit end."""
    root = tmp_path_factory.mktemp("prune_quantize")
    L.seed_everything(0, verbose=False)
    model = TransformerClassifier(CONFIG, num_classes=3, optimizer=dict(lr=3e-3))
    quant = QuantizationCallback(root / "quantized", QuantizationConfig(
        methods=["ort_int8_dynamic", "ort_int8_static", "bf16"], calibration_batches=2, eval_batches=None,
    ))
    pruning = PruningCallback(amount=0.5, start_epoch=0, end_epoch=1, curve="linear")
    trainer = L.Trainer(
        max_epochs=5, callbacks=[pruning, quant], logger=CSVLogger(root, name="logs"), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=1, default_root_dir=root,
    )
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=1024, batch_size=64))
    return root, quant, trainer


def test_quantized_models_are_smaller_and_agree_with_fp32(prune_then_quantize):
    root, quant, _ = prune_then_quantize
    rows = {r["variant"]: r for r in quant.results}
    assert list(rows) == ["eager", "ort_int8_dynamic", "ort_int8_static", "bf16"]
    assert rows["eager"]["accuracy"] > 70  # the fine-tuned, pruned fp32 model learned the task
    assert rows["eager"]["samples"] == 204 and rows["eager"]["agreement"] == 100.0  # the whole validation split
    # A 1-layer, 32-wide model: the fp32 norms, biases and INT8 scales are a large share of its bytes.
    for name, min_ratio in (("ort_int8_dynamic", 2.0), ("ort_int8_static", 1.7), ("bf16", 1.7)):  # 2.18, 1.80, 1.76
        row = rows[name]
        assert (root / "quantized" / row["path"].rsplit("/", 1)[-1]).is_file()
        assert row["size_ratio"] >= min_ratio, row  # smaller on disk than the fp32 state dict
        assert row["agreement"] >= 95.0, row  # top-1 predictions kept
        assert row["accuracy_delta"] >= -ACCURACY_TOLERANCE, row
        assert abs(row["loss_delta"]) < 0.1, row
    report = json.loads((root / "quantized" / "quantization.json").read_text())
    assert report["results"] == quant.results and report["config"]["methods"][0] == "ort_int8_dynamic"


def test_quantization_runs_on_the_pruned_fine_tuned_weights(prune_then_quantize):
    root, _, trainer = prune_then_quantize
    from nl_lightning.compress.prune import prunable_parameters
    from nl_lightning.models import SequenceClassifier, TransformerConfig

    net = SequenceClassifier(TransformerConfig(**CONFIG), 3)
    net.load_state_dict(torch.load(root / "quantized" / "model.eager.pt", weights_only=True))
    assert sparsity(prunable_parameters(net)) == pytest.approx(0.5, abs=1e-3)
    assert float(trainer.callback_metrics["pruning/sparsity"]) == pytest.approx(0.5, abs=1e-3)


def test_size_agreement_and_metric_deltas_are_logged_and_no_latency(prune_then_quantize):
    root, quant, trainer = prune_then_quantize
    metrics = quant.metrics()
    assert sorted(k for k in metrics if k.startswith("quantization/ort_int8_static/")) == [
        f"quantization/ort_int8_static/{key}" for key in ("accuracy_delta", "agreement", "loss_delta", "size_ratio")]
    assert metrics["quantization/ort_int8_static/agreement"] == quant.results[2]["agreement"]
    with open(root / "logs" / "version_0" / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert "quantization/ort_int8_dynamic/size_ratio" in header and "pruning/sparsity" in header


def test_missing_validation_data_is_an_error(tmp_path):
    data = TensorDataset(torch.randn(32, 16, 8), torch.randint(0, 3, (32,)))
    trainer = L.Trainer(max_epochs=1, callbacks=[QuantizationCallback(tmp_path)], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(RuntimeError, match="this fit has no val_dataloader"):
        trainer.fit(TransformerClassifier(CONFIG, num_classes=3), DataLoader(data, batch_size=16))


def test_config_from_yaml_dict_and_errors():
    assert QuantizationCallback(config={"methods": ["fp16"]}).config.methods == ["fp16"]
    with pytest.raises(ValueError, match=r"Quantization methods \['int4'\]: choose one or more of"):
        QuantizationCallback(config={"methods": ["int4"]})
