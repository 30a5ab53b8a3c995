from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
import pytest
import torch

from nl_lightning.callbacks import ExportCallback
from nl_lightning.data import CharTextDataModule
from nl_lightning.export.bundle import ExportConfig
from nl_lightning.export.manifest import read_manifest
from nl_lightning.export.torch_export import load_pt2
from nl_lightning.export.onnx import onnx_files
from nl_lightning.export.tensorrt import TensorRTUnavailableError
from nl_lightning.models import TransformerLM

LM_CONFIG = dict(n_layers=1, d_model=32, n_heads=4, max_seq_len=32)


def _trainer(callbacks, tmp_path, max_steps: int = 2, logger=False):
    return L.Trainer(max_steps=max_steps, limit_val_batches=1, callbacks=callbacks, logger=logger,
                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                     default_root_dir=tmp_path)


def test_export_callback_writes_formats_and_manifest_at_fit_end(tmp_path):
    L.seed_everything(0, verbose=False)
    config = ExportConfig(formats=["onnx", "onnx_int8_static", "pt2"], parity_batch_sizes=[1, 3],
                          parity_seq_lens=[7, 32], calibration_batches=2, check_batches=2)
    callback = ExportCallback(config=config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # 20 steps: after 2, the logits are so near-uniform that static INT8 flips ~9% of the argmaxes.
        trainer = _trainer([callback], tmp_path, max_steps=20, logger=CSVLogger(tmp_path, name="run"))
        trainer.fit(TransformerLM(LM_CONFIG), CharTextDataModule(seq_len=32, batch_size=4))
    assert not [w for w in caught if "random inputs" in str(w.message)]  # calibrated on validation data
    out = tmp_path / "run" / "version_0" / "export"  # the run's folder (the logger's log_dir)
    manifest = read_manifest(out)
    assert manifest == callback.manifest and manifest["input"]["name"] == "idx"
    assert manifest["source"] == "TransformerLM after 20 steps"
    assert [a["format"] for a in manifest["artifacts"]] == ["onnx", "onnx_int8_static", "pt2"]
    for artifact in manifest["artifacts"]:
        assert artifact["parity_ok"]
        assert {(r["batch_size"], r["seq_len"]) for r in artifact["parity"]} == {(1, 7), (1, 32), (3, 7), (3, 32)}
    # INT8 judged on two validation batches of real text (4 x 32 positions each), not random ids.
    check = manifest["artifacts"][1]["agreement"]
    assert (check["data"], check["batches"], check["predictions"], check["agreement_checked"]) == ("real", 2, 256, True)
    assert check["top1_agreement"] >= 95.0
    assert [p.name for p in onnx_files(out / "model.onnx")] == ["model.onnx"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "model.int8_static.onnx", "model.onnx", "model.pt2",
    ]  # no temporary files left behind
    assert not list(out.parent.glob(".export.tmp-*"))  # nor a staging folder beside it


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


@pytest.mark.slow
def test_export_under_fsdp2_gathers_the_full_weights_on_every_rank_and_exports_on_rank_zero(tmp_path):
    """2 processes, ModelParallelStrategy (FSDP2, gloo): exporting on rank 0 alone would run a forward
    through sharded parameters, a collective the other rank never joins (a hang), or export a shard."""
    probe = Path(__file__).with_name("fsdp_export_probe.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen([sys.executable, str(probe), str(tmp_path)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        stderr = "the FSDP2 export hung (a collective on one rank only?)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # rank 1 too, whatever happened to rank 0
    assert proc.returncode == 0, stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["sharded"], r["exported"], r["quantized"]) for r in reports] == [(True, True, True),
                                                                              (True, False, False)]
    run = tmp_path / "run" / "version_0"  # the logger's folder: both callbacks' default
    manifest = read_manifest(run / "export")
    assert [(a["format"], a["parity_ok"]) for a in manifest["artifacts"]] == [("pt2", True)]

    full = torch.load(tmp_path / "full_weights.pt", weights_only=True)
    model = TransformerLM(LM_CONFIG | {"n_heads": 2}).eval()
    model.load_state_dict(full)  # the whole model: every parameter at its full size
    x = torch.randint(0, 256, (3, 20))
    with torch.inference_mode():
        torch.testing.assert_close(load_pt2(run / "export" / "model.pt2")(x), model(x), atol=1e-5, rtol=1e-4)
    rows = json.loads((run / "quantized" / "quantization.json").read_text())["results"]
    assert [r["variant"] for r in rows] == ["eager", "bf16"] and rows[1]["agreement"] >= 95.0


class ScriptedScore(L.Callback):
    """Logs ``val/score`` from a script (epoch 1 is best), so the best epoch is known and not the last."""

    def __init__(self, scores=(0.2, 0.9, 0.4)) -> None:
        self.scores = scores

    def on_validation_epoch_end(self, trainer, pl_module):
        pl_module.log("val/score", self.scores[trainer.current_epoch])


def _fit_with_best(tmp_path, *callbacks, scores=(0.2, 0.9, 0.4)):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from nl_lightning.data import SyntheticSequenceDataModule
    from nl_lightning.models import TransformerClassifier

    L.seed_everything(0, verbose=False)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="val/score", mode="max", save_last=True)
    model = TransformerClassifier(dict(input_dim=8, n_layers=1, d_model=16, n_heads=2, max_seq_len=16,
                                       position="none", causal=False), num_classes=3, optimizer=dict(lr=1e-2))
    trainer = L.Trainer(max_epochs=3, limit_train_batches=4, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[ScriptedScore(scores), checkpoint, *callbacks])
    trainer.fit(model, SyntheticSequenceDataModule(num_samples=256, batch_size=16))
    return model, checkpoint


def test_export_callback_exports_the_monitored_best_checkpoint_not_the_final_weights(tmp_path):
    import onnxruntime as ort

    from nl_lightning._io import file_sha256
    from nl_lightning.models import TransformerClassifier

    callback = ExportCallback(tmp_path / "export", ExportConfig(formats=["onnx"], parity_batch_sizes=[2],
                                                                parity_seq_lens=[16]))
    final, checkpoint = _fit_with_best(tmp_path, callback)
    best = Path(checkpoint.best_model_path)
    assert best.name == "epoch=1-step=8.ckpt"  # the scripted best, two epochs before the end
    manifest = read_manifest(tmp_path / "export", checkpoint=best)  # source_sha256 is the best checkpoint's
    weights = manifest["weights"]
    assert (weights["which"], weights["path"], weights["monitor"], weights["score"], weights["epoch"]) == (
        "best", str(best), "val/score", pytest.approx(0.9), 1)
    assert weights["sha256"] == manifest["source_sha256"] == file_sha256(best) and manifest["source"] == str(best)
    x = torch.randn(4, 16, 8)
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    exported = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        expected = TransformerClassifier.load(best).model(x)
        torch.testing.assert_close(exported, expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(exported, final.model(x), rtol=1e-3, atol=1e-3)  # the final weights differ


def test_quantization_callback_and_weights_last_say_which_weights(tmp_path):
    from nl_lightning.callbacks import QuantizationCallback
    from nl_lightning.compress.quantize import QuantizationConfig

    quant = QuantizationCallback(tmp_path / "quantized", QuantizationConfig(methods=["bf16"], eval_batches=1))
    last = ExportCallback(tmp_path / "export", ExportConfig(formats=["onnx"], parity_batch_sizes=[2],
                                                            parity_seq_lens=[16]), weights="last")
    final, checkpoint = _fit_with_best(tmp_path, quant, last)
    report = json.loads((tmp_path / "quantized" / "quantization.json").read_text())
    assert report["weights"]["which"] == "best" and report["weights"]["path"] == checkpoint.best_model_path
    eager = torch.load(tmp_path / "quantized" / "model.eager.pt", weights_only=True)
    best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    torch.testing.assert_close(eager, {k.removeprefix("model."): v for k, v in best.items()}, rtol=0, atol=0)
    assert report["data"]["datamodule"].endswith("SyntheticSequenceDataModule")
    manifest = read_manifest(tmp_path / "export")
    assert manifest["weights"]["which"] == "last" and manifest["source_sha256"] is None
    assert manifest["weights"]["global_step"] == 12


@pytest.mark.parametrize("scores, which", [((0.2, 0.9, 0.4), "best"), ((0.9, 0.2, 0.4), "last")])
def test_with_pruning_the_best_is_exported_only_if_saved_after_pruning_ended(scores, which, tmp_path):
    """Pruning ends at epoch 0: a best from epoch 1 is pruned and exported; one from epoch 0 (saved
    before that epoch's pruning step) would undo the pruning, so the final weights go out, saying why."""
    from nl_lightning.callbacks import PruningCallback, QuantizationCallback
    from nl_lightning.compress.quantize import QuantizationConfig

    quant = QuantizationCallback(tmp_path / "quantized", QuantizationConfig(methods=["bf16"], eval_batches=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        final, checkpoint = _fit_with_best(tmp_path, PruningCallback(amount=0.5, start_epoch=0, end_epoch=0), quant,
                                           scores=scores)
    report = json.loads((tmp_path / "quantized" / "quantization.json").read_text())
    eager = torch.load(tmp_path / "quantized" / "model.eager.pt", weights_only=True)
    assert report["weights"]["which"] == which
    if which == "best":
        best = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
        torch.testing.assert_close(eager, {k.removeprefix("model."): v for k, v in best.items()}, rtol=0, atol=0)
    else:
        assert "before pruning ended (epoch 0)" in report["weights"]["note"]
        assert any("Exporting the final weights, not the monitored best" in str(w.message) for w in caught)
        torch.testing.assert_close(eager, final.model.state_dict(), rtol=0, atol=0)
    assert sum(float((v == 0).float().mean()) > 0.3 for k, v in eager.items() if k.endswith("fc1.weight")) == 1
