from __future__ import annotations

import json
import warnings

import lightning as L
import pytest
import torch

from nl_lightning.callbacks import ExportCallback
from nl_lightning.data import CharTextDataModule
from nl_lightning.export.bundle import ExportConfig
from nl_lightning.export.onnx import onnx_files
from nl_lightning.export.tensorrt import TensorRTUnavailableError
from nl_lightning.models import TransformerLM

LM_CONFIG = dict(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)


def _trainer(callbacks, tmp_path):
    return L.Trainer(max_steps=2, limit_val_batches=1, callbacks=callbacks, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)


def test_export_callback_writes_formats_and_manifest_at_fit_end(tmp_path):
    L.seed_everything(0, verbose=False)
    config = ExportConfig(formats=["onnx", "onnx_int8_static", "pt2"], parity_batch_sizes=[1, 3],
                          parity_seq_lens=[7, 32], calibration_batches=2,
                          quantized_atol=0.5)  # two training steps: near-uniform logits, large relative INT8 error
    callback = ExportCallback(config=config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _trainer([callback], tmp_path).fit(TransformerLM(LM_CONFIG), CharTextDataModule(seq_len=32, batch_size=4))
    assert not [w for w in caught if "random inputs" in str(w.message)]  # calibrated on validation data
    out = tmp_path / "export"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == callback.manifest and manifest["input"]["name"] == "idx"
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "onnx_int8_static", "pt2"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity_ok"]
        assert {(r["batch_size"], r["seq_len"]) for r in artifact["parity"]} == {(1, 7), (1, 32), (3, 7), (3, 32)}
    assert [p.name for p in onnx_files(out / "model.onnx")] == ["model.onnx"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "model.int8_static.onnx", "model.onnx", "model.pt2",
    ]  # no temporary files left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_tensorrt_fails_at_setup_before_training(tmp_path):
    model = TransformerLM(LM_CONFIG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer([ExportCallback(config=ExportConfig(formats=["tensorrt"]))], tmp_path)
    with pytest.raises(TensorRTUnavailableError, match="drop 'tensorrt' from formats"):
        trainer.fit(model, CharTextDataModule(seq_len=32, batch_size=4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no step was taken


def test_config_from_yaml_dict():
    assert ExportCallback(config={"formats": ["pt2"]}).config.formats == ["pt2"]
    with pytest.raises(ValueError, match=r"formats=\['tflite'\]: choose one or more of"):
        ExportCallback(config={"formats": ["tflite"]})
